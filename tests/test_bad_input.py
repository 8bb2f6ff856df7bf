"""Bad input everywhere a file or a user value enters: a clear deepnet error, nothing lost."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepnet import DataFormatError, DeepnetError, Dense, Model
from deepnet.cli import main
from deepnet.core.data import read_idx


def small() -> Model:
    return Model([Dense(6, "relu"), Dense(3, "softmax")])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": -0.1}, r"lr must be a positive number, got -0\.1"),
        ({"lr": 0}, r"lr must be a positive number, got 0"),
        ({"lr": float("nan")}, r"lr must be a positive number, got nan"),
        ({"optimizer": {"name": "sgd", "lr": -1}}, r"lr must be > 0, got -1"),
        ({"optimizer": {"name": "sgd", "momentum": 1.5}}, r"momentum must be in \[0, 1\)"),
        ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be a positive integer, got 2\.5"),
        ({"epochs": -1}, r"epochs must be a positive integer, got -1"),
        ({"dev_fraction": 1.5}, r"dev_fraction must be in \[0, 1\), got 1\.5"),
    ],
)
def test_bad_hyperparameters_are_named(blobs, options, message):
    with pytest.raises(DeepnetError, match=message):
        small().fit(*blobs, **options)


def test_bad_training_data_is_named(blobs):
    x, y = blobs
    bad = x.copy()
    bad[5, 2] = np.inf
    with pytest.raises(DeepnetError, match="input contains 1 NaN or infinite values"):
        small().fit(bad, y)
    with pytest.raises(DeepnetError, match=r"expected input of shape \(N, 4\), got \(300, 3\)"):
        small().build((4,)).fit(x[:, :3], y)
    with pytest.raises(DeepnetError, match=r"labels must be in 0\.\.2, got 0\.\.3"):
        small().fit(x, np.where(y == 2, 3, y))
    with pytest.raises(DeepnetError, match=r"labels must be integers"):
        small().fit(x, y + 0.5)


def test_a_failing_fit_leaves_the_saved_model_alone(blobs, tmp_path):
    model = small()
    model.fit(*blobs, epochs=1, seed=0)
    path = model.save(tmp_path / "m.npz")
    saved = path.read_bytes()
    with pytest.raises(DeepnetError):
        model.fit(*blobs, lr=-1)
    with pytest.raises(DeepnetError):  # and a checkpoint path that is a model is not written
        model.fit(*blobs, checkpoint=path)
    assert path.read_bytes() == saved


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-0.1"], r"Invalid value for '--lr': -0\.1 is not in the range x>0"),
        (["--batch-size", "0"], r"Invalid value for '--batch-size': 0 is not in the range x>=1"),
        (["--opt-param", "lr=-1"], r"lr must be a positive number, got -1"),
    ],
)
def test_cli_bad_values_are_one_line_usage_errors(args, message):
    result = CliRunner().invoke(main, ["train", "--limit", "50", "--epochs", "1", *args])
    assert result.exit_code == 2
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.output


# -- IDX files ---------------------------------------------------------------------------------


def test_a_2_gb_header_claim_is_refused_without_reading_gigabytes(tmp_path: Path):
    # 60000 x 28 x 1278 bytes = 2.15 GB claimed by a 16-byte header and 10 bytes of data.
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 1278))
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(header + bytes(10))
    start = time.perf_counter()
    with pytest.raises(DataFormatError, match=r"huge-idx3-ubyte: truncated: header says "
                       r"60000x28x1278 = 2147040000 bytes of data, file has 10"):  # fmt: skip
        read_idx(path)
    assert time.perf_counter() - start < 1.0
