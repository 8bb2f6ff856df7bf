"""Sweeps: the search space, and real sweeps on a Dask LocalCluster (2 workers, loopback)."""

from __future__ import annotations

import json
import os
import signal

import click
import distributed  # the sweep extra, which make test installs: not skipped if missing
import numpy as np
import pytest
from click.testing import CliRunner

import deepnet
from deepnet.cli import main
from deepnet.core.data import Dataset
from deepnet.core.errors import DeepnetError
from deepnet.recipes import RECIPES
from deepnet.sweeps import (
    LOG,
    Distribution,
    IdxData,
    better,
    load_space,
    make_space,
    make_trials,
    read_log,
    trial_id,
)

LIMIT = 1500  # training and test images: enough to learn something in one epoch


# -- the space, no cluster -----------------------------------------------------------------


def test_grid_is_the_product_of_the_lists_with_dotted_keys_and_base_fields(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(
        "[sweep]\npreset = 'seed-a'\n"
        "[base]\nepochs = 2\noptimizer = {momentum = 0.5}\n"
        "[space]\nlr = [0.01, 0.1]\noptimizer.nesterov = [false, true]\n"
        "layers = ['16:tanh,10:sigmoid']\ndev_fraction = [0.1]\n"
    )
    space = load_space(path)
    trials = make_trials(space)
    assert len(trials) == 4
    assert [t.params["lr"] for t in trials] == [0.01, 0.01, 0.1, 0.1]
    first = trials[1].recipe
    assert first.epochs == 2 and first.loss == RECIPES["seed-a"].loss
    assert first.optimizer == {"name": "sgd", "momentum": 0.5, "nesterov": True}
    assert first.layers == ("16:tanh", "10:sigmoid")
    assert len({t.id for t in trials}) == 4


def test_random_search_is_seeded_and_draws_inside_its_ranges():
    spec = {
        "sweep": {"search": "random", "trials": 12, "seed": 3},
        "space": {
            "lr": {"log_uniform": [1e-3, 1e-1]},
            "epochs": {"randint": [1, 3]},
            "layers": ["32:relu,10:softmax", "64:relu,10:softmax"],
        },
    }
    trials = make_trials(make_space(spec))
    again = make_trials(make_space(spec))
    assert [t.params for t in trials] == [t.params for t in again]
    lrs = np.array([t.params["lr"] for t in trials])
    assert np.all((lrs >= 1e-3) & (lrs <= 1e-1)) and lrs.min() < 1e-2 < lrs.max()
    assert {t.recipe.epochs for t in trials} <= {1, 2, 3}
    other = make_trials(make_space({**spec, "sweep": {**spec["sweep"], "seed": 4}}))
    assert [t.params for t in other] != [t.params for t in trials]


def test_a_distribution_samples_its_kind():
    rng = np.random.default_rng(0)
    draws = [Distribution("randint", 2, 4).sample(rng) for _ in range(50)]
    assert set(draws) == {2, 3, 4} and all(isinstance(d, int) for d in draws)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"space": {"lrr": [0.1]}}, "unknown field 'lrr'. Did you mean 'lr'?"),
        ({"space": {"lr": {"uniform": [0.1, 0.2]}}}, "lr is a range, which a grid cannot"),
        ({"sweep": {"search": "random"}, "space": {"lr": [0.1]}}, "random search needs a budget"),
        ({"space": {"layers": ["x:relu,10"]}}, "malformed layer spec"),
        ({"space": {"optimizer": ["adamm"]}}, "trial optimizer=adamm: unknown optimizer 'adamm'"),
        ({"space": {"epochs": [1.5]}}, "epochs must be an integer"),
        ({"space": {"lr.x": [1]}}, "only optimizer and schedule take a dotted key"),
        ({"space": {"lr": {"log_uniform": [0, 1]}}}, "low > 0"),
        ({"space": {"epochs": {"randint": [1.5, 3]}}}, "both integers"),
        ({"base": {"dev_fraction": 0.0}}, "dev_fraction must be > 0"),
        ({"sweep": {"metrc": "x"}}, "unknown option 'metrc'. Did you mean 'metric'?"),
        ({"sweep": {"metric": "test_accuracy"}}, "metric must be one of dev_accuracy"),
        ({"space": [1]}, "space must be a table [space], got [1]"),
        ({"sweep": 3}, "sweep must be a table [sweep], got 3"),
    ],
)
def test_space_mistakes_are_one_line_errors(spec, message):
    with pytest.raises(DeepnetError) as info:
        make_trials(make_space(spec, "s.toml"))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("s.toml")


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[space\nlr = [0.1]\n")
    with pytest.raises(DeepnetError, match=r"bad.toml: not valid TOML"):
        load_space(path)


def test_trial_id_depends_on_recipe_data_and_dtype_only():
    recipe = RECIPES["default"]
    same = trial_id(recipe, "mnist", "float32")
    assert same == trial_id(RECIPES["default"], "mnist", "float32")
    assert same != trial_id(recipe, "mnist, first 1000", "float32")
    assert same != trial_id(recipe, "mnist", "float64")
    import attrs

    assert same != trial_id(attrs.evolve(recipe, lr=0.2), "mnist", "float32")
    assert same == trial_id(attrs.evolve(recipe, name="x", description="y"), "mnist", "float32")


def test_best_is_highest_accuracy_or_lowest_loss_and_the_first_of_equals():
    a = {"status": "ok", "index": 0, "dev_accuracy": 0.9, "dev_loss": 0.3}
    b = {"status": "ok", "index": 1, "dev_accuracy": 0.9, "dev_loss": 0.2}
    assert better("dev_accuracy", a, b) and not better("dev_accuracy", b, a)
    assert better("dev_loss", b, a) and not better("dev_loss", a, b)
    assert better("dev_accuracy", a, None)
    assert not better("dev_accuracy", {**a, "dev_accuracy": float("nan")}, None)
    assert not better("dev_accuracy", {"status": "failed", "index": 2}, None)


def test_read_log_cuts_a_torn_last_line(tmp_path):
    log = tmp_path / LOG
    log.write_text('{"trial": "a", "status": "ok"}\n{"trial": "b", "status": "lost"}\n{"tri')
    assert list(read_log(log)) == ["a"]  # a lost trial (its workers died) runs again
    assert log.read_text().endswith('"lost"}\n')


def test_the_sweep_reads_only_training_files():
    x, y = IdxData(limit=100).train()
    assert x.shape == (100, 784) and x.dtype == np.uint8 and y.dtype == np.int64


def test_finished_trials_take_their_index_and_params_in_the_current_space(tmp_path):
    data = IdxData(limit=300)
    base = {"epochs": 1, "layers": "16:relu,10:softmax"}
    space = make_space({"base": base, "space": {"lr": [0.05, 0.1]}})
    key = json.dumps(data.describe(), sort_keys=True)
    trials = make_trials(space, key)
    # Logged by an earlier run whose space listed the values the other way round.
    with (tmp_path / LOG).open("w") as f:
        for t, old_index, acc in zip(trials, (1, 0), (0.6, 0.6), strict=True):
            record = {"trial": t.id, "index": old_index, "params": {}}  # lr was in [base]
            f.write(json.dumps({**record, "status": "ok", "dev_accuracy": acc}) + "\n")
    result = deepnet.sweep(space, data, out=tmp_path)  # nothing to run: no cluster started
    assert [r["index"] for r in result.results] == [0, 1]
    assert [r["params"] for r in result.results] == [{"lr": 0.05}, {"lr": 0.1}]
    assert result.best["trial"] == trials[0].id  # of equal scores, the first trial


# -- on a real cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    """Two worker processes on loopback, shut down after this module's tests."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def test_reads(monkeypatch):
    """Counts reads of the test set, the thing a sweep must look at only once."""
    reads = []
    original = IdxData.test

    def counted(self):
        reads.append(self)
        return original(self)

    monkeypatch.setattr(IdxData, "test", counted)
    return reads


SMALL = {
    # No distortions: one epoch on a few hundred images must learn something.
    "base": {"epochs": 1, "layers": "32:relu,10:softmax", "augment": []},
    # 5:softmax cannot hold labels 0..9: those trials raise while training.
    "space": {"layers": ["32:relu,10:softmax", "5:softmax"], "lr": [0.02, 0.1]},
}


def test_a_sweep_records_failures_picks_on_dev_and_tests_once(client, tmp_path, test_reads):
    seen = []
    result = deepnet.sweep(SMALL, IdxData(limit=LIMIT), client, out=tmp_path, on_result=seen.append)
    assert len(result.results) == len(seen) == 4
    failed = [r for r in result.results if r["status"] == "failed"]
    assert [r["params"]["layers"] for r in failed] == ["5:softmax"] * 2
    assert all("labels must be in 0..4" in r["error"] for r in failed)
    ok = [r for r in result.results if r["status"] == "ok"]
    assert result.best == max(ok, key=lambda r: r["dev_accuracy"])
    assert result.best["dev_accuracy"] > 0.5
    assert len(test_reads) == 1
    saved = deepnet.load(tmp_path / "best.npz")
    assert saved.meta["sweep"]["trial"] == result.best["trial"]
    assert saved.meta["sweep"]["test_accuracy"] == result.test_accuracy > 0.5
    lines = (tmp_path / LOG).read_text().splitlines()
    assert sorted(json.loads(x)["trial"] for x in lines) == sorted(r["trial"] for r in seen)
    csv_rows = (tmp_path / "results.csv").read_text().splitlines()
    assert (
        csv_rows[0].startswith("index,trial,status,layers,lr,dev_accuracy") and len(csv_rows) == 5
    )
    assert len(json.loads((tmp_path / "results.json").read_text())["trials"]) == 4
    # Both workers trained: the data had been sent to each.
    assert len({r["worker"] for r in result.results}) == 2

    # The same sweep again: nothing runs, and the test set is not looked at a second time.
    again = deepnet.sweep(SMALL, IdxData(limit=LIMIT), client, out=tmp_path, on_result=seen.append)
    assert len(seen) == 4 and len(test_reads) == 1
    assert again.test_accuracy == result.test_accuracy and again.best == result.best


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(
    client, tmp_path, test_reads
):
    space = {
        "base": {"epochs": 1},
        "space": {"layers": ["16:relu,10:softmax"], "lr": [0.02, 0.05, 0.1, 0.2]},
    }
    first = []

    def interrupt(record):
        first.append(record)
        if len(first) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deepnet.sweep(space, IdxData(limit=LIMIT), client, out=tmp_path, on_result=interrupt)
    assert len(read_log(tmp_path / LOG)) == 2 and test_reads == []
    assert not (tmp_path / "best.npz").exists()

    second = []
    result = deepnet.sweep(
        space, IdxData(limit=LIMIT), client, out=tmp_path, on_result=second.append
    )
    assert {r["trial"] for r in first}.isdisjoint(r["trial"] for r in second)
    assert len(result.results) == 4 and all(r["status"] == "ok" for r in result.results)
    # The finished trials' records are the ones written before the interruption.
    by_id = {r["trial"]: r for r in result.results}
    assert all(by_id[r["trial"]]["finished"] == r["finished"] for r in first)
    assert len(test_reads) == 1


def test_a_trial_whose_worker_is_killed_runs_again_elsewhere(client, tmp_path):
    space = {
        "base": {"epochs": 3, "layers": "128:relu,10:softmax"},
        "space": {"lr": [0.01, 0.02, 0.05, 0.1]},
    }
    killed: dict = {}

    def kill_a_busy_worker(record):
        if killed:
            return
        busy = {w: keys for w, keys in client.processing().items() if keys}
        # The worker that just finished has just started its next trial, so it is killed
        # mid-trial; the other one may be finishing a trial started at the same time as this.
        victim = record["worker"] if record["worker"] in busy else next(iter(busy), None)
        if victim is None:
            return
        keys = busy[victim]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        killed.update(victim=victim, keys=set(keys))

    result = deepnet.sweep(
        space, IdxData(limit=4000), client, out=tmp_path, on_result=kill_a_busy_worker
    )
    assert killed, "no worker was busy when any trial finished"
    assert len(result.results) == 4 and all(r["status"] == "ok" for r in result.results)
    rerun = [r for r in result.results if any(r["trial"] in k for k in killed["keys"])]
    assert rerun and all(r["worker"] != killed["victim"] for r in rerun)
    client.wait_for_workers(2, timeout=30)  # the nanny restarts it, for the next tests


def test_a_time_budget_stops_the_sweep_and_the_next_run_goes_on(client, tmp_path):
    # Trials of a few tenths of a second against a budget of 10 ms: none can finish in time,
    # however fast the machine.
    space = {"base": {"epochs": 2, "layers": "512:relu,10:softmax"}, "space": {"seed": [0, 1]}}
    data = IdxData(limit=3000)
    cut = deepnet.sweep({**space, "sweep": {"max_time": 0.01}}, data, client, out=tmp_path)
    assert cut.stopped == "time budget of 0.01 s reached"
    assert cut.results == [] and cut.model is None and not (tmp_path / "best.npz").exists()
    done = deepnet.sweep(space, data, client, out=tmp_path)
    assert done.stopped is None and len(done.results) == 2 and done.model is not None
    # Why none could finish in time: training alone took longer than the budget.
    assert min(r["seconds"] for r in done.results) > 0.01, [r["seconds"] for r in done.results]


def test_an_in_memory_dataset_sweeps_without_files(client):
    data = deepnet.load_mnist()
    subset = Dataset(
        data.x_train[:LIMIT],
        data.y_train[:LIMIT],
        data.x_test[:LIMIT],
        data.y_test[:LIMIT],
        name="mnist",
        normalization="scale",
    )
    result = deepnet.sweep(
        {"base": {"epochs": 1}, "space": {"layers": ["16:relu,10:softmax"], "seed": [0, 1]}},
        subset,
        client,
    )
    assert [r["status"] for r in result.results] == ["ok", "ok"]
    assert result.files == {} and result.model is not None
    assert result.test_accuracy == result.model.evaluate(subset.x_test, subset.y_test)["accuracy"]


def test_raw_float_pixels_are_normalized_by_the_model_like_uint8_ones(client):
    base = {"epochs": 1, "layers": "16:relu,10:softmax", "augment": []}
    space = {"base": base, "space": {"seed": [0]}}
    results = []
    for dtype in ("float32", "uint8"):  # pixels 0..255 either way
        data = deepnet.load_mnist(normalize="none", dtype=dtype)
        subset = Dataset(
            data.x_train[:LIMIT], data.y_train[:LIMIT], data.x_test[:LIMIT], data.y_test[:LIMIT],
            name="mnist", normalization="none",
        )  # fmt: skip
        results.append(deepnet.sweep(space, subset, client))
    floats, uint8 = results
    assert floats.model.layers[0].state["scale"][0] == np.float32(1 / 255)
    assert floats.test_accuracy == uint8.test_accuracy > 0.5  # chance is 0.1


def test_the_command_runs_against_a_scheduler_and_draws_the_picture(client, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(
        "[base]\nepochs = 1\nlayers = '16:relu,10:softmax'\n[space]\nlr = [0.02, 0.1]\n"
    )
    out, picture = tmp_path / "out", tmp_path / "sweep.png"
    args = [
        "sweep",
        str(space),
        "--param",
        "seed=[0,1]",
        "--limit",
        str(LIMIT),
        "--out",
        str(out),
        "--scheduler",
        client.scheduler.address,
        "--plot",
        str(picture),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "4 trials, 0 already finished (skipped), 4 to run" in result.output
    assert "lr=0.1 seed=1" in result.output
    assert result.output.splitlines()[-1].startswith("test accuracy (best trial only): ")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resumed = CliRunner().invoke(main, args)
    assert "4 trials, 4 already finished (skipped), 0 to run" in resumed.output
    assert resumed.output.splitlines()[-1] == result.output.splitlines()[-1]


def test_the_command_starts_its_own_local_workers(tmp_path):
    options = f"--set epochs=1 --limit 600 --workers 1 --out {tmp_path}"
    args = ["sweep", "--param", "layers=16:relu,10:softmax", *options.split()]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trials on 1 local worker processes" in result.output
    assert "1 trials, 0 already finished" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep"], "give a SPACE.toml, or --param"),
        (["sweep", "nowhere.toml"], "nowhere.toml: no such sweep definition"),
        (["sweep", "--param", "lrr=0.1"], "unknown field 'lrr'"),
        (["sweep", "--param", "lr=0.1", "--dataset", "mnist", "--data-dir", "x"], "not both"),
        (["sweep", "--param", "lr=0.1", "--scheduler", "tcp://h:1", "--workers", "2"], "not both"),
    ],
)
def test_command_mistakes_exit_2_on_one_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_param_values_add_to_the_files_values_even_a_single_one(tmp_path):
    from deepnet.sweep_cli import _space

    path = tmp_path / "space.toml"
    path.write_text("[space]\nlr = 0.05\nseed = [0, 1]\nepochs = {randint = [1, 3]}\n")
    space = _space(str(path), ("lr=0.1", "seed=2"), (), {"search": "random", "trials": 2})
    assert space.params["lr"] == [0.05, 0.1] and space.params["seed"] == [0, 1, 2]
    with pytest.raises(click.ClickException, match="gives epochs a range"):
        _space(str(path), ("epochs=2",), (), {})


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    import dask

    args = ["sweep", "--param", "lr=0.1", "--scheduler", "tcp://127.0.0.1:1", "--out", tmp_path]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # nothing on port 1
        result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith(
        "Error: cannot reach the Dask scheduler at tcp://127.0.0.1:1: Timed out"
    )


def test_a_malformed_scheduler_address_is_one_line(tmp_path):
    args = ["sweep", "--param", "lr=0.1", "--scheduler", "127.0.0.1", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].startswith(
        "Error: cannot reach the Dask scheduler at 127.0.0.1: missing port number"
    )


def test_the_sweep_command_module_imports_on_its_own():
    import subprocess
    import sys

    code = (
        "from deepnet.sweep_cli import sweep; from deepnet.cli import main; "
        "print(main.commands['sweep'] is sweep)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
