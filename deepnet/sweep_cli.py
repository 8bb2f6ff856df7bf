"""``deepnet sweep``: choose a model on the dev set, trials on local processes or a Dask cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from deepnet._extras import require
from deepnet.cli import (
    Failure,
    UserError,
    _Command,
    data_options,
    dtype_option,
    main,
    parse_assignment,
    percent,
    registry,
)
from deepnet.sweeps import (
    METRICS,
    SEARCHES,
    IdxData,
    Space,
    Trial,
    describe_params,
    flatten,
    make_space,
    read_space_file,
)
from deepnet.sweeps import (
    sweep as run_sweep,
)


class Table:
    """The live table: a header, then a row as each trial finishes (in finishing order)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.count = self.total = 0
        self.title = metric.replace("_accuracy", " acc").replace("_", " ")
        self.width = max(7, len(self.title))

    def start(self, trials: list[Trial], done: int) -> None:
        self.total, self.count = len(trials), done
        click.echo(
            f"{len(trials)} trials, {done} already finished (skipped), {len(trials) - done} to run"
        )
        click.echo(
            f"{'done':>7}  {'#':>3}  {'trial':<12}  {self.title:>{self.width}}  {'time':>6}  config"
        )

    def row(self, record: dict[str, Any]) -> None:
        self.count += 1
        value = record.get(self.metric)
        if record["status"] != "ok":
            score = record["status"]
        else:
            score = percent(value) if self.metric.endswith("accuracy") else f"{value:.4f}"
        wall = record.get("wall_seconds")
        took = f"{wall:.1f}s" if wall is not None else "-"
        line = (
            f"{self.count:>3}/{self.total:<3}  {record['index']:>3}  {record['trial']:<12}  "
            f"{score:>{self.width}}  {took:>6}  {describe_params(record['params']) or '(base)'}"
        )
        if record.get("error"):
            line += f"  [{record['error'].splitlines()[0][:100]}]"
        click.echo(line)


@click.command("sweep", cls=_Command)  # deepnet errors as one line, like every command
@click.argument("space_file", metavar="[SPACE.toml]", required=False)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value to try for a field (repeat to add more; a JSON list adds several), "
    "e.g. --param lr=0.1 --param lr=0.03 --param optimizer.momentum=[0,0.9].",
)
@click.option(
    "--set",
    "fixed",
    multiple=True,
    metavar="NAME=VALUE",
    help="Fix a field of the base recipe, e.g. --set epochs=3; repeatable.",
)
@click.option(
    "--preset", metavar="NAME", help="Base recipe (`deepnet list recipe`) [default: default]."
)
@click.option("--search", type=click.Choice(SEARCHES), help="Grid or seeded random search.")
@click.option("--trials", type=click.IntRange(min=1), metavar="N", help="At most N trials.")
@click.option(
    "--max-time",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Wall-time budget: trials not finished by then are cancelled.",
)
@click.option("--search-seed", type=int, metavar="N", help="Seed of random search.")
@click.option("--metric", type=click.Choice(list(METRICS)), help="What picks the best.")
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    help="Run trials on this Dask scheduler's workers (default: local worker processes).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    metavar="N",
    help="Local worker processes [default: one per core].",
)
@dtype_option
@data_options
@click.option(
    "--out",
    metavar="DIR",
    help="Results directory [default: SPACE-results]; the same DIR resumes a sweep.",
)
@click.option(
    "--model", "model_path", metavar="MODEL", help="Save the best model here [DIR/best.npz]."
)
@click.option(
    "--plot", metavar="FILE.png", help="The metric against each parameter (deepnet[plot])."
)
def sweep(
    space_file: str | None,
    params: tuple[str, ...],
    fixed: tuple[str, ...],
    preset: str | None,
    search: str | None,
    trials: int | None,
    max_time: float | None,
    search_seed: int | None,
    metric: str | None,
    scheduler: str | None,
    workers: int | None,
    dtype: str,
    dataset: str | None,
    data_dir: str | None,
    limit: int | None,
    out: str | None,
    model_path: str | None,
    plot: str | None,
) -> None:
    """Train every trial of a search space, pick the best on the dev set, test it once.

    \b
    SPACE.toml has up to three tables:
      [sweep]  preset, search = "grid" | "random", trials, max_time, seed, metric
      [base]   fields fixed for every trial (epochs = 3, ...)
      [space]  a list of values per field, e.g. lr = [0.03, 0.1],
               optimizer.momentum = [0.5, 0.9], or for random search
               a range: lr = {log_uniform = [0.001, 0.3]}
    Fields are those of a recipe: layers, loss, optimizer, lr, schedule, init, epochs,
    batch_size, normalize, dev_fraction, shuffle, seed, regularizers.

    Results go to DIR/trials.jsonl as each trial ends; running the same command again skips
    the finished ones. Then DIR/results.csv, DIR/results.json and the best model.
    """
    registry()  # plugin options and warnings, before any work
    if not space_file and not params:
        raise UserError("give a SPACE.toml, or --param NAME=VALUE options, or both")
    if dataset and data_dir:
        raise UserError("give --dataset or --data-dir, not both")
    if scheduler and workers:  # the scheduler's own workers run the trials
        raise UserError("give --scheduler or --workers, not both")
    if plot:
        require("matplotlib")  # before the work, not after
    require("distributed")
    options = {"preset": preset, "search": search, "trials": trials, "max_time": max_time,
               "seed": search_seed, "metric": metric}  # fmt: skip
    space = _space(space_file, params, fixed, options)
    out_dir = Path(out or f"{Path(space_file).stem if space_file else 'sweep'}-results")
    table = Table(space.metric)
    where = scheduler or f"{workers or 'one per core'} local worker processes"
    click.echo(
        f"sweep {space.source}: {space.search} search over {', '.join(space.params) or 'nothing'}; "
        f"trials on {where}"
    )
    started = time.perf_counter()
    try:
        result = run_sweep(
            space,
            IdxData(data_dir, limit),
            out=out_dir,
            model_path=model_path,
            scheduler=scheduler,
            workers=workers,
            dtype=dtype,
            on_start=table.start,
            on_result=table.row,
        )
    except KeyboardInterrupt:
        raise Failure(
            f"interrupted; finished trials are in {out_dir / 'trials.jsonl'}: "
            "run the same command to resume"
        ) from None
    click.echo(f"sweep time: {time.perf_counter() - started:.1f} s")
    if result.stopped:
        click.echo(f"stopped: {result.stopped}; run the same command to go on")
    for kind in ("csv", "json"):
        click.echo(f"results: {result.files[kind]}")
    if plot:
        from deepnet.plotting import sweep_picture

        picture = sweep_picture(result.results, list(space.params), plot, space.metric)
        click.echo(f"picture: {picture}")
    if result.best is None:
        raise Failure("no trial finished successfully; see the errors above")
    best = result.best
    config = describe_params(best["params"]) or "(base)"
    click.echo(
        f"best: trial {best['index']} ({best['trial']}) {config}, "
        f"dev accuracy {percent(best.get('dev_accuracy'))}"
    )
    if "model" in result.files:
        click.echo(f"saved model: {result.files['model']}")
    click.echo(f"test accuracy (best trial only): {percent(result.test_accuracy)}")


def _space(
    space_file: str | None, params: tuple[str, ...], fixed: tuple[str, ...], options: dict
) -> Space:
    """The file's space with --param values added, --set fields fixed, options replaced."""
    spec: dict[str, Any] = {}
    if space_file:
        if not Path(space_file).is_file():
            raise UserError(f"{space_file}: no such sweep definition")
        spec = read_space_file(space_file)
    sweep_options = {**spec.get("sweep", {}), **{k: v for k, v in options.items() if v is not None}}
    base = dict(spec.get("base", {}))
    values = flatten(spec.get("space", {}))
    source = space_file or "command line"
    for name, value in map(parse_assignment, params):
        known = values.get(name, [])
        if isinstance(known, dict):
            raise UserError(f"--param {name}: {source} gives {name} a range, not values to add to")
        values[name] = [*(known if isinstance(known, list) else [known])]
        values[name] += value if isinstance(value, list) else [value]
    base.update(map(parse_assignment, fixed))
    return make_space({"sweep": sweep_options, "base": base, "space": values}, source)


main.add_command(sweep)
