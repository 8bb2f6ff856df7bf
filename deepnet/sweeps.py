"""Model selection on the dev set: many trials of a recipe, run on Dask, the best tested once.

A sweep is a base :class:`~deepnet.recipes.Recipe` and a search space of overrides of its
fields (:mod:`deepnet.sweep_space`). Each trial is the base recipe with one set of overrides;
it trains on the training data, holding out the recipe's dev fraction, and is scored on that
dev set. Only the best trial is evaluated on the test set, once, at the end.

Trials run as Dask tasks: on a ``LocalCluster`` of processes by default, or on any
``distributed.Client``. The training images are scattered to every worker once. Dask does the
scheduling, and reschedules a trial whose worker died. Each finished trial is appended to
``trials.jsonl`` (flushed and fsynced); a trial's identity is a hash of its recipe and data, so
running the same sweep again skips what already finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from deepnet.core.data import (
    Dataset,
    read_idx_split,
)
from deepnet.core.errors import DeepnetError, DivergenceError
from deepnet.core.model import Model
from deepnet.recipes import train_recipe
from deepnet.sweep_space import (
    METRICS,
    SEARCHES,
    Distribution,
    Space,
    Trial,
    describe_params,
    flatten,
    load_space,
    make_space,
    make_trials,
    read_space_file,
    trial_id,
)

__all__ = [
    "METRICS",
    "SEARCHES",
    "ArrayData",
    "Distribution",
    "IdxData",
    "Space",
    "SweepResult",
    "Trial",
    "describe_params",
    "flatten",
    "load_space",
    "make_space",
    "make_trials",
    "read_space_file",
    "run_trial",
    "sweep",
    "trial_id",
]

FINISHED = ("ok", "failed", "diverged")  # "lost" (worker died too often) runs again on resume
LOG = "trials.jsonl"
BEST_DEV = "best-dev.npz"  # rewritten at each new best on dev, so a killed sweep keeps it


# -- data ----------------------------------------------------------------------------------


@attrs.frozen
class IdxData:
    """Raw pixels of the bundled MNIST (``directory=None``) or an IDX directory.

    ``train()`` and ``test()`` read only their own files, so that a sweep reads the test
    files once, after choosing its model. ``limit`` keeps the first N images of each.
    """

    directory: str | None = None
    limit: int | None = None
    raw = True  # pixels 0..255, normalized per trial as its recipe says

    def _read(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        from deepnet.datasets import MNIST_DIR

        x, y = read_idx_split(self.directory or MNIST_DIR, split)
        x = x.reshape(len(x), -1)[: self.limit]
        return x, y[: self.limit]

    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """Training images (N, H*W) uint8 and labels (N,) int64."""
        return self._read("train")

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """Test images (N, H*W) uint8 and labels (N,) int64."""
        return self._read("test")

    def describe(self) -> dict[str, Any]:
        name = Path(self.directory).resolve().name if self.directory else "mnist"
        data_dir = str(Path(self.directory).resolve()) if self.directory else None
        return {"dataset": name, "data_dir": data_dir, "limit": self.limit}


@attrs.frozen(eq=False)
class ArrayData:
    """An in-memory :class:`Dataset`; raw when its normalization is "none"."""

    dataset: Dataset

    @property
    def raw(self) -> bool:
        return self.dataset.normalization == "none"

    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.dataset.x_train, self.dataset.y_train

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.dataset.x_test, self.dataset.y_test

    def describe(self) -> dict[str, Any]:
        d = self.dataset
        digest = hashlib.sha256()
        for a in (d.x_train, d.y_train):
            digest.update(np.ascontiguousarray(a).tobytes())
        return {"dataset": d.name, "normalization": d.normalization, "sha256": digest.hexdigest()}


def as_data(data: Any) -> IdxData | ArrayData:
    """None (bundled MNIST), an IDX directory, a Dataset, or an IdxData/ArrayData as is."""
    if data is None:
        return IdxData()
    if isinstance(data, str | Path):
        return IdxData(str(data))
    if isinstance(data, Dataset):
        return ArrayData(data)
    if isinstance(data, IdxData | ArrayData):
        return data
    raise DeepnetError(
        f"sweep data must be a Dataset or an IDX directory, got {type(data).__name__}"
    )


def prepare(x: np.ndarray, raw: bool, dtype: str) -> np.ndarray:
    """Inputs for a model: raw pixels stay as they are (a recipe's model normalizes them in its
    own first layer, with statistics of its training part), normalized arrays are cast to
    ``dtype``."""
    return x if raw else np.asarray(x, dtype=dtype)


# -- one trial, on a worker ------------------------------------------------------------------


def _model_bytes(model: Model) -> bytes:
    # The model file itself travels back: no pickled objects, and the client saves it as is.
    with tempfile.TemporaryDirectory() as tmp:
        return model.save(Path(tmp) / "trial.npz").read_bytes()


def run_trial(trial: Trial, x: np.ndarray, y: np.ndarray, raw: bool, dtype: str) -> dict[str, Any]:
    """Train one trial and score it on its dev set; a failure is a result, not an exception.

    Returns ``status`` (ok, diverged, failed), the summary of :func:`train_recipe`, ``error``,
    the ``worker`` it ran on, ``wall_seconds`` and, when ok, the model file's bytes (``model``).
    """
    start = time.perf_counter()
    record: dict[str, Any] = {"worker": _worker_address(), "error": None}
    try:
        model, summary = _train(trial, x, y, raw, dtype)
        record.update(summary, status="ok", model=_model_bytes(model))
    except DivergenceError as exc:
        record.update(status="diverged", error=str(exc))
    except Exception as exc:  # whatever one trial raises, the sweep goes on and records it
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    record["wall_seconds"] = time.perf_counter() - start
    return record


def _train(
    trial: Trial, x: np.ndarray, y: np.ndarray, raw: bool, dtype: str
) -> tuple[Model, dict[str, Any]]:
    recipe = trial.recipe
    model, summary = train_recipe(recipe, prepare(x, raw, dtype), y, dtype, raw_pixels=raw)
    model.meta["sweep"] = {"trial": trial.id, "params": trial.params}
    return model, summary


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # run outside a Dask worker
        return None


# -- the results log -------------------------------------------------------------------------


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """Finished trials by id; a torn last line (the sweep was killed mid-write) is cut off."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as f:  # so the next append starts on a line of its own
            f.truncate(keep)
    records: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(data[:keep].splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DeepnetError(f"{path}:{n}: not a JSON line; is this a sweep's {LOG}?") from None
        if record.get("status") in FINISHED:
            records[record["trial"]] = record
    return records


def append_log(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line and make it durable before the next trial is reported."""
    with path.open("a") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- the sweep -------------------------------------------------------------------------------


@attrs.define
class SweepResult:
    """``results``: one record per trial in trial order (the table); ``best``: the best
    record; ``model``: the best model, evaluated once on the test set (``test_accuracy``)."""

    results: list[dict[str, Any]]
    best: dict[str, Any] | None
    model: Model | None
    test_accuracy: float | None
    metric: str
    files: dict[str, Path] = attrs.Factory(dict)
    stopped: str | None = None  # why trials were left unrun (the time budget), if any


def better(metric: str, a: Mapping[str, Any], b: Mapping[str, Any] | None) -> bool:
    """Whether record ``a`` beats ``b`` on ``metric``; NaN never wins, and of equal scores the
    first trial does, so the choice does not depend on the order in which trials finished."""
    value = a.get(metric)
    if a.get("status") != "ok" or value is None or not math.isfinite(value):
        return False
    if b is None:
        return True
    sign = METRICS[metric]
    return (sign * value, -a["index"]) > (sign * b[metric], -b["index"])


def _open_client(client: Any, scheduler: str | None, workers: int | None) -> tuple[Any, list[Any]]:
    """The client to use and what to close afterwards (only what was opened here)."""
    from deepnet._extras import require

    distributed = require("distributed")
    if client is not None:
        return client, []
    if scheduler:
        try:
            client = distributed.Client(scheduler)  # waits distributed.comm.timeouts.connect
        except (OSError, ValueError) as exc:  # ValueError: not an address (no port, ...)
            raise DeepnetError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}; is `dask scheduler` "
                "running there, and are its workers started?"
            ) from None
        return client, [client]
    cluster = distributed.LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,  # numpy work holds the GIL; parallelism is across processes
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # loopback, any free port: never clash
    )
    client = distributed.Client(cluster)
    return client, [client, cluster]


def sweep(
    space: Space | str | Path | Mapping[str, Any],
    data: Any = None,
    client: Any = None,
    *,
    out: str | Path | None = None,
    model_path: str | Path | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    dtype: str = "float32",
    on_start: Callable[[list[Trial], int], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Train every trial of ``space`` on ``data``'s training set, keep the best on the dev set,
    evaluate only that one on the test set, once.

    ``space``: a :class:`Space`, a TOML file, or its parsed tables. ``data``: None (bundled
    MNIST), an IDX directory, or a :class:`Dataset`. Trials run on ``client`` (a
    ``distributed.Client``), else on the scheduler at ``scheduler``, else on a LocalCluster of
    ``workers`` processes. With ``out``, results are appended to ``out/trials.jsonl`` as each
    trial ends, trials already there are skipped, and results.csv/json and the best model
    (``model_path``, default ``out/best.npz``) are written at the end. ``on_start(trials,
    n_done)`` and ``on_result(record)`` report progress.
    """
    if not isinstance(space, Space):
        space = load_space(space) if isinstance(space, str | Path) else make_space(space)
    source = as_data(data)
    trials = make_trials(space, json.dumps(source.describe(), sort_keys=True), dtype)
    out_dir = Path(out) if out is not None else None
    done = _resume(out_dir, trials)
    pending = [t for t in trials if t.id not in done]
    if on_start:
        on_start(trials, len(done))

    best = None
    for record in done.values():
        if better(space.metric, record, best):
            best = record
    best_bytes: bytes | None = None
    x_train, y_train = source.train()
    stopped = None
    started = time.monotonic()
    if pending:
        with _submitted(
            client, scheduler, workers, pending, x_train, y_train, source.raw, dtype
        ) as trial_of:
            best, best_bytes, stopped = _collect(
                trial_of, space, started, best, out_dir, done, on_result
            )

    results = [done[t.id] for t in trials if t.id in done]
    files = write_results(out_dir, results, space) if out_dir is not None else {}
    result = SweepResult(results, best, None, None, space.metric, files, stopped)
    if best is None:
        return result
    trial = next(t for t in trials if t.id == best["trial"])
    candidate = out_dir / BEST_DEV if out_dir is not None else None
    path = Path(model_path) if model_path else (out_dir / "best.npz" if out_dir else None)
    result.model, result.test_accuracy = _test_once(
        trial, best, best_bytes, candidate, path, source, x_train, y_train, dtype
    )
    if path is not None:
        result.files["model"] = path
    return result


def _resume(out_dir: Path | None, trials: list[Trial]) -> dict[str, dict[str, Any]]:
    """The records of ``trials`` that ``out_dir``'s log has as finished, by trial id; makes
    ``out_dir``."""
    if out_dir is None:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    logged = read_log(out_dir / LOG)
    # A record takes its place and params in this run's trials: values may have been added,
    # and the same recipe may have been reached through other fields.
    return {
        t.id: {**logged[t.id], "index": t.index, "params": t.params}
        for t in trials
        if t.id in logged
    }


@contextlib.contextmanager
def _submitted(
    client: Any,
    scheduler: str | None,
    workers: int | None,
    pending: list[Trial],
    x: np.ndarray,
    y: np.ndarray,
    raw: bool,
    dtype: str,
) -> Iterator[dict[Any, Trial]]:
    """``pending`` submitted to Dask (see :func:`_open_client`), as {future: trial}."""
    client, to_close = _open_client(client, scheduler, workers)
    futures: list[Any] = []
    try:
        # Once to every worker; each trial then refers to these, not to the arrays.
        x_f = client.scatter(x, broadcast=True)
        y_f = client.scatter(y, broadcast=True)
        trial_of = {}
        for t in pending:
            key = f"deepnet-trial-{t.index}-{t.id}-{uuid.uuid4().hex[:6]}"  # unique per run
            trial_of[client.submit(run_trial, t, x_f, y_f, raw, dtype, key=key)] = t
        futures = list(trial_of)
        yield trial_of
    finally:
        # Trials left by the time budget or an error must not go on using the workers,
        # which may be the caller's own.
        for future in futures:
            future.cancel()
        for closable in to_close:
            closable.close()


def _collect(
    trial_of: dict[Any, Trial],
    space: Space,
    started: float,
    best: dict[str, Any] | None,
    out_dir: Path | None,
    done: dict[str, dict[str, Any]],
    on_result: Callable[[dict[str, Any]], None] | None,
) -> tuple[dict[str, Any] | None, bytes | None, str | None]:
    """Record each trial in ``done`` (and the log) as it finishes, until all did or the time
    budget ran out; returns the best record, its model file's bytes if it ran now, and why
    trials were left unrun (None if none were)."""
    from distributed import as_completed

    log = out_dir / LOG if out_dir is not None else None
    candidate = out_dir / BEST_DEV if out_dir is not None else None
    best_bytes = None
    # The budget counts from the sweep's start: starting workers and sending data too.
    timeout = space.max_time and max(space.max_time - (time.monotonic() - started), 0.001)
    try:
        for future in as_completed(list(trial_of), timeout=timeout):
            t = trial_of[future]
            record = _record(t, future)
            model_bytes = record.pop("model", None)
            if better(space.metric, record, best):
                best, best_bytes = record, model_bytes
                if candidate is not None:
                    _write_bytes(candidate, model_bytes)
            if log is not None and record["status"] in FINISHED:
                append_log(log, record)
            done[t.id] = record
            if on_result:
                on_result(record)
    except TimeoutError:
        return best, best_bytes, f"time budget of {space.max_time:g} s reached"
    return best, best_bytes, None


def _record(trial: Trial, future: Any) -> dict[str, Any]:
    base = {"trial": trial.id, "index": trial.index, "params": trial.params}
    try:
        outcome = future.result()
    except Exception as exc:  # the task itself failed: its workers died (KilledWorker)
        outcome = {"status": "lost", "error": f"{type(exc).__name__}: {exc}"}
    return {**base, **outcome, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _best_model(
    trial: Trial,
    best_bytes: bytes | None,
    candidate: Path | None,
    source: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    dtype: str,
) -> Model:
    """The best trial's model: from this run, from the previous run's file, or trained again."""
    from deepnet.core.serialization import load_model

    if best_bytes is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "best.npz"
            path.write_bytes(best_bytes)
            return load_model(path)
    if candidate is not None and candidate.exists():
        model = load_model(candidate)
        if model.meta.get("sweep", {}).get("trial") == trial.id:
            return model
    # The file is gone: the same recipe and seed give the same weights, so train it again.
    return _train(trial, x_train, y_train, source.raw, dtype)[0]


def _test_once(
    trial: Trial,
    best: Mapping[str, Any],
    best_bytes: bytes | None,
    candidate: Path | None,
    path: Path | None,
    source: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    dtype: str,
) -> tuple[Model, float]:
    """Evaluate the chosen model on the test set and save it; if a previous run of the same
    sweep already did so for the same trial, return that model instead of looking again."""
    from deepnet.core.serialization import load_model

    if path is not None and path.exists():
        try:
            saved = load_model(path)
        except DeepnetError:
            saved = None
        tested = saved.meta.get("sweep", {}) if saved is not None else {}
        if tested.get("trial") == trial.id and "test_accuracy" in tested:
            return saved, tested["test_accuracy"]
    model = _best_model(trial, best_bytes, candidate, source, x_train, y_train, dtype)
    x_test, y_test = source.test()  # the only read of the test set
    x_test = prepare(x_test, source.raw, dtype)
    test_accuracy = model.evaluate(x_test, y_test)["accuracy"]
    model.meta["sweep"] = {
        "trial": trial.id,
        "params": trial.params,
        "dev_accuracy": best.get("dev_accuracy"),
        "test_accuracy": test_accuracy,
    }
    model.meta["metrics"] = {**model.meta.get("metrics", {}), "test_accuracy": test_accuracy}
    normalize = trial.recipe.normalize if source.raw else source.dataset.normalization
    model.meta["data"] = {**source.describe(), "normalize": normalize}
    if path is not None:
        model.save(path)
    return model, test_accuracy


# -- results files ---------------------------------------------------------------------------

COLUMNS = (
    "index",
    "trial",
    "status",
    "dev_accuracy",
    "dev_loss",
    "train_accuracy",
    "epochs",
    "seconds",
    "wall_seconds",
    "worker",
    "error",
)


def write_results(out_dir: Path, results: list[dict[str, Any]], space: Space) -> dict[str, Path]:
    """results.json (every record) and results.csv (one row per trial, a column per param),
    each replaced atomically."""
    import csv
    import io

    json_path = out_dir / "results.json"
    doc = {
        "metric": space.metric,
        "search": space.search,
        "params": list(space.params),
        "trials": results,
    }
    _write_bytes(json_path, (json.dumps(doc, indent=2, allow_nan=True) + "\n").encode())
    names = list(space.params)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow([*COLUMNS[:3], *names, *COLUMNS[3:]])
    for r in results:
        params = [_cell(r["params"].get(n)) for n in names]
        writer.writerow(
            [_cell(r.get(c)) for c in COLUMNS[:3]] + params + [_cell(r.get(c)) for c in COLUMNS[3:]]
        )
    csv_path = out_dir / "results.csv"
    _write_bytes(csv_path, table.getvalue().encode())
    return {"json": json_path, "csv": csv_path}


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else value
