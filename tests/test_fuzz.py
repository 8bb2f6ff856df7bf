"""Fuzzing the loaders: mutated IDX files, model files and checkpoints.

Whatever the bytes, a loader either returns or raises deepnet's own documented error for that
input (DataFormatError for data, ModelFormatError for model files; any DeepnetError when
resuming). CI runs a few dozen examples per test, the same ones every time; a long run draws
new ones:

    DEEPNET_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest -W error tests/test_fuzz.py
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import deepnet
from deepnet import DataFormatError, DeepnetError, Dense, Model, ModelFormatError
from deepnet.core.checkpoint import load_checkpoint
from deepnet.core.data import load_idx_dir, read_idx

EXAMPLES = int(os.environ.get("DEEPNET_FUZZ_EXAMPLES", "40"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository
    derandomize="DEEPNET_FUZZ_EXAMPLES" not in os.environ,  # CI: the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def outcome(exc: Exception, path: Path) -> str:
    """The kind of error, for hypothesis' statistics (--hypothesis-show-statistics)."""
    text = re.sub(r"[0-9x]+\b", "N", str(exc).removeprefix(f"{path}: "))
    return " ".join(re.sub(r"[(:']", " ", text).split()[:10])


# -- mutations -------------------------------------------------------------------------------


@st.composite
def mutated(draw: Any, data: bytes, header: int = 0) -> bytes:
    """``data`` with 1 to 4 edits (flip, overwrite, insert, delete, truncate); positions in the
    first ``header`` bytes are drawn as often as anywhere else."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        end = max(len(out) - 1, 0)
        pos = draw(st.integers(0, end) | st.integers(0, min(max(header - 1, 0), end)))
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        if op == "flip" and out:
            out[pos] ^= draw(st.integers(1, 255))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            out[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 16))]
        else:
            del out[pos:]
    return bytes(out)


# Values a damaged header may hold. Integers stay small or fail fast (2**63 cannot be
# allocated): a header asking for a merely large model would be built, slowly, by design.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.sampled_from([2**31, 2**63, -(2**63), 10**30])
    | st.floats()
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON document, nested ones included."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    slots = []
    for key, value in items:
        slots.append((doc, key))
        slots.extend(_slots(value))
    return slots


@st.composite
def mutated_json(draw: Any, doc: dict) -> dict:
    """``doc`` with 1 to 3 values replaced by random JSON, or keys removed."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(_slots(doc)))
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(json_values)
    return doc


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(members: dict[str, bytes]) -> bytes:
    """A valid archive (CRCs right) of ``members``, so that edits reach the .npy and JSON."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@st.composite
def damaged_npz(draw: Any, data: bytes) -> bytes:
    """A model file damaged three ways: its raw bytes, one member's bytes, or its header."""
    how = draw(st.sampled_from(["bytes", "member", "header"]))
    if how == "bytes":
        return draw(mutated(data))
    members = zip_members(data)
    if how == "member":
        name = draw(st.sampled_from(sorted(members)))
        members[name] = draw(mutated(members[name], header=128))  # .npy headers are 128 bytes
    else:
        header = json.loads(np.load(io.BytesIO(members["__header__.npy"])).tobytes())
        text = json.dumps(draw(mutated_json(header))).encode()
        members["__header__.npy"] = npy_bytes(np.frombuffer(text, dtype=np.uint8))
    return rezip(members)


# -- IDX files -------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return (
        bytes([0, 0, code, array.ndim])
        + dims
        + array.astype(array.dtype.newbyteorder(">")).tobytes()
    )


_rng = np.random.default_rng(0)
IDX_FILES = [
    idx_bytes(_rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), 0x08),
    idx_bytes(np.arange(5, dtype=np.uint8), 0x08),
    idx_bytes(_rng.integers(-9, 9, (3, 2), dtype=np.int32), 0x0C),
    idx_bytes(_rng.normal(size=(2, 3)), 0x0E),
]


@fuzz
@given(data=st.sampled_from(IDX_FILES).flatmap(lambda b: mutated(b, header=20)), gz=st.booleans())
def test_read_idx_raises_only_data_format_errors(workdir, data, gz):
    path = workdir / "fuzz-idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        array = read_idx(path)
    except DataFormatError as exc:
        assert str(exc).startswith(str(path))
        event(outcome(exc, path))
    else:
        assert isinstance(array, np.ndarray)
        event("read")


@fuzz
@given(data=st.data())
def test_reading_mutated_raw_gzip_raises_only_data_format_errors(workdir, data):
    compressed = gzip.compress(data.draw(st.sampled_from(IDX_FILES)))
    path = workdir / "fuzz-idx.gz"
    path.write_bytes(data.draw(mutated(compressed, header=20)))
    try:
        read_idx(path)
    except DataFormatError as exc:
        event(outcome(exc, path))


MNIST_LIKE = {
    "train-images-idx3-ubyte": idx_bytes(_rng.integers(0, 256, (6, 4, 4), dtype=np.uint8), 8),
    "train-labels-idx1-ubyte": idx_bytes(_rng.integers(0, 10, 6, dtype=np.uint8), 8),
    "t10k-images-idx3-ubyte": idx_bytes(_rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), 8),
    "t10k-labels-idx1-ubyte": idx_bytes(_rng.integers(0, 10, 3, dtype=np.uint8), 8),
}


@fuzz
@given(data=st.data())
def test_idx_directory_with_a_mutated_file_raises_only_data_format_errors(workdir, data):
    directory = workdir / "idx-dir"
    directory.mkdir(exist_ok=True)
    victim = data.draw(st.sampled_from(sorted(MNIST_LIKE)))
    for name, content in MNIST_LIKE.items():
        if name == victim:
            content = data.draw(mutated(content, header=16))
        (directory / name).write_bytes(content)
    normalize = data.draw(st.sampled_from(["scale", "standardize", "none"]))
    try:
        load_idx_dir(directory, normalize=normalize)
    except DataFormatError as exc:
        assert str(directory) in str(exc)
        event(outcome(exc, directory / victim))
    else:
        event("loaded")


# -- model files and checkpoints ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(workdir, blobs_data) -> bytes:
    model = Model([Dense(5, "relu", init="he_normal"), Dense(3, "softmax")])
    model.fit(*blobs_data, epochs=1, batch_size=50, seed=0)
    return model.save(workdir / "model.npz").read_bytes()


# Early stopping with restore_best: its state (counters in the header, best weights as
# arrays) is fuzzed too.
EARLY = {"name": "early_stopping", "monitor": "loss", "patience": 5}
RESUME = {
    "epochs": 3, "batch_size": 50, "optimizer": "adam", "lr": 0.01, "seed": 0,
    "callbacks": [EARLY],
}  # fmt: skip


def checkpoint_layers() -> list:
    return [Dense(5, "relu"), {"name": "dropout", "rate": 0.2}, Dense(3, "softmax")]


@pytest.fixture(scope="module")
def checkpoint_file(workdir, blobs_data) -> bytes:
    path = workdir / "checkpoint.npz"
    path.unlink(missing_ok=True)

    class StopAfterOne(deepnet.Callback):
        def on_epoch_end(self, model, epoch, logs):
            return True

    Model(checkpoint_layers()).fit(
        *blobs_data, checkpoint=path, **{**RESUME, "callbacks": [EARLY, StopAfterOne()]}
    )
    data = path.read_bytes()
    # An early-stopped checkpoint would resume to nothing; as if it had been interrupted.
    members = zip_members(data)
    header = json.loads(np.load(io.BytesIO(members["__header__.npy"])).tobytes())
    header["meta"]["history"]["stopped_early"] = False
    text = json.dumps(header).encode()
    members["__header__.npy"] = npy_bytes(np.frombuffer(text, dtype=np.uint8))
    return rezip(members)


@pytest.fixture(scope="module")
def blobs_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=150)
    return np.eye(3, 4)[y] * 3 + rng.normal(scale=0.5, size=(150, 4)), y


def test_the_fuzzed_files_load_undamaged(workdir, model_file, checkpoint_file, blobs_data):
    """The bases are good files, so that failures below come from the mutations."""
    (workdir / "ok.npz").write_bytes(model_file)
    assert deepnet.load(workdir / "ok.npz").predict(blobs_data[0]).shape == (150,)
    (workdir / "ok.npz").write_bytes(checkpoint_file)
    ckpt = load_checkpoint(workdir / "ok.npz")
    assert ckpt.epoch == 1 and ckpt.callback_states[0]["best_epoch"] == 0
    assert "callback.0.weights.0.params.W.npy" in zip_members(checkpoint_file)
    history = Model(checkpoint_layers()).fit(
        *blobs_data, checkpoint=workdir / "ok.npz", resume=True, **RESUME
    )
    assert len(history.epochs) == 3


@fuzz
@given(data=st.data())
def test_loading_a_damaged_model_raises_only_model_format_errors(workdir, model_file, data):
    path = workdir / "fuzz-model.npz"
    path.write_bytes(data.draw(damaged_npz(model_file)))
    try:
        model = deepnet.load(path)
    except ModelFormatError as exc:
        assert str(exc).startswith(str(path))
        event(outcome(exc, path))
    else:
        assert model.built
        event("loaded")


@fuzz
@given(data=st.data())
def test_resuming_a_damaged_checkpoint_raises_only_deepnet_errors(
    workdir, checkpoint_file, blobs_data, data
):
    path = workdir / "fuzz-checkpoint.npz"
    path.write_bytes(data.draw(damaged_npz(checkpoint_file)))
    try:
        load_checkpoint(path)
    except ModelFormatError as exc:
        assert str(exc).startswith(str(path))
    try:
        Model(checkpoint_layers()).fit(*blobs_data, checkpoint=path, resume=True, **RESUME)
    except DeepnetError as exc:
        event(outcome(exc, path))
    else:
        event("resumed")


@fuzz
@given(data=st.data())
def test_resuming_a_damaged_callback_state_raises_only_model_format_errors(
    workdir, checkpoint_file, blobs_data, data
):
    """Aimed at early stopping's state: its counters in the header, or one of its arrays."""
    members = zip_members(checkpoint_file)
    if data.draw(st.booleans()):
        header = json.loads(np.load(io.BytesIO(members["__header__.npy"])).tobytes())
        states = header["checkpoint"]["callbacks"]
        states[0] = data.draw(mutated_json(states[0]))
        text = json.dumps(header).encode()
        members["__header__.npy"] = npy_bytes(np.frombuffer(text, dtype=np.uint8))
    else:
        name = data.draw(st.sampled_from(sorted(n for n in members if n.startswith("callback."))))
        members[name] = data.draw(mutated(members[name], header=128))
    path = workdir / "fuzz-callback.npz"
    path.write_bytes(rezip(members))
    try:
        Model(checkpoint_layers()).fit(*blobs_data, checkpoint=path, resume=True, **RESUME)
    except ModelFormatError as exc:
        assert str(exc).startswith(str(path))
        event(outcome(exc, path))
    else:
        event("resumed")
