"""A sweep's search space: which recipe fields to try with which values, and its trials.

A sweep definition (TOML, or the same tables as dicts) has ``[sweep]`` options, ``[base]``
fields fixed for every trial and ``[space]``: a list of values per field to try (grid or
random search) or, for random search, a range. A trial is the base recipe with one value per
field; its id is a hash of its recipe, data and dtype.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from deepnet.core.errors import DeepnetError
from deepnet.recipes import Recipe, get_recipe, parse_layers, validate_recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the backport, a dependency on 3.10 only
    import tomli as tomllib

# Recipe fields a sweep may set; name and description describe the preset, not a training.
FIELDS = tuple(f.name for f in attrs.fields(Recipe) if f.name not in ("name", "description"))
CONFIG_FIELDS = ("optimizer", "schedule")  # dict configs: "optimizer.momentum" sets one key
INT_FIELDS = ("epochs", "batch_size", "seed")
METRICS = {"dev_accuracy": 1, "dev_loss": -1}  # the sign that makes higher better
SEARCHES = ("grid", "random")


# -- the search space ----------------------------------------------------------------------


@attrs.frozen
class Distribution:
    """A range to draw from in random search: uniform, log_uniform (both ends > 0) or randint."""

    kind: str
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float | int:
        if self.kind == "randint":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


DISTRIBUTIONS = ("uniform", "log_uniform", "randint")


@attrs.frozen
class Space:
    """What to search: ``params`` maps a field (or ``field.key``) to choices or a Distribution.

    ``trials`` caps the number of trials (random search draws that many), ``max_time`` is a
    wall-time budget in seconds, ``seed`` seeds random search, ``metric`` picks the best.
    """

    base: Recipe
    params: dict[str, list[Any] | Distribution] = attrs.Factory(dict)
    search: str = "grid"
    trials: int | None = None
    max_time: float | None = None
    seed: int = 0
    metric: str = "dev_accuracy"
    source: str = "space"  # the file it came from, for messages


@attrs.frozen
class Trial:
    """One training of the sweep: the base recipe with ``params`` applied; ``id`` is its hash."""

    index: int
    params: dict[str, Any]
    recipe: Recipe
    id: str


def _close(name: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=2)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


def _check_field(name: str, where: str) -> None:
    field, _, key = name.partition(".")
    if field not in FIELDS:
        raise DeepnetError(
            f"{where}: unknown field {field!r}.{_close(field, FIELDS)} Fields: {', '.join(FIELDS)}"
        )
    if key and field not in CONFIG_FIELDS:
        raise DeepnetError(
            f"{where}: {name!r}: only {' and '.join(CONFIG_FIELDS)} take a dotted key "
            "(e.g. optimizer.momentum)"
        )


def _as_config(spec: Any) -> dict[str, Any]:
    return dict(spec) if isinstance(spec, Mapping) else {"name": spec}


def _field_value(field: str, value: Any, where: str) -> Any:
    """``value`` as the Recipe field expects it (tuples, ints), or a one-line error."""
    if field == "layers":
        text = value if isinstance(value, str) else ",".join(map(str, value))
        try:
            parse_layers(text)
        except DeepnetError as exc:
            raise DeepnetError(f"{where}: {exc}") from None
        return tuple(p.strip() for p in text.split(","))
    if field in INT_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
        raise DeepnetError(f"{where}: {field} must be an integer, got {value!r}")
    if field in ("lr", "dev_fraction") and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise DeepnetError(f"{where}: {field} must be a number, got {value!r}")
    if field == "extra_layers":
        return tuple(tuple(pair) for pair in value)
    if field in ("regularizers", "front", "augment"):
        return tuple(value)
    return value


def apply_params(base: Recipe, params: Mapping[str, Any], where: str = "space") -> Recipe:
    """``base`` with each field (or ``optimizer.key`` / ``schedule.key``) set to its value.

    Whole fields first, then dotted keys. A table given for optimizer or schedule is merged into
    the base's config unless it names another component, which starts from that one's defaults.
    """
    fields: dict[str, Any] = {}
    for name in sorted(params, key=lambda n: n.count(".")):
        _check_field(name, where)
        field, _, key = name.partition(".")
        value = params[name]
        if key:
            config = _as_config(fields.get(field, getattr(base, field)))
            config[key] = value
            fields[field] = config
        elif field in CONFIG_FIELDS:
            current = _as_config(getattr(base, field))
            config = _as_config(value)
            same = config.get("name", current["name"]) == current["name"]
            fields[field] = {**current, **config} if same else config
        else:
            fields[field] = _field_value(field, value, where)
    return attrs.evolve(base, **fields)


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables (``optimizer.momentum = [...]``) as dotted names; ranges stay whole."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not (
            len(value) == 1 and next(iter(value)) in DISTRIBUTIONS
        ):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _dimension(name: str, value: Any, where: str) -> list[Any] | Distribution:
    if isinstance(value, Mapping):
        ((kind, bounds),) = value.items()
        ok = isinstance(bounds, list) and len(bounds) == 2
        number = int if kind == "randint" else int | float  # randint draws whole numbers
        ok = ok and all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)
        if not ok or bounds[0] > bounds[1] or (kind == "log_uniform" and bounds[0] <= 0):
            raise DeepnetError(
                f"{where}: {name} = {{{kind} = {bounds!r}}}: give [low, high] with low <= high"
                + (", both integers" if kind == "randint" else "")
                + (" and low > 0" if kind == "log_uniform" else "")
            )
        return Distribution(kind, bounds[0], bounds[1])
    values = value if isinstance(value, list) else [value]
    if not values:
        raise DeepnetError(f"{where}: {name} has no values; give a list with at least one")
    return values


def make_space(spec: Mapping[str, Any], source: str = "space") -> Space:
    """A :class:`Space` from a parsed TOML document: ``[sweep]``, ``[base]``, ``[space]``."""
    unknown = set(spec) - {"sweep", "base", "space"}
    if unknown:
        raise DeepnetError(
            f"{source}: unknown table [{sorted(unknown)[0]}]; a sweep has [sweep], [base], [space]"
        )
    for table, value in spec.items():
        if not isinstance(value, Mapping):
            raise DeepnetError(f"{source}: {table} must be a table [{table}], got {value!r}")
    options = dict(spec.get("sweep", {}))
    known = ("preset", "search", "trials", "max_time", "seed", "metric")
    for key in options:
        if key not in known:
            raise DeepnetError(
                f"{source}: [sweep] unknown option {key!r}.{_close(key, known)} "
                f"Options: {', '.join(known)}"
            )
    recipe = get_recipe(options.get("preset", "default"))
    # In [base] a table for optimizer or schedule is a config to merge, so it stays whole.
    recipe = apply_params(recipe, spec.get("base", {}), f"{source}: [base]")
    where = f"{source}: [space]"
    params: dict[str, Any] = {}
    for name, value in flatten(spec.get("space", {})).items():
        _check_field(name, where)
        params[name] = _dimension(name, value, where)
    space = Space(
        base=recipe,
        params=params,
        search=options.get("search", "grid"),
        trials=options.get("trials"),
        max_time=options.get("max_time"),
        seed=options.get("seed", 0),
        metric=options.get("metric", "dev_accuracy"),
        source=source,
    )
    check_space(space)
    return space


def check_space(space: Space) -> None:
    """One-line errors for options out of range; trials themselves by :func:`make_trials`."""
    where = space.source
    if space.search not in SEARCHES:
        raise DeepnetError(
            f"{where}: search must be one of {', '.join(SEARCHES)}, got {space.search!r}"
        )
    if space.metric not in METRICS:
        raise DeepnetError(
            f"{where}: metric must be one of {', '.join(METRICS)}, got {space.metric!r}"
        )
    for name, value in (("trials", space.trials), ("seed", space.seed)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DeepnetError(f"{where}: {name} must be an integer, got {value!r}")
    if space.trials is not None and space.trials < 1:
        raise DeepnetError(f"{where}: trials must be at least 1, got {space.trials}")
    if space.max_time is not None and not (
        isinstance(space.max_time, int | float) and space.max_time > 0
    ):
        raise DeepnetError(f"{where}: max_time must be a positive number of seconds")
    ranges = [n for n, v in space.params.items() if isinstance(v, Distribution)]
    if space.search == "grid" and ranges:
        raise DeepnetError(
            f"{where}: {ranges[0]} is a range, which a grid cannot enumerate; give a list of "
            'values, or search = "random"'
        )
    if space.search == "random" and space.trials is None:
        raise DeepnetError(f"{where}: random search needs a budget: trials = N")


def read_space_file(path: str | Path) -> dict[str, Any]:
    """The tables of a sweep definition (TOML), or a one-line error naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeepnetError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise DeepnetError(f"{path}: not a text file; a sweep definition is TOML") from None


def load_space(path: str | Path) -> Space:
    """Read a sweep definition: [sweep] options, [base] fixed fields, [space] values to try."""
    return make_space(read_space_file(path), str(path))


def _draws(space: Space) -> list[dict[str, Any]]:
    names = list(space.params)
    if space.search == "grid":
        combos = itertools.product(*(space.params[n] for n in names))
        return [dict(zip(names, c, strict=True)) for c in itertools.islice(combos, space.trials)]
    rng = np.random.default_rng(space.seed)
    draws = []
    for _ in range(space.trials or 0):
        draw = {}
        for n in names:
            dim = space.params[n]
            # Lists are drawn by index: numpy would turn mixed values into one dtype.
            draw[n] = (
                dim.sample(rng) if isinstance(dim, Distribution) else dim[rng.integers(len(dim))]
            )
        draws.append(draw)
    return draws


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def recipe_fields(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON-ready data, without its name and description."""
    return _jsonable({f: getattr(recipe, f) for f in FIELDS})


def trial_id(recipe: Recipe, data_key: str, dtype: str) -> str:
    """A stable hash of what determines a trial's result: its recipe, its data, its dtype."""
    text = json.dumps(
        {"recipe": recipe_fields(recipe), "data": data_key, "dtype": dtype}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def make_trials(space: Space, data_key: str = "", dtype: str = "float32") -> list[Trial]:
    """The trials of ``space`` in order, duplicates (same recipe) dropped, each validated."""
    from deepnet.core.plugins import get_registry

    reg = get_registry()
    trials: list[Trial] = []
    seen: set[str] = set()
    for draw in _draws(space):
        where = f"{space.source}: trial {describe_params(draw) or '(base)'}"
        recipe = apply_params(space.base, draw, where)
        try:
            validate_recipe(reg, recipe, dtype)
        except DeepnetError as exc:
            raise DeepnetError(f"{where}: {exc}") from None
        if recipe.dev_fraction <= 0:
            raise DeepnetError(
                f"{where}: a sweep scores trials on the dev set; dev_fraction must be > 0"
            )
        tid = trial_id(recipe, data_key, dtype)
        if tid not in seen:
            seen.add(tid)
            trials.append(Trial(len(trials), _jsonable(draw), recipe, tid))
    return trials


def describe_params(params: Mapping[str, Any]) -> str:
    def text(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list | tuple):
            return ",".join(map(str, v))
        return json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else str(v)

    return " ".join(f"{k}={text(v)}" for k, v in params.items())
