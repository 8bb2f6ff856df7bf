"""Training digits cut from strips of training digits, and `deepnet postal cut-set`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepnet import Dense, Model
from deepnet.cli import main
from deepnet.core import data as core_data
from deepnet.core.data import load_idx_dir, read_idx_split, write_idx
from deepnet.core.errors import DataFormatError, InvalidArgumentError
from deepnet.datasets import MNIST_DIR
from deepnet.postal import CodeReader
from deepnet.postal_cut import (
    MANIFEST,
    _kept,
    cut_training_digits,
    matches,
    mnist_train_digits,
    write_cut_set,
)

IDX_NAMES = sorted(f"{stem}.gz" for stem in core_data.MNIST_FILES.values())


@pytest.fixture(scope="module")
def train_digits():
    return mnist_train_digits()


@pytest.fixture(scope="module")
def model(tmp_path_factory, train_digits):
    """A small digit model (about 95% on MNIST) trained here in a few seconds."""
    from deepnet.core.data import normalize_pixels

    images, labels = train_digits
    x = normalize_pixels(images[:12000].reshape(12000, -1), "scale")
    m = Model([Dense(64, "relu"), Dense(10, "softmax")])
    sgd = {"name": "sgd", "momentum": 0.9, "nesterov": True}
    m.fit(x, labels[:12000], epochs=2, optimizer=sgd, lr=0.1, seed=0)
    path = tmp_path_factory.mktemp("cut") / "m.npz"
    m.save(path)
    return m, path


@pytest.fixture(scope="module")
def reader(model):
    return CodeReader(model[0], expect_digits=5)


@pytest.fixture(scope="module")
def base(tmp_path_factory, train_digits):
    """A small MNIST-layout directory: 600 training and 100 test digits of MNIST."""
    root = tmp_path_factory.mktemp("base")
    x_test, y_test = read_idx_split(MNIST_DIR, "test")
    images, labels = train_digits
    for role, array in {
        "train_images": images[:600],
        "train_labels": labels[:600].astype(np.uint8),
        "test_images": x_test[:100],
        "test_labels": y_test[:100].astype(np.uint8),
    }.items():
        write_idx(root / f"{core_data.MNIST_FILES[role]}.gz", array)
    return root


def invoke(*args, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


# -- which cut digits are kept ------------------------------------------------------------


def test_matches_wants_the_centre_inside_and_most_of_the_true_box():
    true = (10, 10, 50, 40)
    assert matches((12, 12, 48, 38), true)  # a little inside
    assert matches((5, 5, 55, 45), true)  # a little around
    assert not matches((10, 10, 50, 22), true)  # the left 40%: too little of it
    assert not matches((10, 30, 50, 60), true)  # centre outside


def test_a_digit_is_kept_with_the_label_of_the_box_it_was_cut_from():
    # The middle two touch: their boxes overlap by 2 px.
    true = [(0, 0, 20, 10), (0, 12, 20, 24), (0, 22, 20, 34), (0, 36, 20, 46)]
    # The first digit cut in two (neither half is it), so the rest sit one place later:
    # they are still kept, each with its own true box.
    shifted = [(0, 0, 20, 4), (0, 5, 20, 10), (0, 12, 20, 24), (0, 22, 20, 34)]
    assert _kept(shifted, true) == [(2, 1), (3, 2)]
    # The touching two cut as one: it covers most of both, is neither, and is dropped.
    merged = [(0, 0, 20, 10), (0, 12, 20, 34), (0, 36, 20, 46)]
    assert matches(merged[1], true[1]) and matches(merged[1], true[2])
    assert _kept(merged, true) == [(0, 0), (2, 3)]
    # A narrow 1 swallowed by its wide neighbour's cut: the centre is the neighbour's, but the
    # cut holds two digits, so it is dropped too.
    ones = [(0, 0, 20, 10), (0, 12, 20, 16), (0, 17, 20, 34), (0, 36, 20, 46)]
    swallowed = [(0, 0, 20, 10), (0, 11, 20, 34), (0, 36, 20, 46)]
    assert matches(swallowed[1], ones[2]) and not matches(swallowed[1], ones[1])
    assert _kept(swallowed, ones) == [(0, 0), (2, 3)]
    assert _kept(true, true) == [(k, k) for k in range(4)]


# -- cut_training_digits ------------------------------------------------------------------


def test_cut_digits_are_the_strips_digits_with_their_labels(reader, train_digits):
    ticks = []
    cut = cut_training_digits(reader, *train_digits, codes=12, seed=5, progress=ticks.append)
    assert ticks == [1] * 12 and cut.composed == 60
    assert 50 <= len(cut.y) <= 60  # this model cuts most strips right
    assert cut.x.shape == (len(cut.y), 784) and cut.x.dtype == np.uint8
    assert cut.y.dtype == np.int64 and set(cut.y) <= set(range(10))
    # The labels are the digits': the model reads most of them as their label (a label
    # shifted by one place would agree about one time in ten).
    agree = np.mean(reader.score(cut.x.reshape(-1, 28, 28).astype(np.float32)).argmax(1) == cut.y)
    assert agree >= 0.85
    # MNIST-style: strokes at full ink, centred in the 28x28 box.
    assert cut.x.max() == 255 and cut.x.reshape(-1, 28, 28)[:, :2].max() == 0


def test_same_seed_same_digits_whatever_the_processes(reader):
    one = cut_training_digits(reader, codes=6, seed=3)  # MNIST's training set by default
    two = cut_training_digits(reader, codes=6, seed=3, jobs=2)
    np.testing.assert_array_equal(one.x, two.x)
    np.testing.assert_array_equal(one.y, two.y)
    other = cut_training_digits(reader, codes=6, seed=4)
    assert len(other.y) != len(one.y) or (other.x != one.x).any()


def test_only_the_given_images_are_drawn(reader, train_digits):
    images, labels = train_digits
    # One image per digit: every cut digit is (a redrawing of) one of these ten.
    picks = np.array([np.flatnonzero(labels == d)[0] for d in range(10)])
    cut = cut_training_digits(reader, images[picks], labels[picks], codes=4, seed=0)
    assert len(cut.y) >= 15
    scores = reader.score(cut.x.reshape(-1, 28, 28).astype(np.float32))
    assert np.mean(scores.argmax(1) == cut.y) >= 0.85


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"codes": 0}, "codes must be at least 1"),
        ({"jobs": 0}, "jobs must be at least 1"),
        ({"images": np.zeros((10, 28, 28), np.uint8)}, "both images and labels"),
        (
            {"images": np.zeros((10, 784), np.uint8), "labels": np.arange(10)},
            r"uint8 of shape \(N, H, W\)",
        ),
        (
            {"images": np.zeros((10, 28, 28)), "labels": np.arange(10)},
            r"uint8 of shape \(N, H, W\), got float64",
        ),
        (
            {"images": np.zeros((10, 28, 28), np.uint8), "labels": np.arange(9)},
            r"labels must be integers of shape \(10,\)",
        ),
        # Blank images cannot be drawn: a digit with only blank ones is missing.
        (
            {"images": np.zeros((10, 28, 28), np.uint8), "labels": np.arange(10)},
            r"none \(with ink\) of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9",
        ),
    ],
)
def test_bad_arguments_are_refused(reader, train_digits, kwargs, message):
    images, labels = train_digits
    args = {"images": images[:200], "labels": labels[:200], "codes": 1, **kwargs}
    if "images" in kwargs and "labels" not in kwargs:
        args.pop("labels")
    with pytest.raises(InvalidArgumentError, match=message):
        cut_training_digits(reader, **args)


def test_a_set_without_some_digit_is_refused(reader, train_digits):
    images, labels = train_digits
    no_sevens = labels[:500] != 7
    with pytest.raises(InvalidArgumentError, match=r"none \(with ink\) of 7$"):
        cut_training_digits(reader, images[:500][no_sevens], labels[:500][no_sevens], codes=1)


# -- write_cut_set and deepnet postal cut-set ---------------------------------------------


def test_cut_set_is_the_base_followed_by_the_cut_digits(model, reader, base, tmp_path):
    _, path = model
    out = tmp_path / "sets" / "cut"  # the parent is made too
    text = invoke(
        "postal", "cut-set", out, "--cutter", path, "--codes", 8, "--seed", 2, "--data-dir", base
    ).output
    cut = cut_training_digits(reader, *read_idx_split(base, "train"), codes=8, seed=2)
    kept = len(cut.y)
    assert "cut 40 digits from 8 strips in " in text
    assert f"kept {kept} ({kept / 40:.1%}) cut where they were written" in text
    assert f"wrote {out}: {600 + kept} training images (600 + {kept} cut), 100 test" in text
    assert f"train on it: deepnet train --data-dir {out}" in text
    assert sorted(p.name for p in out.iterdir()) == sorted([*IDX_NAMES, MANIFEST])
    assert [p.name for p in out.parent.iterdir()] == ["cut"]  # no temporary directory left

    data = load_idx_dir(out, normalize="none", dtype="uint8")
    base_x, base_y = read_idx_split(base, "train")
    assert len(data.x_train) == 600 + kept
    np.testing.assert_array_equal(data.x_train[:600], base_x.reshape(600, -1))
    np.testing.assert_array_equal(data.y_train[:600], base_y)
    np.testing.assert_array_equal(data.x_train[600:], cut.x)
    np.testing.assert_array_equal(data.y_train[600:], cut.y)
    test_x, test_y = read_idx_split(base, "test")
    np.testing.assert_array_equal(data.x_test, test_x.reshape(100, -1))
    np.testing.assert_array_equal(data.y_test, test_y)

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["kept"] == kept and manifest["composed"] == 40
    assert manifest["train"] == {"base": 600, "cut": kept, "total": 600 + kept}
    assert manifest["seed"] == 2 and manifest["cutter"] == str(path)
    assert manifest["base"] == str(base.resolve())

    trained = invoke("train", "--data-dir", out, "--epochs", 1, "--limit", 300).output
    assert f"data: {out.name}, 300 training images" in trained and "test accuracy" in trained


def test_the_default_base_is_mnist(reader, train_digits, tmp_path):
    manifest = write_cut_set(tmp_path / "cut", reader, codes=2, seed=0)
    x, y = read_idx_split(tmp_path / "cut", "train")
    assert len(x) == 60000 + manifest["kept"] and manifest["kept"] >= 8
    np.testing.assert_array_equal(x[:60000], train_digits[0])
    np.testing.assert_array_equal(y[:60000], train_digits[1])
    test_x, test_y = read_idx_split(tmp_path / "cut", "test")
    mnist_x, mnist_y = read_idx_split(MNIST_DIR, "test")
    np.testing.assert_array_equal(test_x, mnist_x)
    np.testing.assert_array_equal(test_y, mnist_y)
    assert manifest["base"] == "the bundled MNIST"


def test_an_existing_directory_is_kept_unless_it_is_an_earlier_cut_set(model, base, tmp_path):
    _, path = model
    args = ["--cutter", path, "--codes", 1, "--data-dir", base]
    out = tmp_path / "cut"
    out.mkdir()  # empty: fine
    invoke("postal", "cut-set", out, *args)
    first = (out / MANIFEST).read_text()
    taken = invoke("postal", "cut-set", out, *args, "--seed", 9, code=2).output
    assert taken.strip() == (
        f"Error: {out}: exists and is not empty; give a new directory "
        "(or --force to replace a cut set written before)"
    )
    assert (out / MANIFEST).read_text() == first
    invoke("postal", "cut-set", out, *args, "--seed", 9, "--force")
    assert json.loads((out / MANIFEST).read_text())["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut"]  # the old set is gone

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = invoke("postal", "cut-set", mine, *args, "--force", code=2).output
    assert "holds files other than a cut set's" in refused
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    (tmp_path / "file").write_text("x")
    assert (
        "exists and is not a directory"
        in invoke("postal", "cut-set", tmp_path / "file", *args, code=2).output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--codes", 0], "Invalid value for '--codes'"),
        (["--jobs", 0], "Invalid value for '--jobs'"),
        (["--data-dir", "{tmp}/nowhere"], "nowhere: no such data directory"),
        (["--data-dir", "{tmp}"], "missing train-images-idx3-ubyte"),
        (["--cutter", "{tmp}/none.npz"], "none.npz: no such model file"),
    ],
)
def test_bad_arguments_are_one_line_errors(model, tmp_path, args, message):
    _, path = model
    args = [str(a).format(tmp=tmp_path) for a in args]
    cutter = [] if "--cutter" in args else ["--cutter", path]
    out = invoke("postal", "cut-set", tmp_path / "cut", *cutter, *args, code=2).output
    assert message in out
    assert not (tmp_path / "cut").exists()


def test_a_cutter_that_is_not_a_digit_model_is_refused(tmp_path):
    m = Model([Dense(3, "softmax")])
    m.fit(np.random.default_rng(0).normal(size=(20, 5)), np.arange(20) % 3, epochs=1)
    m.save(tmp_path / "m.npz")
    out = invoke("postal", "cut-set", tmp_path / "cut", "--cutter", tmp_path / "m.npz", code=2)
    assert "needs digit models with 784 inputs and 10 outputs" in out.output


def test_images_that_are_not_28_by_28_are_refused(reader, tmp_path):
    for role, shape in [("train_images", (50, 20, 20)), ("test_images", (10, 20, 20))]:
        write_idx(tmp_path / f"{core_data.MNIST_FILES[role]}.gz", np.zeros(shape, np.uint8))
    for role, n in [("train_labels", 50), ("test_labels", 10)]:
        write_idx(tmp_path / f"{core_data.MNIST_FILES[role]}.gz", np.zeros(n, np.uint8))
    with pytest.raises(DataFormatError, match="training images are 20x20; cut digits are 28x28"):
        write_cut_set(tmp_path / "cut", reader, codes=1, data_dir=tmp_path)
    assert not (tmp_path / "cut").exists()


def test_a_failure_while_writing_leaves_nothing_half_written(reader, base, tmp_path, monkeypatch):
    import deepnet.postal_cut as postal_cut

    written = []

    def fail_third(path: Path, array: np.ndarray) -> Path:
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path)
        return write_idx(path, array)

    out = tmp_path / "cut"
    monkeypatch.setattr(postal_cut, "write_idx", fail_third)
    with pytest.raises(OSError, match="disk full"):
        write_cut_set(out, reader, codes=1, data_dir=base)
    assert list(tmp_path.iterdir()) == []  # neither OUT_DIR nor its temporary twin

    # Replacing an earlier set with --force: a failure leaves the earlier set whole.
    monkeypatch.setattr(postal_cut, "write_idx", write_idx)
    write_cut_set(out, reader, codes=1, data_dir=base)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written.clear()
    monkeypatch.setattr(postal_cut, "write_idx", fail_third)
    with pytest.raises(OSError, match="disk full"):
        write_cut_set(out, reader, codes=2, data_dir=base, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["cut"]
