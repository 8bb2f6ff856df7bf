"""Name -> component factory, by kind, with provenance. The core owns naming and collisions.

A name registered by two plugins is never silently shadowed: looking it up raises
:class:`AmbiguousComponentError` listing both providers, and either can be picked with a
qualified name ``provider/name`` (provider: the distribution, or the plugin when one
distribution registers the name twice).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import KINDS
from deepnet.core.errors import AmbiguousComponentError, DeepnetError, UnknownComponentError

# Hyphens for names typed on the command line, such as the recipe "seed-a".
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@attrs.frozen
class Provenance:
    """Where a component came from."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.distribution is None:
            return self.plugin
        return f"{self.distribution} {self.version} ({self.plugin})"


@attrs.frozen
class Param:
    """One hyperparameter of a component: its name and default (``REQUIRED`` if none)."""

    name: str
    default: Any


REQUIRED = "<required>"


@attrs.frozen
class Entry:
    """A registered component: its kind, name, factory and provenance."""

    kind: str
    name: str
    factory: Callable[..., Any]
    provenance: Provenance

    @property
    def doc(self) -> str:
        """The first paragraph of the factory's docstring (a recipe's description), on one line."""
        doc = self.factory.description if self.kind == "recipe" else self.factory.__doc__
        doc = (doc or "").strip()
        return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())

    @property
    def params(self) -> list[Param]:
        """Hyperparameters with defaults, from the attrs fields of the factory (a class)."""
        if not (isinstance(self.factory, type) and attrs.has(self.factory)):
            return []
        out = []
        for f in attrs.fields(self.factory):
            if not f.init or f.name.startswith("_"):
                continue
            if f.default is attrs.NOTHING:
                default = REQUIRED
            elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
                default = f.default.factory()
            else:
                default = f.default
            out.append(Param(f.name, default))
        return out


def default_name(factory: Callable[..., Any]) -> str:
    """``factory.name`` if it is a string, else the snake-cased class or function name."""
    name = getattr(factory, "name", None)
    if isinstance(name, str):
        return name
    raw = getattr(factory, "__name__", type(factory).__name__)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", raw).lower()


class Registry:
    """All registered components, by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, list[Entry]]] = {k: {} for k in KINDS}
        self.plugins: list[Any] = []  # PluginInfo records, filled by the plugin manager
        self._recorders: list[list[Entry]] = []

    # -- registration ------------------------------------------------------------------
    def register(
        self, kind: str, factory: Callable[..., Any], name: str | None, provenance: Provenance
    ) -> Entry:
        """Add ``factory`` under ``kind``/``name``; a repeated name is kept beside the first."""
        if kind not in self._entries:
            raise DeepnetError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        if kind == "recipe" and not isinstance(factory, KINDS["recipe"]):
            raise DeepnetError(
                f"{provenance.plugin}: register a recipe as a deepnet.recipes.Recipe instance, "
                f"not {factory!r}"
            )
        if not callable(factory):
            raise DeepnetError(f"{provenance.plugin}: {kind} factory {factory!r} is not callable")
        name = name or default_name(factory)
        if not _NAME.match(name):
            raise DeepnetError(
                f"{provenance.plugin}: invalid {kind} name {name!r}; "
                "use lowercase letters, digits, underscores and hyphens"
            )
        entry = Entry(kind, name, factory, provenance)
        providers = self._entries[kind].setdefault(name, [])
        if any(e.factory is factory and e.provenance == provenance for e in providers):
            return entry  # the same plugin registering the same thing twice is harmless
        providers.append(entry)
        return entry

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (used when its registration fails)."""
        for by_name in self._entries.values():
            for name in list(by_name):
                kept = [e for e in by_name[name] if e.provenance.plugin != plugin]
                if kept:
                    by_name[name] = kept
                else:
                    del by_name[name]

    # -- lookup ------------------------------------------------------------------------
    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """Every entry (of one kind), sorted by kind then name, collisions included."""
        kinds = [kind] if kind else list(self._entries)
        for k in kinds:
            for name in sorted(self._entries[k]):
                yield from self._entries[k][name]

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def collisions(self) -> dict[tuple[str, str], list[Entry]]:
        """Names given by more than one provider, with all of them."""
        return {
            (k, n): list(es)
            for k, by_name in self._entries.items()
            for n, es in sorted(by_name.items())
            if len(es) > 1
        }

    @staticmethod
    def qualified_name(entry: Entry, among: list[Entry]) -> str:
        """``distribution/name``, or ``plugin/name`` where the distribution is not unique."""
        dists = [e.provenance.distribution for e in among]
        dist = entry.provenance.distribution
        provider = dist if dist and dists.count(dist) == 1 else entry.provenance.plugin
        return f"{provider}/{entry.name}"

    def lookup(self, kind: str, name: str) -> Entry:
        """The entry for ``name`` or ``provider/name``; raises with close matches if unknown."""
        if kind not in self._entries:
            raise DeepnetError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        provider, _, bare = name.rpartition("/")
        found = self._entries[kind].get(bare.strip().lower(), [])
        if provider:
            found = [
                e
                for e in found
                if provider in (e.provenance.distribution, e.provenance.plugin)
                or self.qualified_name(e, self._entries[kind][e.name]) == name
            ]
        if len(found) == 1:
            for used in self._recorders:
                used.append(found[0])
            return found[0]
        if not found:
            names = self.names(kind)
            close = difflib.get_close_matches(bare.lower(), names, n=3, cutoff=0.6)
            raise UnknownComponentError(kind, name, close, names)
        raise AmbiguousComponentError(kind, name, [self.qualified_name(e, found) for e in found])

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Entry]]:
        """Collect every entry looked up inside the block (nested components included)."""
        used: list[Entry] = []
        self._recorders.append(used)
        try:
            yield used
        finally:
            self._recorders.remove(used)

    def entry_of(self, obj: Any) -> Entry:
        """The entry whose factory made ``obj`` (an instance of a registered class)."""
        cls = type(obj)
        kind = getattr(obj, "kind", None)
        candidates = [e for e in self.entries(kind if kind in KINDS else None) if e.factory is cls]
        if not candidates:
            raise DeepnetError(
                f"{cls.__module__}.{cls.__qualname__} is not a registered component; "
                "register it through a plugin hook so that models using it can be saved"
            )
        return candidates[0]

    def spec_of(self, obj: Any) -> str:
        """The name to look ``obj``'s factory up by again: bare if unique, else qualified."""
        entry = self.entry_of(obj)
        among = self._entries[entry.kind][entry.name]
        return entry.name if len(among) == 1 else self.qualified_name(entry, among)

    # -- construction and configs --------------------------------------------------------
    def create(self, kind: str, spec: Any, **overrides: Any) -> Any:
        """A component from a name, a ``{"name": ..., **config}`` dict, or an instance."""
        if spec is None:
            raise DeepnetError(f"no {kind} given")
        if isinstance(spec, str):
            name, config = spec, {}
        elif isinstance(spec, dict):
            config = dict(spec)
            try:
                name = config.pop("name")
            except KeyError:
                raise DeepnetError(f"{kind} config {spec!r} has no 'name'") from None
        else:
            if getattr(spec, "kind", kind) != kind:
                raise DeepnetError(f"expected a {kind}, got a {spec.kind} ({spec!r})")
            return spec
        entry = self.lookup(kind, name)
        config.update(overrides)
        try:
            return entry.factory(**config)
        except TypeError as exc:
            accepted = ", ".join(p.name for p in entry.params) or "none"
            raise DeepnetError(
                f"cannot create {kind} {name!r} with {config}: {exc}. Parameters: {accepted}"
            ) from None

    def config_of(self, obj: Any) -> dict[str, Any]:
        """``{"name": ..., **fields}`` with nested components as configs too (JSON-ready)."""
        return {"name": self.spec_of(obj), **self._fields(obj)}

    def _fields(self, obj: Any) -> dict[str, Any]:
        if hasattr(obj, "get_config"):
            raw = obj.get_config()
        elif attrs.has(type(obj)):
            raw = {
                f.name: getattr(obj, f.name)
                for f in attrs.fields(type(obj))
                if f.init and not f.name.startswith("_")
            }
        else:
            raw = {}
        return {k: self._jsonable(v) for k, v in raw.items()}

    def _jsonable(self, value: Any) -> Any:
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, list | tuple):
            return [self._jsonable(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self._jsonable(v) for k, v in value.items()}
        if getattr(value, "kind", None) in KINDS:
            return self.config_of(value)
        if isinstance(value, np.generic):  # numpy scalar; arrays fall through to the error
            return value.item()
        raise DeepnetError(f"cannot serialize {value!r} in a component config")

    def provenance_of(self, obj: Any) -> Provenance:
        return self.entry_of(obj).provenance
