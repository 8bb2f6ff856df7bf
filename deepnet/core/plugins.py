"""The plugin manager: built-ins and third parties both arrive via entry point group ``deepnet``.

Each entry point is loaded on its own: one that fails to import, to validate against the hook
specs, or to register is recorded with its error, warned about and skipped, and everything else
keeps working. ``DEEPNET_STRICT_PLUGINS=1`` makes such a failure fatal instead.
``DEEPNET_DISABLE_PLUGINS=name,other`` skips plugins (by entry point or distribution name)
without uninstalling them.
"""

from __future__ import annotations

import importlib
import os
import re
import traceback
import warnings
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from deepnet.core import hookspecs
from deepnet.core.errors import PluginError
from deepnet.core.registry import Provenance, Registry

GROUP = "deepnet"
ENV_DISABLE = "DEEPNET_DISABLE_PLUGINS"
ENV_STRICT = "DEEPNET_STRICT_PLUGINS"

HOOK_KINDS = {
    "deepnet_register_layers": "layer",
    "deepnet_register_activations": "activation",
    "deepnet_register_losses": "loss",
    "deepnet_register_optimizers": "optimizer",
    "deepnet_register_regularizers": "regularizer",
    "deepnet_register_initializers": "initializer",
    "deepnet_register_schedules": "schedule",
    "deepnet_register_callbacks": "callback",
    "deepnet_register_recipes": "recipe",
}

BUILTIN_MODULES = [
    "deepnet.plugins.activations",
    "deepnet.plugins.losses",
    "deepnet.plugins.optimizers",
    "deepnet.plugins.layers",
    "deepnet.plugins.augment",
    "deepnet.plugins.initializers",
    "deepnet.plugins.schedules",
    "deepnet.plugins.recipes",
]


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@attrs.define
class PluginInfo:
    """What happened to one plugin: ``status`` is loaded, disabled or failed (with ``error``)."""

    name: str
    distribution: str | None
    version: str | None
    status: str
    hooks: list[str] = attrs.Factory(list)
    error: str | None = None
    components: int = 0


def normalize_name(name: str) -> str:
    """Plugin and distribution names compare like pip's: case, ``-``, ``_`` and ``.`` folded."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(var: str) -> list[str]:
    return [s.strip() for s in os.environ.get(var, "").split(",") if s.strip()]


def _env_flag(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginLoader:
    """Loads plugins one at a time into a pluggy PluginManager and a :class:`Registry`."""

    def __init__(self, strict: bool, disabled: Iterable[str]):
        self.pm = pluggy.PluginManager("deepnet")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.strict = strict
        self.disabled = {normalize_name(d) for d in disabled}

    def is_disabled(self, name: str, distribution: str | None) -> bool:
        names = {normalize_name(name)} | ({normalize_name(distribution)} if distribution else set())
        return bool(names & self.disabled)

    def add(self, name: str, load: Any, distribution: str | None, version: str | None) -> None:
        """Load (``load()`` returns the plugin object), validate and register one plugin."""
        info = PluginInfo(name, distribution, version, "loaded")
        self.registry.plugins.append(info)
        if self.is_disabled(name, distribution):
            info.status = "disabled"
            return
        stage = "import"
        try:
            plugin = load()
            stage = "validate"
            if self.pm.has_plugin(name):
                raise PluginError(f"a plugin named {name!r} is already loaded")
            self.pm.register(plugin, name=name)
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError:
                self.pm.unregister(name=name)
                raise
            info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
            stage = "register"
            info.components = self._register_components(name, plugin, distribution, version)
        except Exception as exc:
            self.registry.remove_plugin(name)
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            info.status = "failed"
            info.error = f"{stage} failed: {type(exc).__name__}: {exc}"
            if self.strict:
                raise PluginError(f"plugin {name!r} {info.error}") from exc
            warnings.warn(
                f"deepnet plugin {name!r} skipped ({info.error}); "
                f"`deepnet plugins` shows details, {ENV_DISABLE}={name} silences it",
                PluginWarning,
                stacklevel=2,
            )
            info.error += "\n" + "".join(traceback.format_exception(exc)[-3:]).rstrip()

    def _register_components(
        self, name: str, plugin: Any, distribution: str | None, version: str | None
    ) -> int:
        provenance = Provenance(name, distribution, version)
        count = 0
        for hook_name, kind in HOOK_KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(factory: Any, name: str | None = None, _kind: str = kind) -> None:
                    nonlocal count
                    self.registry.register(_kind, factory, name, provenance)
                    count += 1

                kwargs = {"register": register} if "register" in impl.argnames else {}
                impl.function(**kwargs)
        return count


def _entry_point_dist(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def load_plugins(
    extra: Iterable[Any] = (),
    *,
    strict: bool | None = None,
    disabled: Iterable[str] | None = None,
    use_entry_points: bool = True,
) -> Registry:
    """A fresh :class:`Registry` from the entry points of group ``deepnet`` plus ``extra``.

    ``extra`` are in-process plugin objects (modules or instances with hook implementations).
    ``strict`` defaults to ``DEEPNET_STRICT_PLUGINS``; ``disabled`` adds to the names in
    ``DEEPNET_DISABLE_PLUGINS``. A disabled name that matches no plugin is warned about.
    """
    if strict is None:
        strict = _env_flag(ENV_STRICT)
    disabled = [*_env_list(ENV_DISABLE), *(disabled or ())]
    loader = PluginLoader(strict, disabled)
    eps = sorted(entry_points(group=GROUP), key=lambda e: e.name) if use_entry_points else []
    declared = {ep.value for ep in eps}
    # Built-ins no entry point declares: a source tree that was never installed, or an
    # editable install older than the module (reinstalling adds its entry point). Same path.
    from deepnet import __version__

    for module in BUILTIN_MODULES:
        if module not in declared:
            name = module.replace(".plugins", "")
            loader.add(name, lambda m=module: importlib.import_module(m), "deepnet", __version__)
    for ep in eps:
        dist, version = _entry_point_dist(ep)
        loader.add(ep.name, ep.load, dist, version)
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        loader.add(name, lambda p=plugin: p, None, None)
    known = {
        normalize_name(n) for p in loader.registry.plugins for n in (p.name, p.distribution) if n
    }
    for name in disabled:
        if normalize_name(name) not in known:
            warnings.warn(
                f"disabled plugin {name!r} matches no plugin; `deepnet plugins` lists them",
                PluginWarning,
                stacklevel=2,
            )
    return loader.registry


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_plugins()
    return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (None reloads it on next use)."""
    global _registry
    _registry = registry


def create(kind: str, spec: Any, **overrides: Any) -> Any:
    """A component of ``kind`` from a name, a config dict or an instance (process registry)."""
    return get_registry().create(kind, spec, **overrides)
