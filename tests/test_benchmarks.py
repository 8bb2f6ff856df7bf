"""Smoke test of benchmarks/run.py: every implementation trains on a small subset, no timing."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def small(bench):
    return bench.load(600)


def test_deepnet_and_the_numpy_reference_train_the_same_net(bench, small):
    # Same initial weights, same batches in the same order, same arithmetic: the weights agree.
    cfg = bench.CONFIGS["A"]
    ours = bench.Deepnet(cfg, small.x_train, small.y_train, seed=0)
    ours.train(2, lambda epoch, seconds: None)
    x = bench.normalized(small.x_train, cfg, small.x_train)
    ref = bench.NumpyReference(cfg, x, small.y_train, seed=0)
    for order in bench.epoch_orders(0, len(x), 2):
        ref.epoch(order)
    for layer, w in zip(ours.model.layers[1:], ref.params[::2], strict=True):
        np.testing.assert_allclose(layer.params["W"], w, rtol=1e-3, atol=1e-5)


def test_one_round_of_every_config_prints_the_table(bench, capsys):
    optional = [n for n in ("torch", "sklearn") if importlib.util.find_spec(n)]
    impls = ",".join(["numpy", "matmul", *optional])
    bench.main(["--limit=600", "--rounds=1", f"--impls={impls}", "--no-memory"])
    out = capsys.readouterr().out
    for name in bench.CONFIGS:
        assert f"\n{name}: " in out
    for name in ["deepnet", "numpy", *optional]:
        rows = re.findall(rf"^  {name} +\d+\.\d+ +\d+\.\d+ +\d+\.\d+%$", out, re.MULTILINE)
        assert len(rows) == len(bench.CONFIGS), out
    assert "of the matmul bound" in out and "predict, 784-50-25-10" in out


def test_memory_probe_reports_peak_rss(bench):
    mb = bench.peak_memory("deepnet", limit=600)
    assert mb is not None and 20 < mb < 1000


def test_postal_reading_benchmark_prints_rounds_and_the_ratio(tmp_path, capsys):
    """One round on a few synthetic codes with an untrained model: the table's shape, no timing."""
    pytest.importorskip("PIL")
    pytest.importorskip("scipy")
    from deepnet import Dense, Model
    from deepnet.postal_set import synthesize

    spec = importlib.util.spec_from_file_location("bench_postal", RUN.parent / "postal_read.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    synthesize(tmp_path / "set", 6, seed=3)
    Model([Dense(10, "softmax")]).build((784,), seed=0).save(tmp_path / "m.npz")
    args = [str(tmp_path / "m.npz"), str(tmp_path / "set"), "--codes", "4", "--rounds", "2"]
    result = module.main([*args, "--jobs", "1"])
    out = capsys.readouterr().out
    assert "4 codes, 1 process\n" in out
    rows = re.findall(r"^ +[12] +(\d+\.\d) +(\d+\.\d) +(\d+\.\d)x$", out, re.MULTILINE)
    assert len(rows) == 2, out
    for read, floor, ratio in rows:  # the ratio is how many floors a code costs
        assert float(ratio) == pytest.approx(float(floor) / float(read), abs=0.1, rel=0.01)
    ratios = sorted(float(r) for *_, r in rows)
    assert ratios[0] - 0.05 <= result["ratio"] <= ratios[1] + 0.05
    assert f"a code costs {result['ratio']:.1f} floors" in out


@pytest.fixture(scope="module")
def errors():
    spec = importlib.util.spec_from_file_location("bench_errors", RUN.parent / "postal_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_postal_errors_sort_every_code_into_one_kind(errors, tmp_path, capsys):
    pytest.importorskip("PIL")
    pytest.importorskip("scipy")
    from deepnet import Dense, Model

    Model([Dense(10, "softmax")]).build((784,), seed=0).save(tmp_path / "m.npz")
    args = [str(tmp_path / "m.npz"), "--count", "6", "--seed", "3", "--jobs", "1"]
    counts = errors.main([*args, "--reject", "0.5", "--combine", "mean"])
    assert sum(counts["all"].values()) == 6 and sum(counts["accepted"].values()) == 3
    out = capsys.readouterr().out
    for k in errors.KINDS:
        assert re.search(rf"^{k} +{counts['all'][k]} +{counts['accepted'][k]}$", out, re.M), out


def test_postal_errors_tell_cuts_from_readings(errors):
    from deepnet.postal import CodeRead
    from deepnet.postal_set import Strip

    boxes = ((0, 0, 20, 14), (0, 20, 20, 34))
    strip = Strip(np.zeros((20, 40), np.uint8), "17", (5, 9), boxes)
    alone = np.zeros(10, dtype=int)
    alone[5], alone[9] = 1, 3  # the model reads MNIST digit 5 right (a 1), digit 9 wrongly

    def read(code, boxes=boxes):
        return CodeRead(code, (0.9,) * len(code), boxes, False)

    assert errors.kind(read("17"), strip, alone) == "right"
    assert errors.kind(read("13"), strip, alone) == "hard digit"
    assert errors.kind(read("47"), strip, alone) == "misread"
    shifted = ((0, 0, 20, 14), (0, 24, 20, 38))  # an edge 4 px = 0.2 heights off
    assert errors.kind(read("47", shifted), strip, alone) == "cut wrong"
    assert errors.kind(read("17", shifted), strip, alone) == "right"  # the code counts first
    assert errors.kind(read("1", boxes[:1]), strip, alone) == "cut wrong"
