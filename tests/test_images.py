"""Pictures prepared as MNIST's digits were, .npy inputs, and normalization like training's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepnet._extras import MissingExtraError
from deepnet.core.data import normalize_pixels, pixel_stats
from deepnet.core.errors import DataFormatError, DeepnetError
from deepnet.datasets import MNIST_DIR, load_idx_dir, read_idx
from deepnet.images import (
    load_image,
    load_npy,
    mnist_digit,
    read_grayscale,
)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:20]


def center_of_mass(a: np.ndarray) -> tuple[float, float]:
    r = np.arange(a.shape[0])
    return float(a.sum(axis=1) @ r / a.sum()), float(a.sum(axis=0) @ r / a.sum())


def bbox(a: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_an_mnist_digit_comes_back_nearly_unchanged(digits):
    for d in digits:
        out = mnist_digit(d)
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert np.corrcoef(out.ravel(), d.ravel())[0, 1] > 0.8


def test_a_large_dark_on_light_scan_looks_like_the_mnist_digit(digits):
    corr = []
    for d in digits:
        scan = np.asarray(Image.fromarray(255 - d).resize((112, 112), Image.LANCZOS), float)
        corr.append(np.corrcoef(mnist_digit(scan).ravel(), d.ravel())[0, 1])
    assert np.mean(corr) > 0.9


def test_polarity_does_not_matter(digits):
    d = digits[0].astype(float)
    np.testing.assert_allclose(mnist_digit(d), mnist_digit(255 - d), atol=1e-3)


def test_box_aspect_ratio_and_center_of_mass():
    # A tall bar off to one side of a large light canvas.
    page = np.full((300, 200), 230.0)
    page[40:240, 20:60] = 10.0
    out = mnist_digit(page)
    h, w = bbox(out > 0.1 * 255)
    assert h == 20 and 3 <= w <= 5  # 200:40 kept as 20:4
    cy, cx = center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_faint_pencil_is_stretched_to_full_contrast():
    page = np.full((50, 50), 200.0)
    page[10:40, 22:28] = 170.0
    assert mnist_digit(page).max() == pytest.approx(255, abs=1)


def test_blank_picture_is_an_error():
    with pytest.raises(DeepnetError, match="no digit found"):
        mnist_digit(np.full((40, 30), 250.0))


def test_transparent_background_counts_as_white(tmp_path):
    rgba = np.zeros((60, 60, 4), dtype=np.uint8)  # transparent black...
    rgba[10:50, 25:35] = (0, 0, 0, 255)  # ...with an opaque black stroke
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    gray = read_grayscale(tmp_path / "t.png")
    assert gray[0, 0] == 255 and gray[30, 30] == 0
    assert load_image(tmp_path / "t.png").max() > 200


def test_load_image_names_the_file_for_unreadable_and_blank(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError, match=r"notes.txt: not a picture"):
        load_image(tmp_path / "notes.txt")
    Image.new("L", (30, 30), 255).save(tmp_path / "blank.png")
    with pytest.raises(DataFormatError, match=r"blank.png: no digit found"):
        load_image(tmp_path / "blank.png")


def test_missing_pillow_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'deepnet\[image\]'"):
        mnist_digit(np.eye(28) * 255)


@pytest.mark.parametrize(
    ("shape", "rows"), [((28, 28), 1), ((784,), 1), ((3, 784), 3), ((3, 28, 28), 3)]
)
def test_npy_shapes(tmp_path, shape, rows):
    a = np.arange(np.prod(shape)).reshape(shape) % 256
    np.save(tmp_path / "a.npy", a.astype(np.uint8))
    out = load_npy(tmp_path / "a.npy")
    assert out.shape == (rows, 784)
    np.testing.assert_array_equal(out.ravel(), a.ravel())


def test_npy_unit_floats_are_scaled_to_pixels(tmp_path):
    np.save(tmp_path / "a.npy", np.full((28, 28), 0.5))
    assert load_npy(tmp_path / "a.npy").max() == pytest.approx(127.5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.save(p, np.zeros((10, 10))), r"expected an array of shape \(28, 28\)"),
        (lambda p: np.save(p, np.array(["a"], dtype=object)), "not a .npy array"),
        (lambda p: p.write_text("text"), "not a .npy array"),
        (lambda p: np.save(p, np.full((28, 28), np.nan)), "NaN"),
    ],
)
def test_bad_npy_is_an_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(DataFormatError, match=message) as info:
        load_npy(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def write_idx(path: Path, a: np.ndarray) -> None:
    dims = b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    path.write_bytes(bytes([0, 0, 0x08, a.ndim]) + dims + a.astype(np.uint8).tobytes())


def test_standardize_matches_the_loaders(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(40, 4, 4))
    train[:, 0, 0] = 7  # a constant pixel: std 1, as in the loader
    test = rng.integers(0, 256, size=(10, 4, 4))
    for stem, a in [
        ("train-images-idx3-ubyte", train),
        ("train-labels-idx1-ubyte", np.zeros(40)),
        ("t10k-images-idx3-ubyte", test),
        ("t10k-labels-idx1-ubyte", np.zeros(10)),
    ]:
        write_idx(tmp_path / stem, a)
    expected = load_idx_dir(tmp_path, normalize="standardize").x_test
    got = normalize_pixels(test.reshape(10, -1), "standardize", pixel_stats(train))
    np.testing.assert_array_equal(got, expected)
    scaled = normalize_pixels(test.reshape(10, -1), "scale")
    np.testing.assert_array_equal(scaled, load_idx_dir(tmp_path).x_test)


def test_normalize_rejects_unknown_method():
    with pytest.raises(DeepnetError, match="unknown normalization"):
        normalize_pixels(np.zeros((1, 4)), "whiten")
