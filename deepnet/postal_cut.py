"""Training digits cut by deepnet's own segmenter out of synthetic strips of MNIST training digits.

A model trained on MNIST alone meets, when reading codes, digits that :mod:`deepnet.postal`
cut out of pictures: cropped, re-centred and re-scaled by it, sometimes with a neighbour's
stroke. :func:`cut_training_digits` makes such digits with their labels: it writes strips of
MNIST *training* digits (:func:`deepnet.postal_set.compose_strip`), cuts them with a
:class:`~deepnet.postal.CodeReader` and keeps each digit whose box matches the one it was
written in. Training the contrib ``POSTAL`` recipe on MNIST plus 14,898 of them (3,000 strips,
seed 1234, cut with the default recipe's model) raised the codes read exactly on the postal
evaluation set from 92.00% to 94.00% (README, *Reading postal codes*).

:func:`write_cut_set` (``deepnet postal cut-set``) writes MNIST plus the cut digits as an
MNIST-layout IDX directory for ``deepnet train --data-dir``. The postal sets
(:func:`deepnet.postal_set.synthesize`) are made of MNIST's *test* digits, so none of their
digits is ever trained on.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deepnet._extras import require
from deepnet.core.data import MNIST_FILES, read_idx_split, write_idx
from deepnet.core.errors import DataFormatError, InvalidArgumentError
from deepnet.postal import CodeReader
from deepnet.postal_set import compose_strip

__all__ = [
    "MANIFEST",
    "CutDigits",
    "check_out_dir",
    "cut_training_digits",
    "matches",
    "mnist_train_digits",
    "write_cut_set",
]

Box = tuple[int, int, int, int]

#: Digits per strip, as the postal sets' codes.
STRIP_LENGTH = 5
#: What write_cut_set writes beside the four IDX files: how the set was made.
MANIFEST = "cut-set.json"
#: A training image with no pixel at least this bright has no strokes to draw in a strip.
_MIN_INK = 64


def _covers(found: Box, true: Box) -> bool:
    """Whether the found box overlaps 60% of the true box's area."""
    (t, left, b, r), (tt, tl, tb, tr) = found, true
    inter = max(0, min(b, tb) - max(t, tt)) * max(0, min(r, tr) - max(left, tl))
    return inter >= 0.6 * (tb - tt) * (tr - tl)


def matches(found: Box, true: Box) -> bool:
    """Whether a found box ``(top, left, bottom, right)`` is the digit written in ``true``:
    its centre lies in the true box and the two overlap by 60% of the true box's area."""
    (t, left, b, r), (tt, tl, tb, tr) = found, true
    centred = tt <= (t + b) / 2 <= tb and tl <= (left + r) / 2 <= tr
    return centred and _covers(found, true)


def _kept(found: Sequence[Box], true: Sequence[Box]) -> list[tuple[int, int]]:
    """``(found index, true index)`` of the found digits that match a true box that no other
    found digit matches, and cover no other true box (a cut holding two digits is neither)."""
    pairs = [(k, j) for k, f in enumerate(found) for j, t in enumerate(true) if matches(f, t)]
    per_true = collections.Counter(j for _, j in pairs)
    return [
        (k, j)
        for k, j in pairs
        if per_true[j] == 1 and not any(_covers(found[k], t) for i, t in enumerate(true) if i != j)
    ]


class CutDigits(NamedTuple):
    """Digits cut right out of strips: images ``x`` ``(N, 784)`` uint8 (MNIST-style, 0..255),
    labels ``y`` ``(N,)`` int64, and how many digits the strips held (``N`` were kept)."""

    x: np.ndarray
    y: np.ndarray
    composed: int


def mnist_train_digits() -> tuple[np.ndarray, np.ndarray]:
    """MNIST's training images ``(60000, 28, 28)`` uint8 and labels ``(60000,)``."""
    from deepnet.datasets import MNIST_DIR

    return read_idx_split(MNIST_DIR, "train")


def _digit_pools(images: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The indices of each digit 0-9's images, checked to be drawable."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InvalidArgumentError(
            f"images must be uint8 of shape (N, H, W), got {images.dtype} of shape {images.shape}"
        )
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"labels must be integers of shape ({len(images)},), got {labels.dtype} of shape "
            f"{labels.shape}"
        )
    inked = images.reshape(len(images), -1).max(axis=1, initial=0) >= _MIN_INK
    pools = [np.flatnonzero((labels == d) & inked) for d in range(10)]
    missing = [d for d, pool in enumerate(pools) if not len(pool)]
    if missing:
        raise InvalidArgumentError(
            f"strips of digits need images of every digit 0-9; none (with ink) of "
            f"{', '.join(map(str, missing))}"
        )
    return pools


def cut_training_digits(
    reader: CodeReader,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    codes: int = 3000,
    seed: int = 1234,
    *,
    jobs: int = 1,
    progress: Callable[[int], Any] | None = None,
) -> CutDigits:
    """Digits cut by ``reader`` out of ``codes`` strips of 5 of ``images``, with their labels.

    ``images`` ``(N, H, W)`` uint8 and ``labels`` ``(N,)`` default to MNIST's training set
    (never its test digits: the postal sets are made of those). Each strip is a random code
    written by :func:`~deepnet.postal_set.compose_strip` and cut by ``reader.segment`` (give
    it ``expect_digits=5``); a cut digit is kept, with the label of the digit written there,
    when its box :func:`matches` that digit's box, no other cut digit's does, and it covers
    no other digit's box (a cut holding two digits is neither). The same ``seed`` gives the
    same strips, whatever ``jobs`` (processes that cut while this one composes). ``progress``
    is called with 1 after each strip (a click progress bar's ``update``).
    """
    if images is None and labels is None:
        images, labels = mnist_train_digits()
    elif images is None or labels is None:
        raise InvalidArgumentError("give both images and labels, or neither (MNIST's training set)")
    if isinstance(codes, bool) or codes < 1:
        raise InvalidArgumentError(f"codes must be at least 1, got {codes!r}")
    if jobs < 1:
        raise InvalidArgumentError(f"jobs must be at least 1, got {jobs!r}")
    pools = _digit_pools(images, labels)
    rng = np.random.default_rng(seed)
    written: collections.deque[tuple[np.ndarray, list[Box]]] = collections.deque()

    def strips() -> Iterator[np.ndarray]:
        # One random stream, drawn here in order: the strips do not depend on ``jobs``.
        for _ in range(codes):
            code = rng.integers(0, 10, STRIP_LENGTH)
            picture, boxes = compose_strip([images[rng.choice(pools[d])] for d in code], rng)
            written.append((code, boxes))
            yield picture

    require("threadpoolctl")
    from threadpoolctl import threadpool_limits

    xs, ys = [], []
    # One BLAS thread per process, as CodeReader.read_many: the products are small.
    with threadpool_limits(limits=1, user_api="blas"):
        for cut in reader.segment_many(strips(), jobs=jobs, chunksize=4):
            # Cuts come back in order; a strip is recorded before it is handed out.
            code, boxes = written.popleft()
            for k, j in _kept(cut.boxes, boxes):
                xs.append(np.clip(np.rint(cut.digits[k]), 0, 255).astype(np.uint8).ravel())
                ys.append(int(code[j]))
            if progress is not None:
                progress(1)
    x = np.stack(xs) if xs else np.zeros((0, 28 * 28), dtype=np.uint8)
    return CutDigits(x, np.array(ys, dtype=np.int64), codes * STRIP_LENGTH)


def _written_by_us(directory: Path) -> bool:
    names = {f"{stem}.gz" for stem in MNIST_FILES.values()} | {MANIFEST}
    return all(p.name in names and p.is_file() for p in directory.iterdir())


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an output directory that would lose someone's files (InvalidArgumentError): one
    that exists and is not empty, unless ``force`` and it holds only an earlier cut set."""
    if out.is_symlink():  # a rename would replace the link, not fill what it points to
        raise InvalidArgumentError(f"{out}: is a symbolic link; give the directory itself")
    if not out.exists():
        return
    if not out.is_dir():
        raise InvalidArgumentError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not force:
        raise InvalidArgumentError(
            f"{out}: exists and is not empty; give a new directory (or --force to replace a "
            "cut set written before)"
        )
    if not _written_by_us(out):
        raise InvalidArgumentError(
            f"{out}: holds files other than a cut set's ({MANIFEST} and the four IDX files); "
            "not replacing it, even with --force"
        )


def _install(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished directory ``tmp`` to ``out``: readers see all of it or none."""
    check_out_dir(out, force)  # again: something may have appeared while we cut
    if out.exists() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
        os.replace(out, old)  # onto an empty directory, which rename may replace
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)  # onto nothing, or onto an empty directory


def write_cut_set(
    out_dir: str | os.PathLike[str],
    reader: CodeReader,
    *,
    codes: int = 3000,
    seed: int = 1234,
    data_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    jobs: int = 1,
    progress: Callable[[int], Any] | None = None,
    cutter: str = "",
) -> dict[str, Any]:
    """Write ``data_dir``'s training set plus digits cut from its strips as an IDX directory.

    ``out_dir`` gets the four MNIST-layout files (``.gz``) that
    :func:`~deepnet.core.data.load_idx_dir` and ``deepnet train --data-dir`` read: training
    images ``(N + K, 28, 28)`` = ``data_dir``'s ``N`` followed by the ``K`` kept by
    :func:`cut_training_digits` (strips of its training digits), the test set copied
    unchanged, and :data:`MANIFEST` saying how it was made. ``data_dir`` defaults to the
    bundled MNIST. The directory is built beside ``out_dir`` and renamed into place, so a
    failure leaves nothing half-written. An existing ``out_dir`` must be empty, or, with
    ``force``, hold only an earlier cut set (it is replaced). Returns the manifest
    (``kept``, ``composed``, sizes, ``seconds``).
    """
    from deepnet.datasets import MNIST_DIR

    out = Path(out_dir)
    check_out_dir(out, force)
    base = Path(MNIST_DIR if data_dir is None else data_dir)
    x_train, y_train = read_idx_split(base, "train")
    x_test, y_test = read_idx_split(base, "test")
    for name, x in (("training", x_train), ("test", x_test)):
        if x.shape[1:] != (28, 28):
            raise DataFormatError(
                f"{base}: {name} images are {x.shape[1]}x{x.shape[2]}; cut digits are 28x28"
            )
    for name, y in (("training", y_train), ("test", y_test)):
        if len(y) and not 0 <= y.min() <= y.max() <= 255:
            raise DataFormatError(f"{base}: {name} labels outside 0-255 do not fit IDX's uint8")
    start = time.perf_counter()
    cut = cut_training_digits(reader, x_train, y_train, codes, seed, jobs=jobs, progress=progress)
    seconds = time.perf_counter() - start
    manifest = {
        "base": "the bundled MNIST" if data_dir is None else str(base.resolve()),
        "cutter": cutter,
        "codes": codes,
        "seed": seed,
        "composed": cut.composed,
        "kept": len(cut.y),
        "train": {"base": len(y_train), "cut": len(cut.y), "total": len(y_train) + len(cut.y)},
        "test": len(y_test),
        "seconds": seconds,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
    try:
        arrays = {
            "train_images": np.concatenate([x_train, cut.x.reshape(-1, 28, 28)]),
            "train_labels": np.concatenate([y_train, cut.y]).astype(np.uint8),
            "test_images": x_test,
            "test_labels": y_test.astype(np.uint8),
        }
        for role, array in arrays.items():
            write_idx(tmp / f"{MNIST_FILES[role]}.gz", array)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; data directories are for everyone
        _install(tmp, out, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest
