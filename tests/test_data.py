"""Tests of IDX reading, MNIST-layout loading, normalization, splits and verified fetching."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from deepnet.core import data as core_data
from deepnet.core.data import IDX_DTYPES, fetch_idx_files, read_idx
from deepnet.core.errors import DataFormatError, InvalidArgumentError
from deepnet.datasets import MNIST_DIR, Dataset, load_idx_dir, load_mnist, train_dev_split

_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of ``a``: magic 00 00 <type> <ndim>, big-endian uint32 dims, data."""
    code = _CODES[a.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
    return header + a.astype(IDX_DTYPES[code]).tobytes()


def write_idx(path: Path, a: np.ndarray | bytes, *, gz: bool = False) -> Path:
    data = a if isinstance(a, bytes) else idx_bytes(a)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_dir(
    root: Path,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    gz: bool = True,
) -> Path:
    ext = ".gz" if gz else ""
    write_idx(root / f"train-images-idx3-ubyte{ext}", x_train, gz=gz)
    write_idx(root / f"train-labels-idx1-ubyte{ext}", y_train, gz=gz)
    write_idx(root / f"t10k-images-idx3-ubyte{ext}", x_test, gz=gz)
    write_idx(root / f"t10k-labels-idx1-ubyte{ext}", y_test, gz=gz)
    return root


@pytest.fixture
def images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(50, 4, 3), dtype=np.uint8)
    x_train[:, 0, 0] = 7  # a constant pixel: standardize must not divide by zero
    x_test = rng.integers(0, 256, size=(20, 4, 3), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=50, dtype=np.uint8)
    y_test = rng.integers(0, 10, size=20, dtype=np.uint8)
    return x_train, y_train, x_test, y_test


# --- read_idx ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_round_trip(tmp_path: Path, gz: bool, dtype: str) -> None:
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    # The name says nothing: gzip must be detected from the content.
    got = read_idx(write_idx(tmp_path / "data.bin", a, gz=gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, a)
    got[0, 0, 0] = 1  # writable, not a view of the file's bytes


def test_read_idx_one_dimensional(tmp_path: Path) -> None:
    got = read_idx(write_idx(tmp_path / "labels", np.array([3, 1, 4], dtype=np.uint8)))
    np.testing.assert_array_equal(got, [3, 1, 4])


def test_wrong_magic(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataFormatError, match=r"not an IDX file: magic number starts 01 00 08 01"):
        read_idx(path)


def test_wrong_magic_message_names_path(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "notes.txt", b"hello world")
    with pytest.raises(DataFormatError) as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: not an IDX file")
    assert "\n" not in str(info.value)


def test_bad_type_code(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataFormatError, match=r"unsupported IDX type code 0x07 \(supported: 0x08"):
        read_idx(path)


def test_zero_dims(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", b"\x00\x00\x08\x00")
    with pytest.raises(DataFormatError, match=r"says 0 dimensions, expected 1 to 4"):
        read_idx(path)


def test_too_short_and_truncated_header(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"too short for an IDX header \(2 bytes\)"):
        read_idx(write_idx(tmp_path / "a", b"\x00\x00"))
    with pytest.raises(DataFormatError, match=r"truncated header: 3 dimensions need 16 bytes"):
        read_idx(write_idx(tmp_path / "b", b"\x00\x00\x08\x03" + bytes(4)))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.zeros((6, 28, 28), dtype=np.uint8))[:-100]
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", data, gz=gz)
    expected = f"{path}: truncated: header says 6x28x28 = 4704 bytes of data, file has 4604"
    with pytest.raises(DataFormatError, match=f"^{re.escape(expected)}$"):
        read_idx(path)


def test_truncated_multibyte_names_item_size(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((2, 3), dtype=np.int32))[:-1]
    with pytest.raises(DataFormatError, match=r"2x3 4-byte int32 = 24 bytes of data, file has 23"):
        read_idx(write_idx(tmp_path / "x", data))


def test_trailing_bytes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", idx_bytes(np.zeros((2, 3), dtype=np.uint8)) + b"junk")
    with pytest.raises(DataFormatError, match=r"4 trailing bytes: header says 2x3 = 6 bytes"):
        read_idx(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8).reshape(10, 100)))
    cut = write_idx(tmp_path / "cut.gz", good[: len(good) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.gz: corrupt gzip stream"):
        read_idx(cut)
    flipped = bytearray(good)
    flipped[20:30] = bytes(10)  # damage the deflate data, keep the gzip header intact
    bad = write_idx(tmp_path / "bad.gz", bytes(flipped))
    with pytest.raises(DataFormatError, match=r"bad\.gz: corrupt gzip stream"):
        read_idx(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


# --- write_idx (the library's writer; write_idx above is the tests' own byte writer) -----------


@pytest.mark.parametrize("name", ["data.idx", "train-images-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i2", "i4", "f4", ">f8"])
def test_write_idx_round_trips_through_read_idx(tmp_path: Path, name: str, dtype: str) -> None:
    a = (np.arange(60).reshape(3, 4, 5) - 7).astype(dtype)
    path = core_data.write_idx(tmp_path / name, a)
    assert path == tmp_path / name
    raw = path.read_bytes()
    # .gz names are gzipped, others raw; the bytes are the format's, checked independently.
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert (gzip.decompress(raw) if name.endswith(".gz") else raw) == idx_bytes(a)
    got = read_idx(path)
    assert got.shape == a.shape and got.dtype == a.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got, a)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it


def test_write_idx_one_dimensional_and_empty(tmp_path: Path) -> None:
    labels = np.array([7, 0, 255], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(core_data.write_idx(tmp_path / "y", labels)), labels)
    empty = np.zeros((0, 28, 28), dtype=np.uint8)
    assert read_idx(core_data.write_idx(tmp_path / "e.gz", empty)).shape == (0, 28, 28)
    # A non-contiguous view is written as the array it shows.
    view = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2].T
    np.testing.assert_array_equal(read_idx(core_data.write_idx(tmp_path / "v", view)), view)


def test_write_idx_gives_the_same_bytes_for_the_same_array(tmp_path: Path) -> None:
    a = np.arange(100, dtype=np.uint8).reshape(10, 10)
    one = core_data.write_idx(tmp_path / "a.gz", a).read_bytes()
    assert core_data.write_idx(tmp_path / "b.gz", a).read_bytes() == one  # no time stamp


def test_write_idx_replaces_a_file_whole(tmp_path: Path) -> None:
    path = core_data.write_idx(tmp_path / "x.gz", np.zeros((5, 2, 2), dtype=np.uint8))
    core_data.write_idx(path, np.ones(3, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), [1, 1, 1])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(3, dtype=np.int64), "cannot hold int64 data.*astype"),
        (np.zeros(3, dtype=np.uint16), "cannot hold uint16"),
        (np.zeros(3, dtype=bool), "cannot hold bool"),
        (np.zeros(3, dtype=np.float16), "cannot hold float16"),
        (np.zeros(3, dtype=np.complex64), "cannot hold complex64"),
        (np.array(["1", "2"]), "cannot hold <U1"),
        (np.array([1, None]), "cannot hold object"),
        (np.uint8(3), r"1 to 4 dimensions.*shape \(\)"),
        (np.zeros((1, 1, 1, 1, 1), dtype=np.uint8), r"shape \(1, 1, 1, 1, 1\)"),
        # A view of one byte, 2**32 long: refused before any byte is copied.
        (np.broadcast_to(np.uint8(0), (2**32,)), "32-bit"),
    ],
)
def test_write_idx_refuses_what_idx_cannot_hold(tmp_path: Path, array, message: str) -> None:
    target = tmp_path / "out.gz"
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        core_data.write_idx(target, array)
    assert str(caught.value).startswith(f"{target}: ")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_write_idx_leaves_no_temporary_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = core_data.write_idx(tmp_path / "x", np.zeros(4, dtype=np.uint8))

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(core_data.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        core_data.write_idx(path, np.ones(4, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == [path]
    np.testing.assert_array_equal(read_idx(path), [0, 0, 0, 0])  # the old file, untouched


# --- load_idx_dir -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dir_scale(tmp_path: Path, images, gz: bool) -> None:
    x_train, y_train, _, _ = images
    ds = load_idx_dir(make_dir(tmp_path, *images, gz=gz))
    assert isinstance(ds, Dataset)
    assert ds.name == tmp_path.name and ds.normalization == "scale"
    assert ds.x_train.shape == (50, 12) and ds.x_test.shape == (20, 12)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_allclose(ds.x_train, x_train.reshape(50, 12) / 255, rtol=1e-6)
    assert ds.x_test.min() >= 0.0 and ds.x_test.max() <= 1.0


def test_load_idx_dir_none_unflattened_float64(tmp_path: Path, images) -> None:
    ds = load_idx_dir(make_dir(tmp_path, *images), normalize="none", dtype="float64", flatten=False)
    assert ds.x_train.shape == (50, 4, 3) and ds.x_train.dtype == np.float64
    np.testing.assert_array_equal(ds.x_test, images[2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_standardize(tmp_path: Path, images, dtype: str) -> None:
    x_train, _, x_test, _ = images
    ds = load_idx_dir(make_dir(tmp_path, *images), normalize="standardize", dtype=dtype)
    assert ds.x_train.dtype == dtype and ds.x_test.dtype == dtype
    assert ds.normalization == "standardize"
    varying = np.arange(12) != 0  # pixel (0, 0) is constant in the fixture
    np.testing.assert_allclose(ds.x_train.mean(axis=0, dtype=np.float64), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, varying].std(axis=0, dtype=np.float64), 1, rtol=1e-5)
    np.testing.assert_array_equal(ds.x_train[:, 0], 0)  # constant pixel: (x - mean) / 1
    # The test set uses the training statistics, not its own.
    flat = x_train.reshape(50, 12).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    std[0] = 1
    expected = (x_test.reshape(20, 12) - mean) / std
    np.testing.assert_allclose(ds.x_test, expected, rtol=1e-5, atol=1e-5)


def test_unknown_normalize(tmp_path: Path, images) -> None:
    with pytest.raises(ValueError, match=r"unknown normalize 'minmax'; choose one of scale, "):
        load_idx_dir(make_dir(tmp_path, *images), normalize="minmax")


def test_scale_needs_float_dtype(tmp_path: Path, images) -> None:
    with pytest.raises(ValueError, match=r"needs a floating dtype, got int32"):
        load_idx_dir(make_dir(tmp_path, *images), dtype="int32")


def test_count_mismatch(tmp_path: Path, images) -> None:
    x_train, y_train, x_test, y_test = images
    make_dir(tmp_path, x_train, y_train[:-1], x_test, y_test)
    with pytest.raises(DataFormatError) as info:
        load_idx_dir(tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz has 50 images" in msg
    assert "train-labels-idx1-ubyte.gz has 49 labels" in msg


def test_images_must_be_3d_uint8(tmp_path: Path, images) -> None:
    x_train, y_train, x_test, y_test = images
    make_dir(tmp_path, x_train.reshape(50, 12), y_train, x_test, y_test)
    with pytest.raises(DataFormatError, match=r"expected uint8 images of shape \(N, H, W\)"):
        load_idx_dir(tmp_path)


def test_missing_file_in_dir(tmp_path: Path, images) -> None:
    make_dir(tmp_path, *images)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing t10k-labels-idx1-ubyte \(or") as info:
        load_idx_dir(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_mixed_raw_and_gz_names(tmp_path: Path, images) -> None:
    make_dir(tmp_path, *images)
    gz = tmp_path / "train-labels-idx1-ubyte.gz"
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    np.testing.assert_array_equal(load_idx_dir(tmp_path).y_train, images[1])


# --- train_dev_split --------------------------------------------------------------------------


def test_split_fractions_and_determinism() -> None:
    x = np.arange(100 * 3).reshape(100, 3)
    y = np.arange(100)
    x_tr, y_tr, x_dev, y_dev = train_dev_split(x, y, 0.29, seed=1)
    assert len(x_dev) == len(y_dev) == 29 and len(x_tr) == len(y_tr) == 71
    np.testing.assert_array_equal(x_dev[:, 0] // 3, y_dev)  # rows keep their labels
    assert sorted(np.concatenate([y_tr, y_dev]).tolist()) == list(range(100))
    again = train_dev_split(x, y, 0.29, seed=1)
    for a, b in zip((x_tr, y_tr, x_dev, y_dev), again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(train_dev_split(x, y, 0.29, seed=2)[3], y_dev)


def test_split_zero_fraction() -> None:
    x, y = np.ones((10, 4, 2)), np.arange(10)
    x_tr, _, x_dev, y_dev = train_dev_split(x, y, 0.0, seed=0)
    assert x_tr.shape == (10, 4, 2) and x_dev.shape == (0, 4, 2) and y_dev.shape == (0,)


def test_split_keeps_one_training_row() -> None:
    x_tr, _, x_dev, _ = train_dev_split(np.ones((10, 2)), np.arange(10), 0.99, seed=0)
    assert len(x_tr) == 1 and len(x_dev) == 9


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan")])
def test_split_bad_fraction(bad: float) -> None:
    with pytest.raises(ValueError, match=r"dev_fraction must be in \[0, 1\)"):
        train_dev_split(np.ones((10, 2)), np.arange(10), bad, seed=0)


def test_split_length_mismatch() -> None:
    with pytest.raises(ValueError, match="x has 10 rows but y has 9"):
        train_dev_split(np.ones((10, 2)), np.arange(9), 0.1, seed=0)


# --- fetch_idx_files --------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "published"
    src.mkdir()
    sums = {}
    for name, content in [("a-idx1-ubyte.gz", b"first file"), ("b-idx1-ubyte.gz", b"second")]:
        (src / name).write_bytes(content)
        sums[name] = hashlib.sha256(content).hexdigest()
    return src, sums


@pytest.mark.parametrize("via", ["local_dir", "file_url"])
def test_fetch_good(tmp_path: Path, published, via: str) -> None:
    src, sums = published
    dest = tmp_path / "dest" / "sub"
    kwargs = {"local_dir": src} if via == "local_dir" else {}
    base = "unused://" if via == "local_dir" else src.as_uri() + "/"
    assert fetch_idx_files(base, sums, dest, **kwargs) == dest
    assert (dest / "a-idx1-ubyte.gz").read_bytes() == b"first file"
    assert sorted(p.name for p in dest.iterdir()) == sorted(sums)  # no .part left over


@pytest.mark.parametrize("via", ["local_dir", "file_url"])
def test_fetch_bad_checksum(tmp_path: Path, published, via: str) -> None:
    src, sums = published
    dest = tmp_path / "dest"
    wrong = dict(sums, **{"b-idx1-ubyte.gz": "0" * 64})
    kwargs = {"local_dir": src} if via == "local_dir" else {}
    with pytest.raises(DataFormatError) as info:
        fetch_idx_files(src.as_uri(), wrong, dest, **kwargs)
    msg = str(info.value)
    assert msg.startswith("b-idx1-ubyte.gz: sha256 mismatch")
    assert f"expected {'0' * 64}, got {sums['b-idx1-ubyte.gz']}" in msg
    assert [p.name for p in dest.iterdir()] == ["a-idx1-ubyte.gz"]  # only the verified one


def test_fetch_skips_verified_and_replaces_damaged(tmp_path: Path, published) -> None:
    src, sums = published
    dest = tmp_path / "dest"
    fetch_idx_files("unused://", sums, dest, local_dir=src)
    (src / "a-idx1-ubyte.gz").unlink()  # a second fetch must not need the source again
    (dest / "b-idx1-ubyte.gz").write_bytes(b"damaged")
    fetch_idx_files("unused://", sums, dest, local_dir=src)
    assert (dest / "b-idx1-ubyte.gz").read_bytes() == b"second"


def test_fetch_rejects_path_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must be a plain name"):
        fetch_idx_files("unused://", {"../evil": "0" * 64}, tmp_path, local_dir=tmp_path)


# --- the bundled MNIST ------------------------------------------------------------------------


def test_bundled_mnist() -> None:
    assert MNIST_DIR.is_dir()
    ds = load_mnist()
    assert ds.name == "mnist"
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.x_test.min() >= 0.0 and ds.x_test.max() <= 1.0
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
