"""The ``deepnet`` command line: list components and plugins, train, evaluate, predict, check.

Exit codes follow click: 0 on success, 1 when something ran and failed (a conformance check,
training that diverged, a plugin that failed to load in strict mode, a missing optional
dependency), 2 for a usage mistake (unknown component or option, malformed spec, missing or
foreign file). A mistake is reported on one line, ``Error: <what> ...; <how to fix it>``,
never as a traceback.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import click
import numpy as np

from deepnet import __version__
from deepnet._extras import MissingExtraError, require
from deepnet.core import plugins
from deepnet.core.checkpoint import open_checkpoint
from deepnet.core.components import KINDS, Callback
from deepnet.core.data import NORMALIZATIONS, Dataset, load_idx_dir
from deepnet.core.errors import (
    AmbiguousComponentError,
    DeepnetError,
    DivergenceError,
    PluginError,
    UnknownComponentError,
)
from deepnet.core.model import FLOAT_DTYPES, Model
from deepnet.core.registry import REQUIRED, Entry, Registry
from deepnet.ensemble import COMBINE, pool
from deepnet.images import model_normalization, model_normalizer, recorded_data_dir
from deepnet.postal import MIN_CONFIDENCE
from deepnet.recipes import Recipe, get_recipe, parse_layers, run_recipe, validate_recipe

DATASETS = ("mnist",)

# -- errors ------------------------------------------------------------------------------


class UserError(click.ClickException):
    """A mistake in what was asked: one line on stderr, exit code 2 (as click's usage errors)."""

    exit_code = 2


class Failure(click.ClickException):
    """The command ran and failed: one line on stderr, exit code 1."""

    exit_code = 1


def one_line(message: Any) -> str:
    """``message`` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(message).split())


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn deepnet's exceptions and bad user paths into one-line click errors."""
    try:
        yield
    except (PluginError, DivergenceError, MissingExtraError) as exc:
        raise Failure(one_line(exc)) from None
    except DeepnetError as exc:
        raise UserError(one_line(exc)) from None
    except (
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
        # OSError's str() is "[Errno 2] No such file or directory: 'x'"; say it plainly.
        if exc.filename is not None and exc.strerror:
            raise UserError(f"{exc.filename}: {exc.strerror.lower()}") from None
        raise UserError(one_line(exc)) from None


class _Command(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        with user_errors():
            return super().invoke(ctx)


class _Group(click.Group):
    command_class = _Command


# -- shared helpers ----------------------------------------------------------------------


def emit_json(obj: Any) -> None:
    """Print ``obj`` as strict JSON (NaN and infinities become null)."""
    click.echo(json.dumps(_finite(obj), indent=2, default=_json_default))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def percent(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2%}"


def warn(message: str) -> None:
    click.echo(f"warning: {one_line(message)}", err=True)


@attrs.define
class PluginOptions:
    """The group's plugin options; the registry is reloaded with them once, on first use."""

    disabled: tuple[str, ...] = ()
    strict: bool = False
    applied: bool = False


def registry() -> Registry:
    """The process registry, loaded with the group's options; plugin warnings as one line."""
    ctx = click.get_current_context(silent=True)
    opts = ctx.find_object(PluginOptions) if ctx else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", plugins.PluginWarning)
        if opts is not None and not opts.applied and (opts.disabled or opts.strict):
            opts.applied = True
            reg = plugins.load_plugins(strict=opts.strict or None, disabled=opts.disabled)
            plugins.set_registry(reg)
        reg = plugins.get_registry()
    for w in caught:
        if issubclass(w.category, plugins.PluginWarning):
            warn(str(w.message))
        else:  # not ours to reformat
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return reg


def load_data(
    dataset: str | None, data_dir: str | None, normalize: str, dtype: Any
) -> tuple[Dataset, dict[str, Any]]:
    """The bundled data set or an IDX directory, and a record of where it came from."""
    if dataset and data_dir:
        raise UserError("give --dataset or --data-dir, not both")
    if data_dir:
        directory = Path(data_dir).expanduser().resolve()
        data = load_idx_dir(directory, normalize=normalize, dtype=dtype)
        return data, {"dataset": directory.name, "data_dir": str(directory)}
    from deepnet.datasets import load_mnist

    return load_mnist(normalize=normalize, dtype=dtype), {"dataset": "mnist", "data_dir": None}


def limited(data: Dataset, limit: int | None) -> Dataset:
    """``data`` with only its first ``limit`` training and test samples."""
    if limit is None:
        return data
    return attrs.evolve(
        data,
        x_train=data.x_train[:limit],
        y_train=data.y_train[:limit],
        x_test=data.x_test[:limit],
        y_test=data.y_test[:limit],
    )


dtype_option = click.option(
    "--dtype",
    type=click.Choice(FLOAT_DTYPES),
    default="float32",
    show_default=True,
    help="Floating type of weights and data.",
)


def data_options(f: Any) -> Any:
    """``--dataset``, ``--data-dir`` and ``--limit``, shared by train and evaluate."""
    f = click.option(
        "--limit",
        type=click.IntRange(min=1),
        metavar="N",
        help="Use only the first N training and N test images (quick runs).",
    )(f)
    f = click.option(
        "--data-dir",
        metavar="DIR",
        help="A directory of the four MNIST-layout IDX files (raw or .gz) instead.",
    )(f)
    return click.option(
        "--dataset", type=click.Choice(DATASETS), help="A bundled data set [default: mnist]."
    )(f)


def check_model_file(path: str) -> None:
    """Fail early, with a hint, for a missing model file."""
    if not Path(path).exists():
        raise UserError(f"{path}: no such model file; train one with: deepnet train --out {path}")


def load_model(path: str) -> Model:
    """The model at ``path``, loaded with the process registry."""
    from deepnet.core.serialization import load_model as _load

    check_model_file(path)
    registry()
    return _load(path)


# -- normalization of new inputs -----------------------------------------------------------


def min_confidence_option(f: Any) -> Any:
    """``--min-confidence``, shared by ``predict --code`` and ``postal eval``."""
    return click.option(
        "--min-confidence",
        type=click.FloatRange(0.0, 1.0),
        default=MIN_CONFIDENCE,
        show_default=True,
        help="Read as a code: one whose confidence (its digits' probabilities multiplied) is "
        "below this needs a human.",
    )(f)


def with_option(f: Any) -> Any:
    """``--with MODEL`` and ``--combine``, shared by ``predict`` and ``postal eval``: an
    ensemble."""
    f = click.option(
        "--combine",
        type=click.Choice(COMBINE),
        default=COMBINE[0],
        show_default=True,
        help="How an ensemble's probabilities are pooled: multiplied class by class and "
        "renormalized (geometric), or averaged (mean).",
    )(f)
    return click.option(
        "--with",
        "with_paths",
        metavar="MODEL",
        multiple=True,
        help="Pool the probabilities of this model too (an ensemble of digit models with "
        "the same inputs, see --combine); repeatable.",
    )(f)


def load_models(model_path: str, with_paths: Sequence[str]) -> list[Model]:
    """MODEL and every ``--with`` model, checked to take the same inputs and give the same
    outputs."""
    models = [load_model(p) for p in (model_path, *with_paths)]
    for path, m in zip(with_paths, models[1:], strict=True):
        if (m.input_shape, m.output_shape) != (models[0].input_shape, models[0].output_shape):
            raise UserError(
                f"{path}: maps {tuple(m.input_shape)} -> {tuple(m.output_shape)}, but "
                f"{model_path} maps {tuple(models[0].input_shape)} -> "
                f"{tuple(models[0].output_shape)}; an ensemble's models must agree"
            )
    return models


def normalize_option(f: Any) -> Any:
    return click.option(
        "--normalize",
        type=click.Choice(NORMALIZATIONS),
        help="Override the normalization recorded in the model (rarely needed); ignored for "
        "a model with a normalize layer, which takes raw pixels.",
    )(f)


# -- the group -----------------------------------------------------------------------------


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, "-V", "--version", prog_name="deepnet")
@click.option(
    "--disable-plugin",
    "disabled",
    multiple=True,
    metavar="NAME",
    help=f"Skip plugin NAME (entry point or distribution); repeatable. Env: {plugins.ENV_DISABLE}.",
)
@click.option(
    "--strict-plugins",
    is_flag=True,
    help=f"Fail (exit 1) if any plugin fails to load. Env: {plugins.ENV_STRICT}=1.",
)
@click.pass_context
def main(ctx: click.Context, disabled: tuple[str, ...], strict_plugins: bool) -> None:
    """deepnet: train and use digit recognizers from the terminal.

    \b
    Quick start:
      deepnet train --epochs 3 --out digits.npz
      deepnet evaluate digits.npz
      deepnet predict digits.npz my-digit.png
    """
    names = tuple(n.strip() for d in disabled for n in d.split(",") if n.strip())
    ctx.obj = PluginOptions(names, strict_plugins)


# -- list ----------------------------------------------------------------------------------


def _kind(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    kind = value.lower()
    for plural in ("es", "s"):  # "layers" and "losses" too
        if kind not in KINDS and kind.endswith(plural) and kind[: -len(plural)] in KINDS:
            kind = kind[: -len(plural)]
    if kind not in KINDS:
        raise click.BadParameter(f"{value!r} is not a kind; choose from {', '.join(KINDS)}")
    return kind


def plural(kind: str) -> str:
    return f"{kind}es" if kind.endswith("s") else f"{kind}s"


def entry_record(reg: Registry, entry: Entry) -> dict[str, Any]:
    """An entry as JSON-ready data: name, qualified name, params, provider, doc."""
    among = reg.collisions().get((entry.kind, entry.name), [entry])
    prov = entry.provenance
    return {
        "kind": entry.kind,
        "name": entry.name,
        "qualified_name": reg.qualified_name(entry, among),
        "ambiguous": len(among) > 1,
        "params": [
            {
                "name": p.name,
                "required": p.default == REQUIRED,
                "default": None if p.default == REQUIRED else _finite(p.default),
            }
            for p in entry.params
        ],
        "doc": entry.doc,
        "plugin": prov.plugin,
        "distribution": prov.distribution,
        "version": prov.version,
    }


def _signature(entry: Entry) -> str:
    parts = [p.name if p.default == REQUIRED else f"{p.name}={p.default!r}" for p in entry.params]
    return f"({', '.join(parts)})" if parts else ""


@main.command("list")
@click.argument("kind", required=False, callback=_kind, metavar="[KIND]")
@json_option
def list_components(kind: str | None, as_json: bool) -> None:
    """List registered components: parameters, provider and doc.

    KIND is one of: layer, activation, loss, optimizer, regularizer, initializer, schedule,
    callback, recipe (plurals work too). A name two plugins register is shown under both qualified
    names (provider/name); use those to pick one.
    """
    reg = registry()
    entries = list(reg.entries(kind))
    if as_json:
        emit_json([entry_record(reg, e) for e in entries])
        return
    collisions = reg.collisions()
    for k in [kind] if kind else list(KINDS):
        of_kind = [e for e in entries if e.kind == k]
        click.secho(f"{plural(k)} ({len(of_kind)})", bold=True)
        if not of_kind:
            click.echo("  (none registered)")
        for e in of_kind:
            among = collisions.get((e.kind, e.name))
            name = reg.qualified_name(e, among) if among else e.name
            prov = e.provenance
            source = f"{prov.distribution} {prov.version}" if prov.distribution else "in-process"
            click.echo(f"  {name}{_signature(e)}  [{source}; plugin {prov.plugin}]")
            if e.doc:
                click.echo(f"      {e.doc}")
    for (k, n), among in collisions.items():
        if kind in (None, k):
            names = ", ".join(reg.qualified_name(e, among) for e in among)
            warn(f"{k} {n!r} has {len(among)} providers; pick one by qualified name: {names}")


# -- plugins -------------------------------------------------------------------------------


@main.command("plugins")
@json_option
def list_plugins(as_json: bool) -> None:
    """List plugins: distribution, version, hooks, status (loaded, disabled, failed + error).

    Disable one with `deepnet --disable-plugin NAME ...` or DEEPNET_DISABLE_PLUGINS=NAME;
    make any load failure fatal with --strict-plugins or DEEPNET_STRICT_PLUGINS=1.
    """
    reg = registry()
    infos = reg.plugins
    if as_json:
        emit_json([attrs.asdict(p) for p in infos])
        return
    rows = [
        (p.name, f"{p.distribution} {p.version}" if p.distribution else "(in-process)", p)
        for p in infos
    ]
    w_name = max([len("PLUGIN"), *(len(r[0]) for r in rows)])
    w_dist = max([len("DISTRIBUTION"), *(len(r[1]) for r in rows)])
    click.echo(f"{'PLUGIN':<{w_name}}  {'DISTRIBUTION':<{w_dist}}  STATUS    COMPONENTS  HOOKS")
    for name, dist, p in rows:
        # Pad before styling: the colour codes would otherwise count as width.
        status = click.style(
            f"{p.status:<8}", fg={"loaded": "green", "failed": "red"}.get(p.status)
        )
        hooks = ", ".join(p.hooks) or "-"
        click.echo(f"{name:<{w_name}}  {dist:<{w_dist}}  {status}  {p.components:>10}  {hooks}")
        if p.error:
            click.echo(f"{'':<{w_name}}  error: {p.error.splitlines()[0]}")
    counts = {s: sum(p.status == s for p in infos) for s in ("loaded", "disabled", "failed")}
    click.echo(f"{len(infos)} plugins: " + ", ".join(f"{n} {s}" for s, n in counts.items()))


# -- train ---------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` with value read as JSON (numbers, true/false, null) or else a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise UserError(f"malformed parameter {text!r}: write NAME=VALUE, e.g. momentum=0.9")
    raw = raw.strip()
    lowered = {"true": "true", "false": "false", "none": "null", "null": "null"}
    try:
        value = json.loads(lowered.get(raw.lower(), raw))
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def _config(spec: Any) -> dict[str, Any]:
    return dict(spec) if isinstance(spec, dict) else {"name": spec}


def build_recipe(preset: str, **opts: Any) -> Recipe:
    """The registered recipe ``preset`` with every option given (not None) replacing its field."""
    recipe = get_recipe(preset, registry())
    fields: dict[str, Any] = {}
    for name in ("loss", "init", "epochs", "batch_size", "seed", "dev_fraction", "normalize"):
        if opts.get(name) is not None:
            fields[name] = opts[name]
    if opts.get("layers") is not None:
        parse_layers(opts["layers"])  # fail now, with the spec's own message
        fields["layers"] = tuple(p.strip() for p in opts["layers"].split(","))
        # The recipe's extra layers (dropout) keep their places among the dense layers; one
        # placed after the output layer would be a mistake, not a model.
        if recipe.extra_layers and max(p for p, _ in recipe.extra_layers) >= len(fields["layers"]):
            position, spec = max(recipe.extra_layers, key=lambda e: e[0])
            raise UserError(
                f"{recipe.name} puts {_config(spec)['name']} before dense layer {position + 1}, "
                f"so --layers needs at least {position + 1} layers (output included)"
            )
    if opts.get("shuffle") is not None:
        fields["shuffle"] = opts["shuffle"]
    if opts.get("augment") is not None and opts["augment"] != bool(recipe.augment):
        fields["augment"] = ({"name": "random_affine"},) if opts["augment"] else ()
    if opts.get("lr") is not None:
        fields["lr"] = opts["lr"]
    # Naming an optimizer starts from its defaults, not from the preset's settings for another.
    optimizer = {"name": opts["optimizer"]} if opts.get("optimizer") else _config(recipe.optimizer)
    if opts.get("momentum") is not None:
        optimizer["momentum"] = opts["momentum"]
    for name, value in map(parse_assignment, opts.get("opt_params") or ()):
        if name == "lr":  # the recipe's lr is what fit uses; keep one source of truth
            fields["lr"] = value
        else:
            optimizer[name] = value
    fields["optimizer"] = optimizer
    schedule = {"name": opts["schedule"]} if opts.get("schedule") else _config(recipe.schedule)
    for name, value in map(parse_assignment, opts.get("schedule_params") or ()):
        schedule[name] = value
    fields["schedule"] = schedule if len(schedule) > 1 else schedule["name"]
    return attrs.evolve(recipe, **fields)


class Progress(Callback):
    """A progress bar per epoch on a terminal (batches, running loss, ETA); a line per epoch."""

    def __init__(self, epochs: int, bar: bool, file: Any = None) -> None:
        self.epochs, self.show_bar, self.file = epochs, bar, file
        self.bar: Any = None
        self.loss_sum = 0.0

    def _label(self, epoch: int, loss: float | None) -> str:
        # Fixed width, so that the bar does not jump once the first loss is known.
        return f"epoch {epoch + 1}/{self.epochs}  loss {'-' * 6 if loss is None else f'{loss:.4f}'}"

    def _close_bar(self) -> None:
        # Clear the bar's line (and show the cursor again) so the epoch's summary replaces it;
        # click's own finish would leave the full bar above every summary line.
        if self.bar is not None:
            click.echo("\r\x1b[2K\x1b[?25h", nl=False, file=self.file)
            self.bar = None

    def on_batch_end(self, model: Any, epoch: int, batch: int, n_batches: int, loss: float) -> None:
        if batch == 0:
            self.loss_sum = 0.0
            if self.show_bar:
                self.bar = click.progressbar(
                    length=n_batches, label=self._label(epoch, None), show_pos=True, file=self.file
                )
                self.bar.__enter__()
        self.loss_sum += loss
        if self.bar is not None:
            self.bar.label = self._label(epoch, self.loss_sum / (batch + 1))
            self.bar.update(1)

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> bool:
        self._close_bar()
        parts = [self._label(epoch, logs["loss"]), f"train {percent(logs['train_accuracy'])}"]
        if "dev_accuracy" in logs:
            parts.append(f"dev {percent(logs['dev_accuracy'])}")
        parts += [f"lr {logs['lr']:.4g}", f"{logs['seconds']:.1f}s"]
        click.echo("  ".join(parts), file=self.file)
        return False

    def on_train_end(self, model: Any) -> None:
        self._close_bar()


def _layer_name(spec: Any) -> str:
    """A layer spec's name: a config's, a bare name, or a layer object's class."""
    if isinstance(spec, dict | str):
        return str(_config(spec)["name"])
    return type(spec).__name__.lower()


def _describe(recipe: Recipe, n_features: int) -> str:
    # Dense layers by their units, others (conv2d, dropout, ...) by name, in the model's order;
    # augmentation comes last, as before.
    parts = [
        str(spec["units"]) if isinstance(spec, dict) and "units" in spec else _layer_name(spec)
        for spec in recipe(augment=()).layer_specs()
    ]
    layers = "-".join([str(n_features), *parts])
    acts = "/".join(s.partition(":")[2] or "linear" for s in recipe.layers)
    opt = recipe.optimizer if isinstance(recipe.optimizer, dict) else {"name": recipe.optimizer}
    opt_text = ", ".join(f"{k}={v}" for k, v in opt.items() if k != "name")
    return (
        f"{layers} {acts}, {recipe.loss}, {opt['name']}({opt_text or 'defaults'}) lr {recipe.lr}"
        f", {recipe.epochs} epochs, batch {recipe.batch_size}, init {recipe.init}"
        # With the options a spec sets: random_affine(elastic=0.7).
        + "".join(
            f", {_config_text(_config(spec)) if isinstance(spec, dict) else _layer_name(spec)}"
            for spec in recipe.augment
        )
    )


@main.command()
@click.option(
    "--preset",
    metavar="NAME",
    default="default",
    show_default=True,
    help="Start from a registered recipe (`deepnet list recipe`: default, seed-a, seed-b and "
    "those of plugins, e.g. contrib's postal); the options below override its fields.",
)
@click.option(
    "--layers",
    metavar="SPEC",
    help="Dense layers, output included: 50:tanh,10:softmax (after a CNN recipe's conv layers).",
)
@click.option("--loss", metavar="NAME", help="Loss (see `deepnet list loss`).")
@click.option("--optimizer", metavar="NAME", help="Optimizer, with its defaults.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Base learning rate.")
@click.option("--momentum", type=float, help="The optimizer's momentum.")
@click.option(
    "--opt-param",
    "opt_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any optimizer field, e.g. nesterov=true; repeatable.",
)
@click.option("--init", metavar="NAME", help="Weight initializer (see `deepnet list initializer`).")
@click.option("--schedule", metavar="NAME", help="Learning-rate schedule (constant, cosine, ...).")
@click.option(
    "--schedule-param",
    "schedule_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any schedule field, e.g. warmup_epochs=1; repeatable.",
)
@click.option("--epochs", type=click.IntRange(min=1), metavar="N", help="Passes over the data.")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N", help="Samples per step.")
@click.option("--seed", type=int, help="Seed of weights, split and shuffling (reproducible).")
@click.option(
    "--dev-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of the training set held out as dev set.",
)
@click.option("--shuffle/--no-shuffle", default=None, help="Shuffle every epoch (default: yes).")
@click.option(
    "--augment/--no-augment",
    default=None,
    help="Add or remove random_affine, which distorts the training images, before the "
    "recipe's layers (default: as the preset). Augmentation among the layers stays "
    "(regularized's random_shift).",
)
@dtype_option
@data_options
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), help="Input normalization.")
@click.option("--out", metavar="MODEL", help="Save the trained model here (.npz).")
@click.option("--plot", metavar="FILE.png", help="Draw the learning curves (needs deepnet[plot]).")
@click.option("--history", metavar="FILE", help="Write per-epoch metrics (.json, or .csv).")
@click.option("--checkpoint", metavar="FILE", help="Save the training state here every epoch.")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint (same options).")
def train(
    preset: str,
    dtype: str,
    dataset: str | None,
    data_dir: str | None,
    limit: int | None,
    out: str | None,
    plot: str | None,
    history: str | None,
    checkpoint: str | None,
    resume: bool,
    **opts: Any,
) -> None:
    """Train a model on MNIST (or any IDX directory) and report its accuracy.

    With no option it trains the default recipe; `--preset seed-a` is the course notebook's,
    `--preset postal` contrib's CNN (`deepnet list recipe` lists them all). The last line is the
    test accuracy.
    """
    reg = registry()
    recipe = build_recipe(preset, **opts)
    validate_recipe(reg, recipe, dtype)
    # Fail before data loading (fit checks again): no checkpoint to resume, or one in the way.
    if resumed := open_checkpoint(checkpoint, resume):
        click.echo(f"resuming from {checkpoint}: {resumed.epoch} of {recipe.epochs} epochs done")
    if plot:
        require("matplotlib")  # before training, not after
    # Raw uint8 pixels: the model normalizes them in its first layer (run_recipe).
    data, source = load_data(dataset, data_dir, "none", "uint8")
    data = limited(data, limit)
    # Labels are class indices; a small --limit may not show every class, which is fine.
    n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    units = int(recipe.layers[-1].partition(":")[0])
    if units < n_classes:
        raise UserError(
            f"the output layer has {units} units but the data has {n_classes} classes; "
            f"end --layers with {n_classes}:softmax (or {n_classes}:sigmoid)"
        )
    click.echo(f"training {recipe.name}: {_describe(recipe, data.x_train.shape[1])}")
    click.echo(
        f"data: {source['dataset']}, {len(data.x_train)} training images "
        f"({recipe.dev_fraction:.1%} held out as dev), {len(data.x_test)} test, "
        f"normalize {recipe.normalize}"
    )
    isatty = getattr(sys.stdout, "isatty", None)
    progress = Progress(recipe.epochs, bar=bool(isatty and isatty()))
    model, summary = run_recipe(
        recipe, data, dtype=dtype, callbacks=[progress], checkpoint=checkpoint, resume=resume
    )
    model.meta["data"] = {**source, "normalize": recipe.normalize, "limit": limit}
    if out:
        click.echo(f"saved model: {model.save(out)}")
    epochs = model.meta["history"]["epochs"]
    if history:
        from deepnet.core.training import History

        click.echo(f"history: {History(epochs=epochs).write(history)}")
    if plot:
        from deepnet.plotting import learning_curves

        click.echo(f"learning curves: {learning_curves(epochs, plot)}")
    click.echo(f"train accuracy: {percent(summary['train_accuracy'])}")
    click.echo(f"dev accuracy: {percent(summary['dev_accuracy'])}")
    click.echo(f"training time: {summary['seconds']:.1f} s ({summary['epochs']} epochs)")
    click.echo(f"test accuracy: {percent(summary['test_accuracy'])}")


# -- evaluate ------------------------------------------------------------------------------


def _confusion_text(confusion: list[list[int]]) -> list[str]:
    k = len(confusion)
    width = max(len(str(max(max(row) for row in confusion))), 3)
    lines = ["true\\pred " + " ".join(f"{j:>{width}}" for j in range(k))]
    for i, row in enumerate(confusion):
        lines.append(f"{i:>9} " + " ".join(f"{c:>{width}}" for c in row))
    return lines


@main.command()
@click.argument("model_path", metavar="MODEL")
@data_options
@normalize_option
@click.option("--confusion", metavar="FILE.png", help="Draw the confusion matrix.")
@json_option
def evaluate(
    model_path: str,
    dataset: str | None,
    data_dir: str | None,
    limit: int | None,
    normalize: str | None,
    confusion: str | None,
    as_json: bool,
) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on a test set.

    The test set is the model's own data set (recorded when it was trained) unless
    --dataset or --data-dir names another.
    """
    from deepnet.metrics import classification_report

    if confusion:
        require("matplotlib")  # before the work, not after
    model = load_model(model_path)
    method = model_normalization(model, normalize)
    if not (dataset or data_dir):
        data_dir = recorded_data_dir(model)
    raw, source = load_data(dataset, data_dir, "none", "uint8")
    raw = limited(raw, limit)
    x_raw, y = raw.x_test, raw.y_test
    x = model_normalizer(model, normalize)(x_raw.reshape(len(x_raw), -1))
    scores = model.evaluate(x, y)
    report = classification_report(y, model.predict(x), model.output_shape[-1])
    if confusion:
        from deepnet.plotting import confusion_picture

        confusion_picture(report["confusion"], confusion)
    result = {
        "model": model_path,
        "dataset": source["dataset"],
        "normalize": method,
        "loss": scores["loss"],
        **report,
    }
    if as_json:
        emit_json(result | ({"confusion_picture": confusion} if confusion else {}))
        return
    click.echo(f"model: {model_path}")
    click.echo(
        f"data: {source['dataset']} test set, {report['samples']} images, normalize {method}"
    )
    click.echo(f"accuracy: {percent(report['accuracy'])}   loss: {scores['loss']:.4f}")
    click.echo("")
    click.echo("class  precision  recall     f1  support")
    for c in report["classes"]:
        click.echo(
            f"{c['label']:>5}  {c['precision']:>9.2%}  {c['recall']:>6.2%}  "
            f"{c['f1']:>6.2%}  {c['support']:>7}"
        )
    m = report["macro"]
    click.echo(f"macro  {m['precision']:>9.2%}  {m['recall']:>6.2%}  {m['f1']:>6.2%}")
    click.echo("")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    for line in _confusion_text(report["confusion"]):
        click.echo(line)
    click.echo("")
    pairs = report["most_confused"]
    click.echo(
        "most confused (true -> predicted): "
        + (", ".join(f"{p['true']}->{p['predicted']} ({p['count']})" for p in pairs) or "none")
    )
    if confusion:
        click.echo(f"confusion picture: {confusion}")


# -- predict -------------------------------------------------------------------------------


def read_inputs(paths: Sequence[str], n_features: int) -> list[tuple[str, np.ndarray]]:
    """``(label, raw pixel row)`` for each picture, and for each row of each ``.npy``."""
    from deepnet.images import load_image, load_npy

    rows: list[tuple[str, np.ndarray]] = []
    if any(not p.lower().endswith(".npy") for p in paths):
        require("PIL")
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file")
        if path.lower().endswith(".npy"):
            arr = load_npy(path, n_features)
            labels = [path] if len(arr) == 1 else [f"{path}[{i}]" for i in range(len(arr))]
            rows += zip(labels, arr, strict=True)
        else:
            if n_features != 28 * 28:
                raise UserError(
                    f"{path}: pictures become 28x28 = 784 inputs but the model takes "
                    f"{n_features}; give a .npy array of shape (N, {n_features}) instead"
                )
            rows.append((path, load_image(path).ravel()))
    return rows


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Show the TOP most likely digits.",
)
@click.option("--code", is_flag=True, help="Read each picture as a code of several digits.")
@min_confidence_option
@click.option(
    "--expect-digits",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --code: the code has N digits (guides segmentation).",
)
@click.option(
    "--debug-dir", metavar="DIR", help="With --code: write the normalized digits as PNGs here."
)
@with_option
@normalize_option
@json_option
def predict(
    model_path: str,
    inputs: tuple[str, ...],
    top: int,
    code: bool,
    min_confidence: float,
    expect_digits: int | None,
    debug_dir: str | None,
    with_paths: tuple[str, ...],
    combine: str,
    normalize: str | None,
    as_json: bool,
) -> None:
    """Predict the digit in pictures (PNG, JPEG, ...) or .npy arrays.

    \b
    Pictures: any size, dark on light or light on dark; they are prepared as MNIST's digits
    were (grayscale, inverted if the background is light, cropped to the ink, scaled into
    20x20, centred by mass in 28x28). Needs Pillow: pip install 'deepnet[image]'.
    Arrays: .npy of shape (28, 28) or (N, 784), pixels 0..255 (or 0..1 floats), MNIST-style.
    Codes (--code): a picture of several digits in a row is cut into digits, each read as
    above; prints the code, each digit's confidence, and whether a human must check it.
    """
    if not code and (expect_digits is not None or debug_dir):
        raise UserError("--expect-digits and --debug-dir read codes: add --code")
    models = load_models(model_path, with_paths)
    model = models[0]
    if code:
        from deepnet.postal_cli import predict_codes

        opts = {
            "min_confidence": min_confidence,
            "expect_digits": expect_digits,
            "combine": combine,
        }
        return predict_codes(
            models, inputs, **opts, debug_dir=debug_dir, normalize=normalize, as_json=as_json
        )
    if len(model.input_shape) != 1:
        raise UserError(f"{model_path}: predict supports models with flat inputs (N, features)")
    rows = read_inputs(inputs, model.input_shape[0])
    x = np.stack([r for _, r in rows])
    proba = pool([m.predict_proba(model_normalizer(m, normalize)(x)) for m in models], combine)
    results = []
    for (label, _), p in zip(rows, proba, strict=True):
        best = np.argsort(-p, kind="stable")[:top]
        results.append(
            {
                "input": label,
                "prediction": int(best[0]),
                "probability": float(p[best[0]]),
                "top": [{"digit": int(k), "probability": float(p[k])} for k in best],
                "probabilities": [float(v) for v in p],
            }
        )
    if as_json:
        emit_json(results)
        return
    for r in results:
        alts = ", ".join(f"{t['digit']} ({t['probability']:.1%})" for t in r["top"])
        click.echo(f"{r['input']}: {alts}")


# -- check ---------------------------------------------------------------------------------


def resolve_components(reg: Registry, names: Sequence[str], kind: str | None) -> list[Entry]:
    """The entries named (bare or ``provider/name``), every provider of a shared bare name."""
    kinds = [kind] if kind else list(KINDS)
    found: list[Entry] = []
    for name in names:
        matches: list[Entry] = []
        for k in kinds:
            try:
                matches.append(reg.lookup(k, name))
            except AmbiguousComponentError:
                matches += [e for e in reg.entries(k) if e.name == name.lower()]
            except UnknownComponentError:
                continue
        if not matches:
            known = sorted({e.name for k in kinds for e in reg.entries(k)})
            close = difflib.get_close_matches(name.rpartition("/")[2].lower(), known, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            what = f"{kind} " if kind else "component "
            raise UserError(
                f"unknown {what}{name!r}.{hint} `deepnet list{' ' + kind if kind else ''}` "
                "shows the registered names"
            )
        found += [e for e in matches if e not in found]
    return found


@main.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--kind", callback=_kind, metavar="KIND", help="Only components of this kind.")
@click.option("-v", "--verbose", is_flag=True, help="Also a line per check.")
@json_option
def check(names: tuple[str, ...], kind: str | None, verbose: bool, as_json: bool) -> None:
    """Run the conformance kit on every registered component, or on the NAMEs given.

    NAME is bare (relu) or qualified (provider/name). Prints PASS or FAIL per component,
    with what failed; exits 1 if anything failed, including a plugin that failed to load.
    """
    from deepnet import testing

    reg = registry()
    entries = resolve_components(reg, names, kind) if names else list(reg.entries(kind))
    broken = [] if names or kind else [p for p in reg.plugins if p.status == "failed"]
    records = []
    for entry in entries:
        among = reg.collisions().get((entry.kind, entry.name))
        name = reg.qualified_name(entry, among) if among else entry.name
        results = testing.check_component(entry.kind, name, reg)
        records.append({"kind": entry.kind, "name": name, "results": results})
    failed = sum(not all(r.passed for r in rec["results"]) for rec in records) + len(broken)
    if as_json:
        emit_json(
            {
                "passed": failed == 0,
                "components": [
                    {
                        **rec,
                        "passed": all(r.passed for r in rec["results"]),
                        "results": [attrs.asdict(r) for r in rec["results"]],
                    }
                    for rec in records
                ],
                "failed_plugins": [{"name": p.name, "error": one_line(p.error)} for p in broken],
            }
        )
    else:
        for rec in records:
            bad = [r for r in rec["results"] if not r.passed]
            verdict = click.style("FAIL", fg="red") if bad else click.style("PASS", fg="green")
            detail = "; ".join(f"{r.check}: {r.detail}" for r in bad) or (
                f"{len(rec['results'])} checks"
            )
            click.echo(f"{verdict}  {rec['kind']:<11} {rec['name']:<26} {detail}")
            if verbose:
                for r in rec["results"]:
                    click.echo(f"      {r}")
        for p in broken:
            click.echo(
                f"{click.style('FAIL', fg='red')}  {'plugin':<11} {p.name:<26} "
                f"{p.error.splitlines()[0]}"
            )
        click.echo(f"{len(records) + len(broken)} checked: {failed} failed")
    if failed:
        raise SystemExit(1)


# -- info ----------------------------------------------------------------------------------


def _config_text(config: dict[str, Any], skip: Sequence[str] = ()) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in config.items() if k != "name" and k not in skip)
    return f"{config.get('name', '?')}({fields})" if fields else str(config.get("name", "?"))


def _provider(item: dict[str, Any]) -> str:
    if item.get("distribution"):
        return f"{item['distribution']} {item.get('version') or ''}".strip()
    return item.get("plugin") or "?"


def model_info(path: str) -> dict[str, Any]:
    """The saved header of ``path`` with parameter counts per layer added."""
    from deepnet.core.serialization import read_header

    check_model_file(path)
    header, arrays = read_header(path)
    counts: dict[int, int] = {}
    for key, value in arrays.items():
        # Layer arrays only (a checkpoint also holds optimizer.*); load checks the names.
        _, index, group, *_ = [*key.split("."), "", "", ""]
        if key.startswith("layers.") and index.isascii() and index.isdigit() and group == "params":
            counts[int(index)] = counts.get(int(index), 0) + int(value.size)
    layers = [
        {**item, "params": counts.get(i, 0)} for i, item in enumerate(header.get("layers", []))
    ]
    return {"path": path, **header, "layers": layers, "total_params": sum(counts.values())}


@main.command()
@click.argument("model_path", metavar="MODEL")
@json_option
def info(model_path: str, as_json: bool) -> None:
    """Architecture, parameters, components and their providers, training settings, metrics."""
    h = model_info(model_path)
    if as_json:
        emit_json(h)
        return
    meta = h.get("meta") or {}
    click.echo(f"model: {model_path} ({h['format']} format {h.get('format_version')})")
    click.echo(
        f"dtype {h.get('dtype')}, input {tuple(h.get('input_shape', []))}, "
        f"output {tuple(h.get('output_shape', []))}, weights seed {h.get('seed')}"
    )
    click.echo("layers:")
    for i, item in enumerate(h["layers"]):
        config = item.get("config", {})
        act = config.get("activation")
        act_text = _config_text(act) if isinstance(act, dict) else str(act or "-")
        click.echo(
            f"  {i}  {_config_text(config, skip=('activation',)):<52} {act_text:<10} "
            f"{item['params']:>9,} params  [{_provider(item)}]"
        )
    click.echo(f"  total {h['total_params']:,} parameters")
    loss = h.get("loss") or {}
    click.echo(f"loss: {_config_text(loss.get('config', {}))}  [{_provider(loss)}]")
    regs = h.get("regularizers") or []
    click.echo(
        "regularizers: "
        + (", ".join(f"{_config_text(r['config'])} [{_provider(r)}]" for r in regs) or "none")
    )
    if training := meta.get("training"):
        click.echo(
            f"training: {training.get('epochs')} epochs, batch {training.get('batch_size')}, "
            f"lr {training.get('lr')}, {_config_text(training.get('optimizer', {}))}, "
            f"schedule {_config_text(training.get('schedule', {}))}, seed {training.get('seed')}, "
            f"shuffle {training.get('shuffle')}, {training.get('samples')} samples"
        )
    if isinstance(ckpt := h.get("checkpoint"), dict):
        epochs = (ckpt.get("settings") or {}).get("epochs")
        click.echo(f"checkpoint: {ckpt.get('epoch')} of {epochs} epochs done (train --resume)")
    if meta.get("recipe"):
        click.echo(f"preset: {meta['recipe']}")
    if data := meta.get("data"):
        limit = f", first {data['limit']} images" if data.get("limit") else ""
        click.echo(f"data: {data.get('dataset')}, normalize {data.get('normalize')}{limit}")
    if metrics := meta.get("metrics"):
        click.echo(
            f"metrics: train {percent(metrics.get('train_accuracy'))}, dev "
            f"{percent(metrics.get('dev_accuracy'))}, test {percent(metrics.get('test_accuracy'))}"
            f", {metrics.get('seconds', float('nan')):.1f} s"
        )


if __name__ == "__main__":
    # Run as `python -m deepnet.cli`: hand over to the imported module, which has every command.
    from deepnet.cli import main as _main

    _main()
else:
    # Last, because these commands reuse this module's helpers; each module attaches its
    # commands to main itself, so that importing it first works too.
    import deepnet.postal_cli
    import deepnet.sweep_cli  # noqa: F401
