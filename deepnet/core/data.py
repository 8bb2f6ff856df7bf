"""Loading IDX data sets (MNIST layout), normalization, hold-out splits and verified downloads.

Every problem with a data file is a :class:`DataFormatError` whose one-line message starts with
the file's path, so a user can tell which of several files is damaged.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import attrs
import numpy as np
from numpy.typing import DTypeLike

from deepnet.core.errors import DataFormatError, DeepnetError, InvalidArgumentError

__all__ = [
    "FASHION_MNIST",
    "IDX_DTYPES",
    "MNIST_FILES",
    "NORMALIZATIONS",
    "Dataset",
    "IdxSource",
    "fetch_idx_files",
    "load_idx_dir",
    "read_idx",
    "read_idx_split",
    "train_dev_split",
    "write_idx",
]

StrPath = str | os.PathLike[str]

# IDX type code -> big-endian dtype, as in the format's definition (yann.lecun.com/exdb/mnist).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_MAX_NDIM = 4  # the format allows 255, but more than 4 in practice means a corrupt header
_GZIP_MAGIC = b"\x1f\x8b"

# Role -> file name without ".gz", in the layout MNIST, Fashion-MNIST and KMNIST share.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

NORMALIZATIONS = ("scale", "standardize", "none")


def _type_names() -> str:
    return ", ".join(f"0x{code:02X} {dt.name}" for code, dt in IDX_DTYPES.items())


def read_idx(path: StrPath) -> np.ndarray:
    """Read an IDX file, gzipped or raw, into a native-endian array of the shape in its header.

    Gzip is detected by the magic bytes, not the extension. Raises DataFormatError (message:
    path and problem) for a bad magic number, type code or dimension count, a data length that
    differs from the header's, or a corrupt gzip stream; FileNotFoundError if it does not exist.
    """
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:2] == _GZIP_MAGIC:
        try:
            buf = gzip.decompress(buf)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{path}: corrupt gzip stream: {exc}") from exc

    if len(buf) < 4:
        raise DataFormatError(f"{path}: too short for an IDX header ({len(buf)} bytes)")
    if buf[0] != 0 or buf[1] != 0:
        raise DataFormatError(
            f"{path}: not an IDX file: magic number starts {buf[:4].hex(' ')}, "
            "expected 00 00 <type> <ndim>"
        )
    code, ndim = buf[2], buf[3]
    if code not in IDX_DTYPES:
        raise DataFormatError(
            f"{path}: unsupported IDX type code 0x{code:02X} (supported: {_type_names()})"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise DataFormatError(
            f"{path}: IDX header says {ndim} dimensions, expected 1 to {_MAX_NDIM}"
        )
    offset = 4 + 4 * ndim
    if len(buf) < offset:
        raise DataFormatError(
            f"{path}: truncated header: {ndim} dimensions need {offset} bytes, file has {len(buf)}"
        )
    shape = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    # Python ints, so a corrupt header with huge dims cannot overflow the byte count.
    expected = math.prod(shape) * dtype.itemsize
    found = len(buf) - offset
    if found != expected:
        problem = "truncated" if found < expected else f"{found - expected} trailing bytes"
        kind = "" if dtype.itemsize == 1 else f" {dtype.itemsize}-byte {dtype.name}"
        raise DataFormatError(
            f"{path}: {problem}: header says {'x'.join(map(str, shape))}{kind} = "
            f"{expected} bytes of data, file has {found}"
        )
    data = np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=offset)
    # astype copies: the result is writable, native-endian and does not pin the file's buffer.
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path: StrPath, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``); return the path.

    The dtype must be one IDX holds (uint8, int8, int16, int32, float32, float64; MNIST's
    images and labels are uint8) and the array have 1 to 4 dimensions, each under 2**32;
    anything else is an InvalidArgumentError (cast labels to uint8 first). The file is written
    beside ``path`` and renamed into place, so a reader never sees half of it; the gzip header
    holds no name or time stamp, so the same array gives the same bytes.
    """
    path = Path(path)
    a = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(a.dtype.newbyteorder("="))
    if code is None:
        raise InvalidArgumentError(
            f"{path}: IDX cannot hold {a.dtype} data, only {_type_names()}; cast the array "
            "to one of them (labels 0-255: .astype(np.uint8))"
        )
    # The format allows 255 dimensions, but read_idx takes a larger count for a corrupt header.
    if not 1 <= a.ndim <= _MAX_NDIM:
        raise InvalidArgumentError(
            f"{path}: an IDX array needs 1 to {_MAX_NDIM} dimensions (as read_idx reads), "
            f"got shape {a.shape}"
        )
    if max(a.shape) >= 2**32:
        raise InvalidArgumentError(
            f"{path}: IDX sizes are 32-bit, at most {2**32 - 1} per dimension; got shape {a.shape}"
        )
    header = bytes([0, 0, code, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
    data = np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if path.name.endswith(".gz"):
                # Level 6: 9.8 MB for MNIST's training images in 1.6 s; level 9 saves 2% in 13x
                # the time. No name (it would be the temporary one) and no time in the header.
                with gzip.GzipFile("", "wb", compresslevel=6, fileobj=f, mtime=0) as gz:
                    gz.write(header)
                    gz.write(data)
            else:
                f.write(header)
                f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; data files are for everyone
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _array_repr(a: np.ndarray) -> str:
    return f"array(shape={a.shape}, dtype={a.dtype})"


@attrs.frozen(eq=False)  # eq on arrays is ambiguous; compare the fields explicitly instead
class Dataset:
    """A train/test data set: x_* (N, H*W) or (N, H, W) floats, y_* (N,) int64 labels."""

    x_train: np.ndarray = attrs.field(repr=_array_repr)
    y_train: np.ndarray = attrs.field(repr=_array_repr)
    x_test: np.ndarray = attrs.field(repr=_array_repr)
    y_test: np.ndarray = attrs.field(repr=_array_repr)
    name: str = ""
    normalization: str = "none"


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{directory}: missing {stem} (or {stem}.gz); an IDX data directory needs "
        f"{', '.join(MNIST_FILES.values())}"
    )


def _read_images(path: Path) -> np.ndarray:
    x = read_idx(path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataFormatError(
            f"{path}: expected uint8 images of shape (N, H, W), got {x.dtype} of shape {x.shape}"
        )
    return x


def _read_labels(path: Path, images: np.ndarray, images_path: Path) -> np.ndarray:
    y = read_idx(path)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataFormatError(
            f"{path}: expected integer labels of shape (N,), got {y.dtype} of shape {y.shape}"
        )
    if len(y) != len(images):
        raise DataFormatError(
            f"{images_path} has {len(images)} images but {path} has {len(y)} labels"
        )
    return y.astype(np.int64)


def read_idx_split(directory: StrPath, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split ("train" or "test") of an MNIST-layout directory: images (N, H, W) uint8 and
    labels (N,) int64, reading only that split's two files."""
    if split not in ("train", "test"):
        raise InvalidArgumentError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such data directory")
    images = _find(directory, MNIST_FILES[f"{split}_images"])
    x = _read_images(images)
    return x, _read_labels(_find(directory, MNIST_FILES[f"{split}_labels"]), x, images)


def pixel_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std (float64, shape ``x_train.shape[1:]``) of training images.

    Constant pixels get std 1: they carry no information, and 0/0 would be NaN.
    """
    n = max(len(x_train), 1)
    mean = x_train.sum(axis=0, dtype=np.float64) / n
    sq = np.zeros(x_train.shape[1:], dtype=np.float64)
    # Two-pass variance in row chunks: stable, and never a float64 copy of the whole set
    # (chunks of 1024 MNIST rows are 6 MB in float64).
    for start in range(0, len(x_train), 1024):
        sq += ((x_train[start : start + 1024] - mean) ** 2).sum(axis=0)
    std = np.sqrt(sq / n)
    std[std == 0] = 1.0
    return mean, std


def normalize_pixels(
    x: np.ndarray,
    method: str,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: DTypeLike = "float32",
) -> np.ndarray:
    """Raw pixels (0..255) as a new ``dtype`` array normalized by ``method``.

    "scale" divides by 255, "standardize" uses ``stats`` = :func:`pixel_stats` of the
    training set (so test and new data are standardized as the training data was), "none"
    only casts.
    """
    if method not in NORMALIZATIONS:
        raise DeepnetError(
            f"unknown normalization {method!r}; choose one of {', '.join(NORMALIZATIONS)}"
        )
    out = np.array(x, dtype=dtype, copy=True)
    # In place: no float64 temporary of the whole set.
    if method == "scale":
        out /= 255
    elif method == "standardize":
        if stats is None:
            raise DeepnetError("standardize needs the training set's per-pixel mean and std")
        mean, std = stats
        out -= mean.reshape(out.shape[1:]).astype(out.dtype)
        out /= std.reshape(out.shape[1:]).astype(out.dtype)
    return out


def _normalize_pair(
    x_train: np.ndarray, x_test: np.ndarray, method: str, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    # Training-set statistics only, so test data stays unseen.
    stats = pixel_stats(x_train) if method == "standardize" else None
    return normalize_pixels(x_train, method, stats, dtype), normalize_pixels(
        x_test, method, stats, dtype
    )


def load_idx_dir(
    directory: StrPath,
    *,
    normalize: str = "scale",
    dtype: DTypeLike = "float32",
    flatten: bool = True,
    name: str | None = None,
) -> Dataset:
    """Load the four MNIST-layout IDX files (each raw or ``.gz``) from ``directory``.

    Images (N, H, W) uint8 become x_* of shape (N, H*W) (or (N, H, W) if not ``flatten``) and
    ``dtype``; labels become (N,) int64. ``normalize``: "scale" (pixels / 255), "standardize"
    (per-pixel mean 0, std 1 using training-set statistics; constant pixels get std 1) or
    "none" (raw values cast to ``dtype``). ``name`` defaults to the directory's name.
    """
    if normalize not in NORMALIZATIONS:
        raise InvalidArgumentError(
            f"unknown normalize {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}"
        )
    dt = np.dtype(dtype)
    if normalize != "none" and dt.kind != "f":
        raise InvalidArgumentError(f"normalize={normalize!r} needs a floating dtype, got {dt.name}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such data directory")
    # Every file is looked for first, so that a missing one fails before minutes of reading.
    paths = {role: _find(directory, stem) for role, stem in MNIST_FILES.items()}
    x_train, y_train = read_idx_split(directory, "train")
    x_test, y_test = read_idx_split(directory, "test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataFormatError(
            f"{paths['test_images']}: images are {x_test.shape[1]}x{x_test.shape[2]} but "
            f"{paths['train_images']} has {x_train.shape[1]}x{x_train.shape[2]}"
        )
    x_train, x_test = _normalize_pair(x_train, x_test, normalize, dt)
    if flatten:
        x_train = x_train.reshape(len(x_train), -1)
        x_test = x_test.reshape(len(x_test), -1)
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        name=directory.name if name is None else name,
        normalization=normalize,
    )


def train_dev_split(
    x: np.ndarray, y: np.ndarray, dev_fraction: float, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Randomly hold out round(N * dev_fraction) rows: (x_train, y_train, x_dev, y_dev).

    x is (N, ...), y is (N, ...). ``dev_fraction`` must be in [0, 1); at least one row stays in
    training. The same ``seed`` gives the same split; None draws a fresh one.
    """
    if len(x) != len(y):
        raise InvalidArgumentError(f"x has {len(x)} rows but y has {len(y)}; they must match")
    # `not (0 <= f < 1)` also rejects NaN, which fails every comparison.
    if isinstance(dev_fraction, bool) or not 0 <= dev_fraction < 1:
        raise InvalidArgumentError(f"dev_fraction must be in [0, 1), got {dev_fraction!r}")
    n = len(x)
    n_dev = min(round(n * dev_fraction), max(n - 1, 0))
    perm = np.random.default_rng(seed).permutation(n)
    train, dev = perm[n_dev:], perm[:n_dev]
    return x[train], y[train], x[dev], y[dev]


@attrs.frozen
class IdxSource:
    """Where a data set's IDX files are published: ``base_url`` and file name -> sha256."""

    base_url: str
    files: dict[str, str]


# sha256 as pinned by tensorflow/datasets (url_checksums/fashion_mnist.txt) for this host, the
# one Zalando's README links to; Zalando itself publishes only MD5s. Plain http is acceptable
# because fetch_idx_files keeps nothing whose digest does not match.
FASHION_MNIST = IdxSource(
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    files={
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _copy_verified(src: IO[bytes], target: Path, expected: str, source: str) -> None:
    # Write beside the target so the final rename is atomic on the same file system.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        actual = h.hexdigest()
        if actual != expected:
            raise DataFormatError(
                f"{target.name}: sha256 mismatch for {source}: expected {expected}, got {actual}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; data files are for everyone
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_idx_files(
    base_url: str,
    files: Mapping[str, str],
    directory: StrPath,
    *,
    local_dir: StrPath | None = None,
    timeout: float = 60.0,
) -> Path:
    """Put each ``files`` name (-> expected sha256) into ``directory``; return the directory.

    Files come from ``base_url`` + name (any urllib URL, e.g. https:// or file://), or are copied
    from ``local_dir`` when given. A file is moved into place only once its sha256 matches
    (else DataFormatError naming the file and both digests; nothing is left behind). Files
    already present with the right digest are not fetched again.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, digest in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise InvalidArgumentError(f"file name {name!r} must be a plain name, not a path")
        expected = digest.lower()
        target = directory / name
        if target.is_file() and _sha256(target) == expected:
            continue
        if local_dir is not None:
            src_path = Path(local_dir) / name
            with open(src_path, "rb") as src:
                _copy_verified(src, target, expected, str(src_path))
        else:
            url = base_url.rstrip("/") + "/" + name
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except OSError as exc:  # URLError is an OSError; say which URL failed
                raise OSError(f"{url}: download failed: {exc}") from exc
            with response:
                _copy_verified(response, target, expected, url)
    return directory
