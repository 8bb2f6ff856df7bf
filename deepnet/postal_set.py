"""A synthetic postal-code set from the MNIST test digits, and reading accuracy measured on it.

:func:`compose_strip` writes a code as a strip of handwritten digits the way envelopes vary:
random size, spacing (sometimes touching), vertical jitter, stroke thickness, slight rotation,
blur, paper and ink levels, noise and specks, and either polarity. :func:`synthesize` saves N
such strips as PNGs with a CSV of the true codes; :func:`evaluate_set` reads them back with a
:class:`~deepnet.postal.CodeReader` and reports whole-code and digit accuracy, the accuracy
among accepted codes at each rejection rate, and the throughput.

Only MNIST's *test* digits are used, so a model trained on MNIST's training set never saw them.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from deepnet._extras import require
from deepnet.core.errors import DataFormatError
from deepnet.postal import CodeReader, turn, turn_boxes

CSV_NAME = "codes.csv"
#: Rejection rates (share of codes sent to a human) at which evaluate_set reports accuracy.
REJECTION_RATES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


def mnist_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test images ``(10000, 28, 28)`` uint8 and labels ``(10000,)``."""
    from deepnet.core.data import read_idx_split
    from deepnet.datasets import MNIST_DIR

    return read_idx_split(MNIST_DIR, "test")


def render_digit(
    image: np.ndarray, height: int, angle: float = 0.0, thickness: int = 0
) -> np.ndarray:
    """An MNIST digit ``(28, 28)`` as ink ``(h, w)`` in 0..1, rotated, ``height`` px tall.

    ``thickness`` > 0 thickens the strokes by that many pixels, < 0 thins them.
    """
    pil = require("PIL.Image")
    ndimage = require("scipy.ndimage")
    resampling = getattr(pil, "Resampling", pil)
    a = turn(np.asarray(image, dtype=np.float32) / 255.0, angle)
    rows, cols = np.flatnonzero((a > 0.1).any(axis=1)), np.flatnonzero((a > 0.1).any(axis=0))
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = height / a.shape[0]
    size = (max(1, round(a.shape[1] * scale)), height)
    a = np.asarray(pil.fromarray(a, mode="F").resize(size, resampling.BILINEAR))
    if thickness > 0:
        a = ndimage.grey_dilation(a, size=(thickness + 1, thickness + 1))
    elif thickness < 0:
        a = ndimage.grey_erosion(a, size=(1 - thickness, 1 - thickness))
    return np.clip(a, 0.0, 1.0)


def compose_strip(
    images: Sequence[np.ndarray], rng: np.random.Generator, touch_rate: float = 0.1
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The digits ``images`` (each 28×28, MNIST-style) written as one strip picture.

    Returns the picture ``(H, W)`` uint8 (dark on light or light on dark) and each digit's
    box ``(top, left, bottom, right)``. With probability ``touch_rate`` a digit is pushed
    into its left neighbour until their boxes overlap.
    """
    ndimage = require("scipy.ndimage")
    height = int(rng.integers(24, 65))
    thickness = int(rng.choice([-1, 0, 0, 1, 2])) if height >= 36 else int(rng.choice([0, 0, 1]))
    glyphs = [
        render_digit(
            im,
            max(8, round(height * rng.uniform(0.9, 1.1))),
            angle=float(rng.uniform(-3, 3)),  # each digit wobbles a little
            thickness=thickness,
        )
        for im in images
    ]
    margin = int(rng.integers(4, 24))
    jitter = 0.08 * height
    canvas_h = round(max(g.shape[0] for g in glyphs) + 2 * jitter + 2 * margin)
    canvas_w = sum(g.shape[1] for g in glyphs) + round(0.6 * height) * len(glyphs) + 2 * margin
    ink = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    boxes = []
    x = margin
    for k, g in enumerate(glyphs):
        h, w = g.shape
        if k:
            touch = rng.random() < touch_rate
            # Touching: the boxes overlap by a pixel or two, so the strokes may meet.
            x += -int(rng.integers(0, 3)) if touch else round(rng.uniform(0.08, 0.5) * height)
        top = round(margin + jitter + rng.uniform(-jitter, jitter))
        ink[top : top + h, x : x + w] = np.maximum(ink[top : top + h, x : x + w], g)
        rows, cols = np.flatnonzero((g > 0.25).any(axis=1)), np.flatnonzero((g > 0.25).any(axis=0))
        boxes.append((top + rows[0], x + cols[0], top + rows[-1] + 1, x + cols[-1] + 1))
        x += w
    ink = ink[:, : x + margin]
    # The whole line tilted, as an envelope fed in at a slight angle.
    ink, boxes = _rotated(ink, boxes, float(rng.uniform(-6, 6)))
    if rng.random() < 0.5:  # a soft scan
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.3, 0.9))
    paper, pen = rng.uniform(170, 250), rng.uniform(0, 90)
    picture = paper + (pen - paper) * ink
    picture += rng.normal(0.0, rng.uniform(0, 10), picture.shape)
    if rng.random() < 0.3:  # dust: specks of one or two pixels
        n = int(rng.integers(1, 12))
        ys, xs = rng.integers(0, picture.shape[0] - 1, n), rng.integers(0, picture.shape[1] - 1, n)
        for y, xx in zip(ys, xs, strict=True):
            s = int(rng.integers(1, 3))
            picture[y : y + s, xx : xx + s] = pen
    if rng.random() < 0.5:
        picture = 255.0 - picture
    boxes = [tuple(int(v) for v in b) for b in boxes]
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8), boxes


def _rotated(
    ink: np.ndarray, boxes: list[tuple[int, int, int, int]], angle: float
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    turned = turn(ink, angle)
    return turned, turn_boxes(boxes, angle, ink.shape, turned.shape)


@attrs.frozen
class Strip:
    """One composed code: the picture ``(H, W)`` uint8, the code, the MNIST test indices of
    its digits and their true boxes ``(top, left, bottom, right)``."""

    picture: np.ndarray
    code: str
    indices: tuple[int, ...]
    boxes: tuple[tuple[int, int, int, int], ...]


def compose_set(count: int, *, length: int = 5, seed: int = 0) -> Iterator[Strip]:
    """The strips :func:`synthesize` writes for ``count`` and ``seed``, in order, with what
    the PNGs leave out: which MNIST digits they hold and where (to tell cut errors from
    misreadings, ``benchmarks/postal_errors.py``)."""
    images, labels = mnist_test_digits()
    by_digit = [np.flatnonzero(labels == d) for d in range(10)]
    rng = np.random.default_rng(seed)
    for _ in range(count):
        code = rng.integers(0, 10, length)
        indices = tuple(int(rng.choice(by_digit[d])) for d in code)
        picture, boxes = compose_strip([images[k] for k in indices], rng)
        yield Strip(picture, "".join(map(str, code)), indices, tuple(boxes))


def synthesize(directory: str | Path, count: int, *, length: int = 5, seed: int = 0) -> Path:
    """Write ``count`` strips of ``length`` MNIST test digits as PNGs plus ``codes.csv``.

    The CSV has columns ``file, code`` (codes as text, leading zeros kept). Returns its path.
    """
    pil = require("PIL.Image")
    if count < 1 or length < 1:
        raise DataFormatError(f"need at least one code of one digit, got {count} x {length}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    width = len(str(count - 1))
    for i, strip in enumerate(compose_set(count, length=length, seed=seed)):
        name = f"code-{i:0{width}d}.png"
        pil.fromarray(strip.picture).save(out / name)
        rows.append((name, strip.code))
    path = out / CSV_NAME
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "code"])
        writer.writerows(rows)
    tmp.replace(path)
    return path


def read_set(directory: str | Path) -> list[tuple[Path, str]]:
    """The ``(picture path, true code)`` pairs listed in ``directory/codes.csv``."""
    path = Path(directory) / CSV_NAME
    if not path.is_file():
        raise DataFormatError(
            f"{path}: no such file; make a set with: deepnet postal synth {directory}"
        )
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"file", "code"} <= set(reader.fieldnames):
            raise DataFormatError(f"{path}: expected the columns file,code")
        # A short row leaves None in the cells it lacks.
        rows = [(r["file"] or "", (r["code"] or "").strip()) for r in reader]
    for n, (name, code) in enumerate(rows, 2):
        if not name or not (code.isascii() and code.isdigit()):  # isdigit alone takes "²"
            raise DataFormatError(f"{path}:{n}: expected a file and a code of digits 0-9")
    pairs = [(path.parent / name, code) for name, code in rows]
    if not pairs:
        raise DataFormatError(f"{path}: lists no codes")
    return pairs


def accuracy_at_rejection(
    correct: np.ndarray, confidence: np.ndarray, rate: float
) -> tuple[float, float]:
    """Accuracy among the codes kept when the ``rate`` least confident are rejected.

    Returns ``(accuracy, confidence threshold)``: the accepted codes are those at or above it
    (NaN and infinity when all are rejected).
    """
    kept = accepted(confidence, rate)
    if not len(kept):
        return float("nan"), float("inf")
    threshold = float(confidence[kept[0]]) if len(kept) < len(correct) else 0.0
    return float(correct[kept].mean()), threshold


def accepted(confidence: np.ndarray, rate: float) -> np.ndarray:
    """Indices of the codes kept when the ``rate`` least confident of ``confidence`` ``(n,)``
    are rejected, least confident first (ties: the earlier code is rejected first)."""
    rejected = int(np.floor(rate * len(confidence) + 1e-9))
    return np.argsort(confidence, kind="stable")[rejected:]


def _cpu_time() -> float:
    """CPU seconds used by this process and its finished children."""
    import resource

    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def evaluate_set(
    reader: CodeReader, directory: str | Path, limit: int | None = None, jobs: int = 1
) -> dict[str, Any]:
    """Read every code of a synthetic set (in ``jobs`` processes) and score the reads."""
    pairs = read_set(directory)[:limit]
    start, cpu_start = time.perf_counter(), _cpu_time()
    reads = reader.read_many([p for p, _ in pairs], jobs=jobs)
    seconds = time.perf_counter() - start
    # On a shared machine the wall clock also counts other programs' turns; CPU time does not.
    cpu_seconds = _cpu_time() - cpu_start
    truth = [c for _, c in pairs]
    pairs_read = list(zip(reads, truth, strict=True))
    correct = np.array([r.code == t for r, t in pairs_read])
    # Position by position; a code read too short or too long loses the digits it misses.
    digits_right = sum(sum(a == b for a, b in zip(r.code, t, strict=False)) for r, t in pairs_read)
    confidence = np.array([r.confidence for r in reads])
    accepted = np.array([not r.needs_human for r in reads])
    table = []
    for rate in REJECTION_RATES:
        acc, threshold = accuracy_at_rejection(correct, confidence, rate)
        table.append({"rejection": rate, "threshold": threshold, "accuracy": acc})
    return {
        "codes": len(pairs),
        "code_accuracy": float(correct.mean()),
        "digit_accuracy": digits_right / sum(len(t) for t in truth),
        "right_length": float(np.mean([len(r.code) == len(t) for r, t in pairs_read])),
        "rejection_table": table,
        "min_confidence": reader.min_confidence,
        "rejected": float(1.0 - accepted.mean()),
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else float("nan"),
        "seconds": seconds,
        "codes_per_second": len(pairs) / seconds if seconds > 0 else float("inf"),
        "cpu_seconds": cpu_seconds,
        "codes_per_cpu_second": len(pairs) / cpu_seconds if cpu_seconds > 0 else float("inf"),
        "jobs": jobs,
        "errors": [
            {"file": str(p), "true": t, "read": r.code, "confidence": r.confidence}
            for (p, t), r in zip(pairs, reads, strict=True)
            if r.code != t
        ],
    }
