"""Bad input everywhere a file or a user value enters: a clear deepnet error, nothing lost."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import deepnet
from deepnet import DataFormatError, DeepnetError, Dense, Model, ModelFormatError
from deepnet.cli import main
from deepnet.core import serialization
from deepnet.core.data import read_idx
from deepnet.core.plugins import load_plugins
from deepnet.testing import using_registry


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


# -- model files -------------------------------------------------------------------------------


@pytest.fixture
def model_path(blobs, tmp_path) -> Path:
    model = small()
    model.fit(*blobs, epochs=1, seed=0)
    return model.save(tmp_path / "m.npz")


def rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["__header__"].tobytes())
    change(header, arrays)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_header_records_the_deepnet_version(model_path):
    header, _ = serialization.read_header(model_path)
    assert header["deepnet_version"] == deepnet.__version__
    assert header["format_version"] == serialization.FORMAT_VERSION


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, a: h.update(format_version=99, deepnet_version="9.0"),
         r"model format 99 \(written by deepnet 9\.0\) is newer than this deepnet reads "
         r"\(1 to 1\); upgrade deepnet"),
        (lambda h, a: h.update(format_version=0),
         r"model format 0 .* is older than this deepnet reads \(1 to 1\)"),
        (lambda h, a: h.update(format_version="1"), r"damaged model header \(format_version '1'\)"),
        (lambda h, a: a.update({"layers.0.params.W": a["layers.0.params.W"].astype(np.float64)}),
         r"weights do not fit the architecture: layer 0 params\.W is float64 \(4, 6\), "
         r"expected float32 \(4, 6\)"),
        (lambda h, a: a["layers.1.params.b"].__setitem__(0, np.nan),
         r"layer 1 params\.b has NaN or infinite values"),
        (lambda h, a: a.update({"layers.7.params.W": np.zeros(2)}),
         r"unexpected array 'layers\.7\.params\.W'"),
        (lambda h, a: a.update({"layers.0.params.extra": np.zeros(2)}),
         r"layer 0 has no params\.extra"),
        (lambda h, a: h["layers"][0]["config"].update(units=-3),
         r"damaged model header: units must be"),
        (lambda h, a: h.pop("loss"), r"damaged model header \(KeyError: 'loss'\)"),
    ],
)  # fmt: skip
def test_damaged_model_files_are_named(model_path, change, message):
    rewrite(model_path, change)
    with pytest.raises(ModelFormatError, match=rf"^{re.escape(str(model_path))}: .*{message}"):
        deepnet.load(model_path)


def test_an_npy_claiming_more_than_the_archive_holds_is_refused(model_path):
    import zipfile

    with zipfile.ZipFile(model_path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    # Claim 2**40 float32 values in the header of the first layer's weights.
    members["layers.0.params.W.npy"] = members["layers.0.params.W.npy"].replace(
        b"(4, 6)", b"(1099511627776,)"
    )
    with zipfile.ZipFile(model_path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ModelFormatError, match=r"claims 4398046511104 bytes but holds"):
        deepnet.load(model_path)


def test_a_model_needing_a_disabled_plugin_names_it_and_its_distribution(blobs, tmp_path):
    model = Model([Dense(6, "relu"), {"name": "dropout", "rate": 0.2}, Dense(3, "softmax")])
    model.fit(*blobs, epochs=1, seed=0)
    path = model.save(tmp_path / "m.npz")
    with (
        using_registry(load_plugins(disabled=["deepnet-plugins-contrib"])),
        pytest.raises(
            ModelFormatError,
            match=r"m\.npz: the model needs layer 'dropout' from the distribution "
            r"deepnet-plugins-contrib 0\.1\.0, which is not installed or is disabled; install "
            r"it with: pip install deepnet-plugins-contrib",
        ),
    ):
        deepnet.load(path)
    assert deepnet.load(path).predict(blobs[0]).shape == (300,)
