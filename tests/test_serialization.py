"""Model files: round trip, atomic writes, no pickle, clear errors for bad or foreign files."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import deepnet
from deepnet import Dense, Model, ModelFormatError
from deepnet.core import serialization
from deepnet.core.plugins import load_plugins
from deepnet.testing import using_registry


@pytest.fixture
def trained(blobs):
    x, y = blobs
    model = Model([Dense(6, "relu", init="he_normal"), Dense(3, "softmax")])
    model.fit(x, y, epochs=2, batch_size=20, lr=0.1, seed=0)
    return model


def test_round_trip_predicts_identically(trained, blobs, tmp_path):
    path = trained.save(tmp_path / "m.npz")
    loaded = deepnet.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(blobs[0]), trained.predict_proba(blobs[0]))
    assert loaded.meta["training"]["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.0,
                                                    "nesterov": False}  # fmt: skip
    assert loaded.dtype == trained.dtype and loaded.input_shape == (4,)


def test_file_is_npz_with_a_json_header_and_no_pickle(trained, tmp_path):
    path = trained.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["__header__"].tobytes())
        assert npz["layers.0.params.W"].shape == (4, 6)
    assert header["format"] == "deepnet-model"
    assert header["layers"][0]["distribution"] == "deepnet"
    assert header["layers"][0]["config"]["activation"] == "relu"


def test_saved_file_has_the_usual_permissions(trained, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = trained.save(tmp_path / "m.npz")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    path = trained.save(tmp_path / "m.npz")
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(serialization.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, not a model", r"not a deepnet model file \(not an .npz archive\)"),
        (b"", "not a deepnet model file"),
    ],
)
def test_foreign_files_are_refused(content, message, tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=message):
        deepnet.load(path)


def test_plain_npz_without_header_is_refused(tmp_path):
    np.savez(tmp_path / "weights.npz", W=np.zeros(3))
    with pytest.raises(ModelFormatError, match="no deepnet header"):
        deepnet.load(tmp_path / "weights.npz")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFormatError, match="no such model file"):
        deepnet.load(tmp_path / "nope.npz")


def rewrite_header(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["__header__"].tobytes())
    change(header, arrays)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_missing_plugin_names_component_and_distribution(trained, tmp_path):
    path = trained.save(tmp_path / "m.npz")

    with np.load(path, allow_pickle=False) as npz:
        requires = json.loads(npz["__header__"].tobytes())["requires"]
    assert {(r["kind"], r["name"], r["distribution"]) for r in requires} >= {
        ("layer", "dense", "deepnet"), ("activation", "relu", "deepnet"),
        ("initializer", "he_normal", "deepnet"), ("loss", "categorical_cross_entropy", "deepnet"),
    }  # fmt: skip

    def use_missing(header, arrays):  # as if a plugin's activation was used, nested in a layer
        header["layers"][0]["config"]["activation"] = "mish"
        header["requires"].append(
            {
                "kind": "activation",
                "name": "mish",
                "distribution": "deepnet-fancy",
                "version": "2.0",
            }
        )

    rewrite_header(path, use_missing)
    with pytest.raises(ModelFormatError, match=r"activation 'mish' from .*deepnet-fancy 2\.0.*"
                       r"pip install deepnet-fancy"):  # fmt: skip
        deepnet.load(path)


def test_damaged_weights_are_reported(trained, tmp_path):
    path = trained.save(tmp_path / "m.npz")
    rewrite_header(path, lambda header, arrays: arrays.pop("layers.1.params.b"))
    with pytest.raises(ModelFormatError, match=r"layer 1 lacks params\.b"):
        deepnet.load(path)
    path = trained.save(tmp_path / "m.npz")
    rewrite_header(path, lambda h, arrays: arrays.update({"layers.0.params.W": np.zeros((2, 2))}))
    with pytest.raises(ModelFormatError, match="do not fit"):
        deepnet.load(path)


def test_truncated_file_is_refused(trained, tmp_path):
    path = trained.save(tmp_path / "m.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFormatError):
        deepnet.load(path)
    assert not zipfile.is_zipfile(path)


# -- damaged, foreign and future files ---------------------------------------------------


@pytest.fixture
def model_path(trained, tmp_path) -> Path:
    return trained.save(tmp_path / "m.npz")


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
        (lambda h, a: a.update({"layers.\u00b2.params.W": np.zeros(2)}),  # isdigit, not int
         r"unexpected array 'layers\.\u00b2\.params\.W'"),
        (lambda h, a: a.update({"layers.0.params.extra": np.zeros(2)}),
         r"layer 0 has no params\.extra"),
        (lambda h, a: h["layers"][0]["config"].update(units=-3),
         r"damaged model header: units must be"),
        (lambda h, a: h.pop("loss"), r"damaged model header \(KeyError: 'loss'\)"),
    ],
)  # fmt: skip
def test_damaged_model_files_are_named(model_path, change, message):
    rewrite_header(model_path, change)
    with pytest.raises(ModelFormatError, match=rf"^{re.escape(str(model_path))}: .*{message}"):
        deepnet.load(model_path)


def test_non_finite_layer_state_is_refused(blobs, tmp_path):
    x, y = blobs
    model = Model([{"name": "normalize", "method": "standardize"}, Dense(3, "softmax")])
    model.fit(x, y, epochs=1, seed=0)
    path = model.save(tmp_path / "m.npz")
    rewrite_header(path, lambda h, a: a["layers.0.state.scale"].__setitem__(0, np.inf))
    with pytest.raises(ModelFormatError, match=r"layer 0 state\.scale has NaN or infinite"):
        deepnet.load(path)


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
