"""Reading a handwritten postal code: binarize a picture, cut it into digits, classify each.

A picture of one digit or of a strip of several (any size, either polarity, some noise,
slight slant) goes through :func:`segment_digits`:

0. *size*: a large picture whose digits are at least twice :data:`READ_HEIGHT` tall (a phone
   photo) is shrunk by a whole factor first (:func:`reduction`); boxes are given back in its pixels;
1. *binarize*: the paper level is the picture's median, ink is what differs from it (light on
   dark after inverting dark-on-light pictures); a lightly smoothed copy is thresholded by Otsu's
   method, so noise that the smoothing averages away never counts as ink;
2. *connected components* (8-connected, ``scipy.ndimage.label``); pieces stacked above one
   another (a 5's detached bar, a broken stroke) are merged, specks are dropped; a digit paler
   than the rest is taken from a fainter threshold (:func:`with_faint_digits`);
3. *touching digits*: a piece much wider than a digit is split where its column profile (ink
   per column) has a clear valley;
4. a known code length (``expect_digits``) forces the count. With a classifier, by
   recognition: wide pieces are over-cut along bent paths crossing little ink
   (:func:`cut_paths`) and :func:`best_grouping` groups the atoms into that
   many digits the way the classifier is surest of; without one, the widest pieces are split at
   their deepest valley and the smallest merged into their nearest neighbour.

Each piece is then normalized by :func:`deepnet.images.mnist_digit` (20×20 box in 28×28, centred
by mass, anti-aliased) and :class:`CodeReader` classifies them all in one batch. A code whose
confidence (:attr:`CodeRead.confidence`: its digits' probabilities multiplied, less for a
digit much shorter than the others) is below ``min_confidence`` is flagged for a human, as a
sorting machine diverts an envelope it cannot read.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from math import ceil
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from deepnet._extras import require
from deepnet.core.errors import DataFormatError, DeepnetError
from deepnet.ensemble import check_combine, pool
from deepnet.images import ink_digit, model_normalizer, read_grayscale

#: Below this ink level (out of 255, after stretching) a picture has no ink at all.
MIN_CONTRAST = 16.0
#: A piece whose area is below this share of the largest one is a speck unless it sits on a digit.
SPECK_AREA = 0.08
#: A piece of the faint mask (ink above this share of the strict level) a digit tall, less
#: than :data:`FAINT` of it in the pieces found, is a faint digit.
FAINT_LEVEL = 0.25
FAINT = 0.3
#: A piece at least this many digit heights wide may be several touching digits.
WIDE = 0.95
#: A piece at least this many digit heights wide is several digits, valley clear or not.
VERY_WIDE = 1.8
#: A column profile valley is clear when its ink is at most this share of the profile's mean.
CLEAR_VALLEY = 0.35
#: This share (percent) of a digit's ink pixels is darker than its stretched stroke level.
STROKE_PERCENTILE = 75.0
#: Penalties (in log probability per digit height) of a candidate digit too wide, shorter
#: than :data:`SHORT` digit heights (a fragment: on the synthetic set, 99.5% of the true
#: digits are 0.92 heights tall or more) or with blank columns inside (:func:`digit_score`).
GROUP_WIDE = 1.0
GROUP_SHORT = 40.0
GROUP_GAP = 2.0
SHORT = 0.85
#: The cost (log probability) of each departure from the first cut into pieces.
REGROUP_COST = 1.0
#: The cost (in ink pixels) of a path cut's step to the next column (:func:`cut_paths`).
BEND_COST = 0.5
#: Pieces wider than this many digit heights are over-cut when the classifier groups them
#: (a 1 touching a narrow digit is this wide), at cuts this many digit heights apart or more.
OVER_CUT = 0.7
CUT_SPACING = 0.25
#: A candidate digit joins at most this many consecutive atoms: a 0 touching its neighbour,
#: or broken in two, is often over-cut into four (3 -> 4: 92.55 -> 92.95% of the codes of
#: the development set of seed 11 with the default model, 90.80 -> 91.10% of seed 7's).
GROUP_ATOMS = 4
#: The first cut's digits are read as they are, not over-cut and regrouped, when it has the
#: expected count, none looks like a fragment or two digits, and the classifier gives each
#: at least this probability (:func:`sure_first_cut`).
SURE = 0.9
#: A line of digits tilted by less than this (degrees) is read as it is.
MIN_TILT = 1.0
#: A picture of more than :data:`SHRINK_PIXELS` pixels whose digits are at least twice
#: :data:`READ_HEIGHT` tall (a phone photo) is shrunk by a whole factor first, leaving them
#: at least that tall: the classifier sees them 20 px tall anyway, and cutting costs time in
#: proportion to the pixels (a 1080×2872 photo: 0.66 s at full size, 0.02 s shrunk). Smaller
#: pictures are cut as they are, whatever their digits' size: there the probe measuring the
#: digits (on a copy of about :data:`PROBE_PIXELS` pixels) would cost more than it saves, and
#: reading digits shrunk to 24..32 px lost 0.5..1 point of whole codes on the synthetic set.
SHRINK_PIXELS = 250_000
READ_HEIGHT = 40
PROBE_PIXELS = 4096
#: Default confidence under which a code is sent to a human.
MIN_CONFIDENCE = 0.9
#: A digit shorter than this share of the line's median digit height is likely a fragment of
#: a wrong cut (digits of one line vary by about 10%); each digit height it falls short costs
#: the code's confidence this much log probability (:func:`height_plausibility`).
SHORT_DIGIT = 0.8
SHORT_COST = 10.0


@attrs.define
class Piece:
    """A part of the picture: a boolean ``mask`` whose top-left corner is at ``(top, left)``."""

    top: int
    left: int
    mask: np.ndarray

    @property
    def bottom(self) -> int:
        return self.top + self.mask.shape[0]

    @property
    def right(self) -> int:
        return self.left + self.mask.shape[1]

    @property
    def height(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)``, bottom and right exclusive."""
        return self.top, self.left, self.bottom, self.right

    def merged(self, other: Piece) -> Piece:
        top, left = min(self.top, other.top), min(self.left, other.left)
        bottom, right = max(self.bottom, other.bottom), max(self.right, other.right)
        mask = np.zeros((bottom - top, right - left), dtype=bool)
        for p in (self, other):
            mask[p.top - top : p.bottom - top, p.left - left : p.right - left] |= p.mask
        return Piece(top, left, mask).trimmed()

    def split(self, column: int) -> tuple[Piece, Piece]:
        """The parts left and right of ``column`` (relative to ``left``)."""
        a = Piece(self.top, self.left, self.mask[:, :column]).trimmed()
        b = Piece(self.top, self.left + column, self.mask[:, column:]).trimmed()
        return a, b

    def cut(self, paths: Sequence[np.ndarray]) -> list[Piece]:
        """The parts between ``paths`` (left to right, each one column per row ``(height,)``,
        relative to ``left``; see :func:`cut_paths`), empty ones left out."""
        parts, done = [], np.zeros_like(self.mask)
        cols = np.arange(self.width)[None, :]
        for path in [*paths, np.full(self.height, self.width)]:
            inside = self.mask & (cols < np.asarray(path)[:, None]) & ~done
            done |= inside
            if inside.any():
                parts.append(Piece(self.top, self.left, inside).trimmed())
        return parts

    def trimmed(self) -> Piece:
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        if not len(rows):
            return self
        mask = self.mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        return Piece(self.top + int(rows[0]), self.left + int(cols[0]), mask)


def ink_map(gray: Any) -> np.ndarray:
    """Ink of a grayscale picture ``(H, W)`` (0..255, either polarity): light on dark, 0..255.

    Raises :class:`DeepnetError` for an empty picture or one with no ink.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise DeepnetError(f"expected a non-empty 2-D grayscale picture, got shape {g.shape}")
    # Ink covers well under half of a code's picture, so the median is paper, and the ink is
    # on the side of the median with the long tail (not simply "light paper": shading).
    low, mid, high = sorted_percentile(np.sort(g, axis=None), [1, 50, 99])
    if mid - low > high - mid:
        g = 255.0 - g
    # The paper's level, place by place (a photo is lit unevenly): an opening wider than any
    # stroke removes the (now light) ink and keeps the paper's shading.
    ndimage = require("scipy.ndimage")
    size = max(9, min(g.shape) // 3)
    paper = ndimage.uniform_filter(ndimage.grey_opening(g, size=(size, size)), size)
    ink = g - paper
    # The opening follows the paper's noise down to its minimum: centre it back. One sort
    # serves both statistics: x -> max(x - median, 0) keeps the order.
    ordered = np.sort(ink, axis=None)
    median = float(sorted_median(ordered))
    ink = np.clip(ink - median, 0.0, None)
    # The 99.9th percentile, not the maximum: one hot pixel must not set the scale.
    if ink.size > 1000:
        peak = float(sorted_percentile(np.clip(ordered - median, 0.0, None), 99.9))
    else:
        peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DeepnetError("no ink found: the picture is blank or has almost no contrast")
    return np.minimum(ink * (255.0 / peak), 255.0)


# np.percentile and np.median partition a copy of the array on every call; np.sort is several
# times faster than that partition (SIMD sorts), and one sort serves several statistics. The
# two functions below give np.percentile's (linear method) and np.median's results bit for
# bit, in the same dtype (tests/test_postal.py checks them against numpy).


def sorted_percentile(ordered: np.ndarray, q: Any) -> Any:
    """``np.percentile(values, q)`` of ``ordered``, the ``values`` sorted ``(n,)`` (n >= 1)."""
    weak = type(q) in (int, float)  # a Python number keeps the values' dtype, as in numpy
    virtual = np.atleast_1d((len(ordered) - 1) * np.true_divide(q, 100))
    before = np.floor(virtual)
    after = before + 1
    last = virtual >= len(ordered) - 1
    before[last] = after[last] = -1
    before[virtual < 0] = after[virtual < 0] = 0
    gamma = virtual - before
    if weak:
        gamma = float(gamma[0])
    a, b = ordered[before.astype(np.intp)], ordered[after.astype(np.intp)]
    diff = b - a
    # As numpy's _lerp: from the nearer end, so that the result stays within [a, b].
    result = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    if np.isnan(ordered[-1]):  # NaN sorts last, and makes every percentile NaN
        result = np.full_like(result, np.nan)
    return result[0] if np.ndim(q) == 0 else result


def sorted_median(ordered: np.ndarray) -> Any:
    """``np.median(values)`` of ``ordered``, the ``values`` sorted ``(n,)`` (n >= 1)."""
    n = len(ordered)
    if np.isnan(ordered[-1]):
        return ordered[-1]
    if n % 2:
        return ordered[n // 2]
    return np.mean(ordered[n // 2 - 1 : n // 2 + 1])


def otsu_threshold(values: np.ndarray) -> float:
    """The level splitting ``values`` (0..255) into two classes of least within-class variance."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.uint8).ravel(), minlength=256)
    p = hist / hist.sum()
    w0 = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * (1.0 - w0))
    return float(np.nanargmax(between[:-1])) + 0.5


def binarize(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ink pixels of an :func:`ink_map`: a strict mask (stroke cores), a loose one and a
    faint one.

    All threshold a lightly smoothed copy, so that noise the smoothing averages away never
    counts; the strict one at Otsu's level (at least a fifth of the scale), the loose one at
    half of it, which keeps faint stroke ends and thin joins, the faint one at
    :data:`FAINT_LEVEL` of it, where a pale digit next to bold ones shows
    (:func:`with_faint_digits`).
    """
    ndimage = require("scipy.ndimage")
    smooth = ndimage.gaussian_filter(ink, 1.0)
    level = max(otsu_threshold(smooth), 0.2 * 255)
    return smooth > level, smooth > 0.5 * level, smooth > FAINT_LEVEL * level


def components(mask: np.ndarray) -> list[Piece]:
    """The 8-connected components of ``mask``."""
    ndimage = require("scipy.ndimage")
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    pieces = []
    for i, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        pieces.append(Piece(rows.start, cols.start, labels[rows, cols] == i))
    return pieces


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def _gap(a: Piece, b: Piece) -> int:
    """Columns between two pieces; negative when their column ranges overlap."""
    return max(a.left, b.left) - min(a.right, b.right)


def _digit_height(pieces: Sequence[Piece]) -> float:
    """A digit's height: the median height of the pieces of at least half the tallest's."""
    tallest = max(p.height for p in pieces)
    # statistics.median: np.median's overhead on a few numbers was 5% of reading time.
    return float(statistics.median(p.height for p in pieces if p.height >= 0.5 * tallest))


def merge_stacked(pieces: list[Piece]) -> list[Piece]:
    """Merge the parts of one digit: pieces stacked above one another, and short fragments.

    Two pieces sharing at least half of the narrower one's columns, with little row overlap,
    are one digit broken across (a 5's bar, a 4's open top). A fragment less than half a
    digit tall joins the piece it overlaps most, or the nearest within a fifth of a digit.
    """
    pieces = sorted(pieces, key=lambda p: -p.area)
    while len(pieces) > 1:
        pair = _parts_of_one_digit(pieces, _digit_height(pieces))
        if pair is None:
            break
        i, j = pair
        rest = [p for k, p in enumerate(pieces) if k not in pair]
        pieces = sorted([*rest, pieces[i].merged(pieces[j])], key=lambda p: -p.area)
    return pieces


def _parts_of_one_digit(pieces: list[Piece], height: float) -> tuple[int, int] | None:
    """The first two pieces (indices, largest first) that :func:`merge_stacked` joins."""
    for i, a in enumerate(pieces):
        others = [j for j in range(len(pieces)) if j != i]
        if a.height < 0.5 * height:
            j = min(others, key=lambda k: _gap(a, pieces[k]))
            if _gap(a, pieces[j]) <= 0.2 * height:
                return i, j
            continue
        for j in others:
            b = pieces[j]
            shared_cols = _overlap(a.left, a.right, b.left, b.right)
            shared_rows = _overlap(a.top, a.bottom, b.top, b.bottom)
            min_w, min_h = min(a.width, b.width), min(a.height, b.height)
            if shared_cols >= 0.5 * min_w and shared_rows < 0.5 * min_h:
                return i, j
    return None


def drop_specks(pieces: list[Piece]) -> list[Piece]:
    """Pieces too small to be (part of) a digit: noise, dust, a dot."""
    if not pieces:
        return pieces
    largest = max(p.area for p in pieces)
    return [p for p in pieces if p.area >= SPECK_AREA * largest]


def valley(piece: Piece, parts: int = 2, clear: bool = True) -> int | None:
    """The column where ``piece`` splits into a left digit and the rest, or None.

    The cut is searched around ``width / parts`` (where one of ``parts`` equal digits would
    end), in the column profile (ink per column). Where two digits touch, the column crosses
    ink once; a column crossing it twice or more is inside a digit (the hole of a 0), so it
    costs more. With ``clear``, only a column crossing ink once, with at most
    :data:`CLEAR_VALLEY` times the profile's mean, counts.
    """
    m = piece.mask
    profile = m.sum(axis=0).astype(np.float32)
    crossings = m[0].astype(np.int32) + (m[1:] & ~m[:-1]).sum(axis=0)
    if len(profile) >= 5:  # a one-pixel gap in a stroke is not a valley
        profile = np.convolve(profile, np.ones(3, np.float32) / 3, mode="same")
        crossings = np.maximum.reduce([np.roll(crossings, k) for k in (-1, 0, 1)])
    w = piece.width
    # Each part at least a third of an equal share wide.
    lo, hi = max(round(w / parts / 3), 2), min(round(w - w / parts / 3), w - 2)
    if parts > 2:
        hi = min(hi, round(w / parts * 1.6))
    if hi <= lo:
        return None
    mean = float(profile.mean())
    cost = profile[lo:hi] + mean * (crossings[lo:hi] > 1)
    # Among near-equal valleys, the one nearest the expected cut.
    cost += 0.01 * mean * np.abs(np.arange(hi - lo) - (w / parts - lo))
    cut = lo + int(np.argmin(cost))
    if clear and (profile[cut] > CLEAR_VALLEY * mean or crossings[cut] > 1):
        return None
    return cut


def cut_paths(piece: Piece, spacing: float) -> list[np.ndarray]:
    """Cuts through ``piece`` from top to bottom, left to right, each one column per row
    ``(height,)``, at the places crossing locally least ink, at least ``spacing`` px apart.

    Where two digits lean into each other (a 1 under a 7's bar, a 4's bar reaching over a 1),
    no straight column separates them but a path that bends does. A path moves at most one
    column per row, and each step aside costs :data:`BEND_COST` (in ink pixels), so that it
    crosses a stroke rather than going round a whole digit. Several cuts, not only the best:
    the deepest valley is often inside a digit (the middle of a 4, a broken 0), and
    :func:`best_grouping` chooses among them.
    """
    ink = piece.mask.astype(np.float32)
    h, w = ink.shape
    # cost[c]: the least ink a path from the top row down to this row, ending at c, crosses
    # (padded with an endless cost on either side); moves: the step it came by.
    padded = np.full((h, w + 2), np.inf, dtype=np.float32)
    padded[0, 1:-1] = ink[0]
    for r in range(1, h):
        # From straight above or, at a cost, from the column on the left or on the right.
        above = padded[r - 1]
        aside = np.minimum(above[:-2], above[2:]) + BEND_COST
        padded[r, 1:-1] = np.minimum(above[1:-1], aside) + ink[r]
    cost = padded[-1, 1:-1]
    # Ends: local minima of the cost, the cheapest first, none nearer than spacing to another
    # or to the piece's sides (so that every part can be a digit or a digit's good share).
    gap = max(1, round(spacing))
    lowest = require("scipy.ndimage").minimum_filter1d(cost, 2 * (gap // 2) + 1, mode="nearest")
    minima = np.flatnonzero(cost[gap : w - gap] <= lowest[gap : w - gap]) + gap
    ends: list[int] = []
    for c in minima[np.argsort(cost[minima], kind="stable")]:
        if all(abs(c - e) >= gap for e in ends):
            ends.append(int(c))
    paths = []
    for end in sorted(ends):
        # Back up the rows, each time to the cheapest of the three it could come from
        # (straight above first among equals, as the cost was made).
        path = np.empty(h, dtype=np.int64)
        path[-1] = c = end
        for r in range(h - 1, 0, -1):
            above = padded[r - 1]
            c += min((0, -1, 1), key=lambda d: above[c + 1 + d] + (BEND_COST if d else 0.0))
            path[r - 1] = c
        paths.append(path)
    # Paths from one table never cross, but two may join: keep each one right of the last.
    return list(np.maximum.accumulate(np.stack(paths), axis=0)) if paths else []


def digits_across(piece: Piece, height: float) -> int:
    """How many digits of a line ``height`` px tall fit across ``piece`` (a digit is about 0.7
    heights wide)."""
    return round(piece.width / (0.7 * height))


def split_touching(pieces: list[Piece], height: float) -> list[Piece]:
    """Split every piece wider than :data:`WIDE` digit heights at clear column valleys."""
    out: list[Piece] = []
    todo = list(pieces)
    while todo:
        p = todo.pop()
        parts = max(2, digits_across(p, height))
        cut = None
        if p.width > WIDE * height:
            # Wider than any one digit: the deepest valley will do; merely wide: a clear one.
            cut = valley(p, parts, clear=p.width < VERY_WIDE * height)
        if cut is None:
            out.append(p)
            continue
        todo += [q for q in p.split(cut) if q.area]
    return out


def force_count(pieces: list[Piece], n: int, merge: bool = True) -> list[Piece]:
    """Split (or, with ``merge``, merge) pieces until there are ``n`` (ink allowing)."""
    pieces = sorted(pieces, key=lambda p: p.left)
    while len(pieces) < n:
        height = _digit_height(pieces)
        splittable = [p for p in pieces if p.width >= 4]
        if not splittable:
            break
        widest = max(splittable, key=lambda p: p.width / height)
        parts = max(2, min(n - len(pieces) + 1, digits_across(widest, height)))
        cut = valley(widest, parts, clear=False)
        if cut is None:
            break
        i = pieces.index(widest)
        pieces[i : i + 1] = [q for q in widest.split(cut) if q.area]
    while merge and len(pieces) > n:
        i = min(range(len(pieces)), key=lambda k: pieces[k].area)
        neighbours = [k for k in (i - 1, i + 1) if 0 <= k < len(pieces)]
        # The nearer neighbour by horizontal gap (negative when they overlap).
        j = min(neighbours, key=lambda k: _gap(pieces[i], pieces[k]))
        a, b = sorted((i, j))
        pieces[a : b + 1] = [pieces[a].merged(pieces[b])]
    return pieces


#: Scores candidate digits: MNIST-style images ``(m, 28, 28)`` -> class probabilities ``(m, 10)``.
Scorer = Callable[[np.ndarray], np.ndarray]
#: Atoms ``i`` to ``j - 1`` of a line, as ``(i, j)``.
Span = tuple[int, int]


def segment(
    gray: Any, expect_digits: int | None = None, scorer: Scorer | None = None
) -> tuple[np.ndarray, list[Piece]]:
    """The ink map of a picture and its digits as pieces, left to right.

    ``gray`` is ``(H, W)`` in 0..255, either polarity. A tilted line of digits is turned
    level first (:func:`line_tilt`); the ink map and pieces returned are then the turned
    ones. With ``expect_digits`` and a ``scorer`` (a classifier), a first cut the classifier
    is sure of is kept (:func:`sure_first_cut`); otherwise every piece wider than
    :data:`OVER_CUT` digit heights is over-cut, whatever the count, and the atoms are grouped
    into ``expect_digits`` the way the classifier is surest of (:func:`best_grouping`). Each
    piece's mask holds all the ink that belongs to it (see :func:`claim_ink`). Raises
    :class:`DeepnetError` for an empty picture or one with no ink.
    """
    ink, pieces, _, _ = _segment(gray, expect_digits, scorer)
    return ink, pieces


def _segment(
    gray: Any, expect_digits: int | None, scorer: Scorer | None
) -> tuple[np.ndarray, list[Piece], float, Grouping | None]:
    """:func:`segment`, plus the tilt undone and the classifier's grouping if it chose one."""
    ink = ink_map(gray)
    first = _components_of(ink)
    # The line's tilt needs only the main pieces: the finishing steps (faint digits, touching
    # ones split) move few centres, and are spent once, on the levelled picture.
    tilt = line_tilt(first[0])
    if abs(tilt) >= MIN_TILT:
        ink = turn(ink, tilt)
        first = _components_of(ink)
    else:
        tilt = 0.0
    pieces, height, loose = _finish_cut(*first)
    reach = max(2.0, 0.15 * height)
    if expect_digits and scorer is not None:
        sure = sure_first_cut(ink, pieces, expect_digits, scorer, height, loose, reach)
        if sure is not None:
            return ink, sure.pieces, tilt, sure
        # Segmentation by recognition: over-cut, then let the classifier choose the grouping.
        atoms = over_cut(pieces, height)
        # A fragment (a 2's broken tail) filling the count means two digits are one piece
        # somewhere: one cut more, so that the classifier can choose.
        fragment = any(a.height < SHORT * height for a in atoms)
        atoms = force_count(atoms, expect_digits + fragment, merge=False)
        atoms = sorted(claim_ink(atoms, loose, reach), key=lambda p: p.left)
        if len(atoms) == expect_digits:  # one grouping only: the main batch classifies it
            return ink, atoms, tilt, None
        found = best_grouping(ink, atoms, expect_digits, scorer, height, origins(atoms, pieces))
        return ink, found.pieces, tilt, found
    if expect_digits:
        pieces = force_count(pieces, expect_digits)
    pieces = claim_ink(pieces, loose, reach=reach)
    return ink, sorted(pieces, key=lambda p: p.left), tilt, None


def sure_first_cut(
    ink: np.ndarray,
    pieces: list[Piece],
    n: int,
    scorer: Scorer,
    height: float,
    loose: np.ndarray,
    reach: float,
) -> Grouping | None:
    """The first cut's ``pieces`` as the ``n`` digits, if nothing hints at a wrong cut: as many
    as expected, each at least :data:`SHORT` digit heights tall (no fragment) and under
    :data:`VERY_WIDE` wide (not surely two digits), and the classifier gives each :data:`SURE`
    or more.

    Otherwise None, and :func:`best_grouping` chooses among all groupings. Over-cutting and
    classifying the regrouped candidates (about 20 a code) was most of the reading time, and
    on most codes it only confirmed the first cut.
    """
    if len(pieces) != n or any(
        p.width > VERY_WIDE * height or p.height < SHORT * height for p in pieces
    ):
        return None
    pieces = sorted(claim_ink(pieces, loose, reach), key=lambda p: p.left)
    digits = np.stack([piece_digit(ink, p) for p in pieces])
    proba = scorer(digits)
    if float(proba.max(axis=1).min()) < SURE:
        return None
    return Grouping(pieces, digits, 1.0, proba)


def _components_of(
    ink: np.ndarray,
) -> tuple[list[Piece], float, np.ndarray, np.ndarray]:
    """Binarize and find the pieces, broken digits merged: the pieces, the digit height, and
    the loose and faint masks (:func:`binarize`)."""
    strict, loose, faint = binarize(ink)
    pieces = components(strict)
    if not pieces:
        raise DeepnetError("no ink found: nothing in the picture stands out from the paper")
    pieces = merge_stacked(drop_specks(pieces))
    height = _digit_height(pieces)
    return [p for p in pieces if p.height >= 0.4 * height], height, loose, faint


def _finish_cut(
    pieces: list[Piece], height: float, loose: np.ndarray, faint: np.ndarray
) -> tuple[list[Piece], float, np.ndarray]:
    """:func:`_components_of`'s pieces with the faint digits added and touching ones split."""
    pieces = with_faint_digits(pieces, faint, height)
    return split_touching(pieces, height), height, loose


def with_faint_digits(pieces: list[Piece], faint: np.ndarray, height: float) -> list[Piece]:
    """``pieces`` and the digits written fainter than the rest: pieces of the ``faint`` mask a
    digit tall of which ``pieces`` hold little (under :data:`FAINT` of their pixels): the
    strict mask broke them into specks, dropped, or missed them (a thin, pale digit sets no
    threshold of its own). Fragments of them among ``pieces`` are replaced by them."""
    found = np.zeros(faint.shape, dtype=bool)
    for p in pieces:
        found[p.top : p.bottom, p.left : p.right] |= p.mask
    for q in components(faint):
        if q.height < 0.6 * height:
            continue
        if (found[q.top : q.bottom, q.left : q.right] & q.mask).sum() >= FAINT * q.area:
            continue
        # Its fragments: the pieces inside its mask (a faint piece holds its strict parts).
        pieces = [p for p in pieces if not _within(p, q)]
        pieces.append(q)
    return pieces


def _within(p: Piece, q: Piece) -> bool:
    """Whether every ink pixel of ``p`` is one of ``q``'s."""
    if p.top < q.top or p.left < q.left or p.bottom > q.bottom or p.right > q.right:
        return False
    under = q.mask[p.top - q.top : p.bottom - q.top, p.left - q.left : p.right - q.left]
    return bool(under[p.mask].all())


def line_tilt(pieces: Sequence[Piece]) -> float:
    """The angle (degrees, counter-clockwise) of the line through the pieces' centres of mass.

    0 for fewer than three pieces: two digits' heights say too little about a line.
    """
    if len(pieces) < 3:
        return 0.0
    centres = []
    for p in pieces:
        ys, xs = np.nonzero(p.mask)
        centres.append((p.left + xs.mean(), p.top + ys.mean()))
    x, y = np.array(centres).T
    if np.ptp(x) == 0:
        return 0.0
    slope = np.polyfit(x, y, 1)[0]
    # y grows downwards: a line falling to the right was turned clockwise.
    return float(np.degrees(np.arctan(slope)))


def turn(image: np.ndarray, angle: float) -> np.ndarray:
    """``image`` turned ``angle`` degrees counter-clockwise, canvas grown to fit, 0 outside."""
    pil = require("PIL.Image")
    resampling = getattr(pil, "Resampling", pil)
    im = pil.fromarray(np.asarray(image, dtype=np.float32), mode="F")
    return np.array(im.rotate(angle, resample=resampling.BILINEAR, expand=True))


def turn_boxes(
    boxes: Sequence[tuple[int, int, int, int]],
    angle: float,
    shape: tuple[int, int],
    new_shape: tuple[int, int],
) -> list[tuple[int, int, int, int]]:
    """The boxes enclosing ``boxes`` of a ``shape`` picture turned as :func:`turn` turns it
    (``new_shape``: the turned picture's, whose centre the old centre maps to)."""
    t = np.deg2rad(angle)
    cos, sin = np.cos(t), np.sin(t)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    ncy, ncx = (new_shape[0] - 1) / 2, (new_shape[1] - 1) / 2
    turned = []
    for top, left, bottom, right in boxes:
        ys = np.array([top, top, bottom, bottom], float) - cy
        xs = np.array([left, right, left, right], float) - cx
        # Counter-clockwise on screen, where y points down.
        nx, ny = cos * xs + sin * ys + ncx, -sin * xs + cos * ys + ncy
        turned.append(
            (int(ny.min()), int(nx.min()), int(np.ceil(ny.max())), int(np.ceil(nx.max())))
        )
    return turned


def over_cut(pieces: list[Piece], height: float) -> list[Piece]:
    """Cut every piece wider than :data:`OVER_CUT` digit heights along all its likely cuts
    (:func:`cut_paths`; at its deepest column valley when no path has an inner minimum), so
    that each touching pair is cut in the right place among others (:func:`best_grouping`
    rejoins the rest)."""
    out = []
    for p in pieces:
        if p.width > OVER_CUT * height:
            paths = cut_paths(p, CUT_SPACING * height)
            if not paths:
                # Two digits fused into one thick blob: every path inside crosses more ink than
                # one sliding out to its sides, so the path costs have no inner minimum. Its
                # column valley still gives a cut (development sets of seeds 11 and 7, default
                # model: 92.95 -> 93.15% and 91.10 -> 91.20% of the codes; CNN 96.10 -> 96.20%,
                # 94.90 -> 95.10%).
                column = valley(p, max(2, digits_across(p, height)), clear=False)
                if column is not None:
                    paths = [np.full(p.height, column)]
            out += p.cut(paths)
        else:
            out.append(p)
    return sorted(out, key=lambda p: p.left)


@attrs.frozen
class Grouping:
    """Digits chosen by :func:`best_grouping`: as pieces, as MNIST-style images ``(n, 28, 28)``,
    and ``certainty``, the share of the probability (over all groupings) of the chosen one."""

    pieces: list[Piece]
    digits: np.ndarray
    certainty: float = 1.0
    #: The classifier's probabilities ``(n, 10)`` for ``digits``, when it has scored them.
    proba: np.ndarray | None = None


def candidate_groups(
    atoms: list[Piece], height: float, most: int = GROUP_ATOMS
) -> dict[Span, Piece]:
    """Every run of up to ``most`` consecutive ``atoms`` narrow enough to be one digit.

    Keys are spans ``(i, j)``: atoms ``i`` to ``j - 1``; values the merged pieces.
    """
    groups: dict[Span, Piece] = {}
    for i in range(len(atoms)):
        g = atoms[i]
        for j in range(i + 1, min(i + most, len(atoms)) + 1):
            if j > i + 1:
                g = g.merged(atoms[j - 1])
                if g.width > 2.0 * height:  # two digits' width: never one digit
                    break
            groups[i, j] = g
    return groups


def origins(atoms: Sequence[Piece], pieces: Sequence[Piece]) -> list[int]:
    """For each atom, the index of the piece (of the first cut) sharing most of its columns."""
    return [
        max(
            range(len(pieces)),
            key=lambda k: _overlap(a.left, a.right, pieces[k].left, pieces[k].right),
        )
        for a in atoms
    ]


def best_grouping(
    ink: np.ndarray,
    atoms: list[Piece],
    n: int,
    scorer: Scorer,
    height: float,
    origin: Sequence[int] | None = None,
) -> Grouping:
    """``n`` digits from consecutive ``atoms`` (sorted left to right): segmentation by recognition.

    All candidate digits (:func:`candidate_groups`) are classified in one batch; dynamic
    programming then finds the grouping whose digits' scores (:func:`digit_score`: the log
    probability of the best class plus shape plausibility) sum highest. ``origin`` (one index
    per atom: the piece of a first cut it came from) makes each departure from that cut cost
    :data:`REGROUP_COST`, so the classifier overrules the first cut only when much surer.
    The same recursion with log-sum-exp in place of max gives every grouping's total, hence
    the certainty.
    """
    groups = candidate_groups(atoms, height)
    spans = list(groups)
    images = {s: piece_digit(ink, groups[s]) for s in spans}
    proba = scorer(np.stack([images[s] for s in spans]))
    score = {
        s: digit_score(p, groups[s], height) - REGROUP_COST * _departures(s, origin)
        for s, p in zip(spans, proba, strict=True)
    }
    path, best, total = _best_path(score, len(atoms), n)
    if path is None:  # too many atoms to group: keep the count forced
        pieces = force_count(atoms, n)
        return Grouping(pieces, np.stack([piece_digit(ink, p) for p in pieces]), 0.0)
    certainty = float(np.exp(min(0.0, best - total)))
    chosen = [spans.index(s) for s in path]
    return Grouping(
        [groups[s] for s in path], np.stack([images[s] for s in path]), certainty, proba[chosen]
    )


def _best_path(score: dict[Span, float], m: int, n: int) -> tuple[list[Span] | None, float, float]:
    """The best ``n`` spans covering ``0..m`` (None if none), its score, and the log-sum-exp
    of all such coverings' scores."""
    # best[k][j]: the best score of k digits from the first j atoms, and where the last starts;
    # total[k][j]: the log-sum-exp of all of them. Python lists, not arrays: the tables are a
    # few atoms by a few digits, and numpy's per-element indexing and tiny arrays cost more
    # than the arithmetic (the same float additions and comparisons).
    into = [[(i, score[i, j]) for i in range(j) if (i, j) in score] for j in range(m + 1)]
    best = [[-np.inf] * (m + 1) for _ in range(n + 1)]
    start = [[-1] * (m + 1) for _ in range(n + 1)]
    total = [[-np.inf] * (m + 1) for _ in range(n + 1)]
    best[0][0] = total[0][0] = 0.0
    for k in range(1, n + 1):
        for j in range(1, m + 1):
            options = into[j]
            if not options:
                continue
            here = [best[k - 1][i] + v for i, v in options]
            first = max(range(len(here)), key=here.__getitem__)  # the first best, as argmax
            start[k][j], best[k][j] = options[first][0], here[first]
            total[k][j] = float(np.logaddexp.reduce([total[k - 1][i] + v for i, v in options]))
    if best[n][m] == -np.inf:
        return None, -np.inf, -np.inf
    path, j = [], m
    for k in range(n, 0, -1):
        i = start[k][j]
        path.append((i, j))
        j = i
    return path[::-1], float(best[n][m]), float(total[n][m])


def _departures(span: Span, origin: Sequence[int] | None) -> int:
    """How many of the first cut's cuts a digit made of atoms ``span`` undoes or adds: the
    pieces it joins, and whether its right end splits a piece."""
    if origin is None:
        return 0
    i, j = span
    joined = len(set(origin[i:j])) - 1
    split = j < len(origin) and origin[j] == origin[j - 1]
    return joined + int(split)


def digit_score(proba: np.ndarray, piece: Piece, height: float) -> float:
    """How likely ``piece`` is one digit: the log probability of its best class ``proba``
    ``(10,)``, less penalties for shapes digits rarely have (relative to the line's
    ``height``): wider than :data:`WIDE` (two digits), much shorter (a fragment), or with
    blank columns inside (two pieces side by side that do not touch)."""
    too_wide = max(0.0, piece.width / height - WIDE)
    too_short = max(0.0, SHORT - piece.height / height)
    gap = _widest_blank(piece.mask) / height
    penalty = GROUP_WIDE * too_wide + GROUP_SHORT * too_short + GROUP_GAP * gap
    return float(np.log(max(float(proba.max()), 1e-12))) - penalty


def _widest_blank(mask: np.ndarray) -> int:
    """The longest run of blank columns inside ``mask`` ``(h, w)``."""
    blank = ~mask.any(axis=0)
    if not blank.any():
        return 0
    edges = np.diff(np.concatenate([[0], blank.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def claim_ink(pieces: list[Piece], loose: np.ndarray, reach: float) -> list[Piece]:
    """Grow each piece over the loose ink nearer to it than to any other, up to ``reach`` px.

    The strict mask stops inside strokes' anti-aliased edges and drops faint bits; this gives
    them back to their digit (2 px of edge always), and a speck further away stays out.
    """
    ndimage = require("scipy.ndimage")
    if not pieces:
        return []
    # Only pixels within reach (or 2 px) of a piece can be claimed: the distance transform,
    # the most costly step, runs on the pieces' box grown by that much, not on the whole
    # picture. Distances and nearest pieces inside it are the same, as every piece is in it.
    margin = ceil(max(2.0, reach)) + 1
    y0 = max(0, min(p.top for p in pieces) - margin)
    x0 = max(0, min(p.left for p in pieces) - margin)
    y1 = min(loose.shape[0], max(p.bottom for p in pieces) + margin)
    x1 = min(loose.shape[1], max(p.right for p in pieces) + margin)
    labels = np.zeros((y1 - y0, x1 - x0), dtype=np.int32)
    for k, p in enumerate(pieces, start=1):
        labels[p.top - y0 : p.bottom - y0, p.left - x0 : p.right - x0][p.mask] = k
    dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    near = (dist <= 2.0) | (loose[y0:y1, x0:x1] & (dist <= reach))
    owner = np.where(near, labels[iy, ix], 0)
    grown = []
    for k, (rows, cols) in enumerate(ndimage.find_objects(owner, max_label=len(pieces)), 1):
        grown.append(Piece(y0 + rows.start, x0 + cols.start, owner[rows, cols] == k))
    return grown


def piece_digit(ink: np.ndarray, piece: Piece) -> np.ndarray:
    """The ink under ``piece`` as a 28×28 MNIST-style digit, stroke cores at full ink."""
    crop = ink[piece.top : piece.bottom, piece.left : piece.right]
    # Ink already (light on 0): ink_digit, not mnist_digit, which would look for the
    # background and the polarity first.
    digit = ink_digit(np.where(piece.mask, crop, 0.0).astype(np.float64))
    # MNIST's strokes are flat-topped: 40% of its ink pixels are at 250 or more. A blurred or
    # faint scan peaks only at the stroke centres (3% here before this stretch), which costs
    # the CNN recipe 3 points of whole-code accuracy on the synthetic set.
    stroke = digit[digit > 0.1 * 255]
    level = 255.0
    if stroke.size:  # np.partition: np.percentile's overhead is most of this function's time
        k = min(int(stroke.size * STROKE_PERCENTILE / 100), stroke.size - 1)
        level = float(np.partition(stroke, k)[k])
    return np.minimum(digit * (255.0 / max(level, 1.0)), 255.0).astype(np.float32)


def segment_digits(
    gray: Any, expect_digits: int | None = None, scorer: Scorer | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The digits of a picture as MNIST-style images ``(n, 28, 28)`` (0..255) and their boxes.

    Boxes are ``(top, left, bottom, right)`` in the picture's pixels, left to right. See
    :func:`segment` for ``expect_digits`` and ``scorer``.
    """
    cut = cut_digits(gray, expect_digits, scorer)
    return cut.digits, cut.boxes


@attrs.frozen
class Cut:
    """A picture cut into digits: images ``(n, 28, 28)`` (0..255), boxes ``(top, left, bottom,
    right)`` in the picture's pixels, how sure the cut is (:attr:`Grouping.certainty`; 1
    when no classifier chose among cuts) and the classifier's probabilities ``(n, 10)`` for
    the digits when it has scored them while cutting;
    ``heights``: each digit's height (px) in the levelled line."""

    digits: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    certainty: float = 1.0
    proba: np.ndarray | None = None
    heights: tuple[int, ...] = ()


def cut_digits(gray: Any, expect_digits: int | None = None, scorer: Scorer | None = None) -> Cut:
    """:func:`segment_digits`, with the cut's certainty."""
    picture = np.asarray(gray, dtype=np.float32)
    factor = reduction(picture)
    small = shrink(picture, factor)
    ink, pieces, tilt, grouping = _segment(small, expect_digits, scorer)
    if factor > 1 and _digit_height(pieces) < 0.75 * READ_HEIGHT:
        # The probe took something else (a shadow, a stain) for the digits: full size.
        factor, small = 1, picture
        ink, pieces, tilt, grouping = _segment(small, expect_digits, scorer)
    if grouping is None:
        grouping = Grouping(pieces, np.stack([piece_digit(ink, p) for p in pieces]))
    boxes = [p.box for p in pieces]
    if tilt:  # back to the picture's own pixels
        boxes = turn_boxes(boxes, -tilt, ink.shape, small.shape)
    if factor > 1:
        h, w = picture.shape
        boxes = [
            (t * factor, x * factor, min(b * factor, h), min(r * factor, w)) for t, x, b, r in boxes
        ]
    digits = grouping.digits.astype(np.float32)
    # Levelled (a tilt does not inflate them), in the picture's pixels.
    heights = tuple(p.height * factor for p in pieces)
    return Cut(digits, boxes, grouping.certainty, grouping.proba, heights)


def reduction(picture: np.ndarray) -> int:
    """The whole factor by which to shrink ``picture`` ``(H, W)`` before cutting it: 1 unless
    it has more than :data:`SHRINK_PIXELS` pixels and its digits are at least twice
    :data:`READ_HEIGHT` tall.

    Their height is measured by the first steps of the cut (:func:`ink_map`,
    :func:`_components_of`) on a copy shrunk to about :data:`PROBE_PIXELS` pixels, so that a
    large photo costs little more than a strip cropped around the code; :func:`cut_digits`
    checks it afterwards.
    """
    if picture.ndim != 2 or picture.size <= SHRINK_PIXELS or min(picture.shape) < 2 * READ_HEIGHT:
        return 1
    probe_factor = max(1, int(np.sqrt(picture.size / PROBE_PIXELS)))
    try:
        _, height, _, _ = _components_of(ink_map(shrink(picture, probe_factor)))
    except DeepnetError:  # too faint once shrunk: read at full size, which says why
        return 1
    return max(1, int(height * probe_factor // READ_HEIGHT))


def shrink(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` ``(H, W)`` shrunk ``factor`` times, each pixel the mean of a block (the last
    ``H % factor`` rows and ``W % factor`` columns dropped)."""
    if factor == 1:
        return picture
    h, w = (n // factor for n in picture.shape)
    whole = picture[: h * factor, : w * factor]
    # A sum of strided views: 5-9x faster than reshape(h, f, w, f).mean(axis=(1, 3)).
    out = np.zeros((h, w), dtype=np.float32)
    for i in range(factor):
        for j in range(factor):
            out += whole[i::factor, j::factor]
    return out / np.float32(factor * factor)


# -- reading codes -------------------------------------------------------------------------


@attrs.frozen
class CodeRead:
    """What was read: the code, each digit's confidence and box, and whether a human must look."""

    code: str
    confidences: tuple[float, ...]
    boxes: tuple[tuple[int, int, int, int], ...]
    needs_human: bool
    reason: str = ""
    #: The chosen cut's share of the probability of all cuts (see :class:`Grouping`); 1 when
    #: the first cut was read as it is (:func:`sure_first_cut`) or no other was possible.
    cut_certainty: float = 1.0
    #: How plausible the digits' heights are (:func:`height_plausibility`; 1: all near the
    #: line's).
    heights_plausible: float = 1.0

    @property
    def confidence(self) -> float:
        """The code's probability: its digits' probabilities multiplied (two doubtful digits
        are worse than one), times :attr:`heights_plausible` (a digit much shorter than the
        others is often a fragment of a wrong cut, read confidently as some digit).

        It ranks wrong codes below right ones better than the least confident digit did: on
        synthetic strips not used to choose it (``deepnet postal synth --count 1500 --seed
        7``), 91.0 -> 91.9% (default model) and 96.5 -> 96.8% (CNN) right at 10% rejected.
        Not times :attr:`cut_certainty`, nor the read code's share of all groupings'
        probability: both ranked codes worse.
        """
        if not self.confidences:
            return 0.0
        return float(np.prod(self.confidences)) * self.heights_plausible

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "confidence": self.confidence,
            "needs_human": self.needs_human,
            "reason": self.reason,
            "cut_certainty": self.cut_certainty,
            "heights_plausible": self.heights_plausible,
            "digits": [
                {"digit": int(d), "confidence": c, "box": list(b)}
                for d, c, b in zip(self.code, self.confidences, self.boxes, strict=True)
            ],
        }


class CodeReader:
    """Reads codes with one model, or several: ``CodeReader(model).read(picture)``.

    ``model``: a digit model (784 inputs, 10 outputs) or a sequence of them, whose probabilities
    are pooled by ``combine`` (:func:`deepnet.ensemble.pool`; an ensemble: models that err
    differently are rarely confidently wrong together); ``min_confidence``: a code whose
    :attr:`CodeRead.confidence` is below it needs a human; ``expect_digits``: the code's known
    length (a code read with another length needs a human too); ``normalize`` overrides the
    models' own input normalization.
    """

    def __init__(
        self,
        model: Any | Sequence[Any],
        *,
        min_confidence: float = MIN_CONFIDENCE,
        expect_digits: int | None = None,
        normalize: str | None = None,
        combine: str = "geometric",
    ) -> None:
        models = list(model) if isinstance(model, list | tuple) else [model]
        if not models:
            raise DeepnetError("reading codes needs at least one model")
        for m in models:
            if tuple(m.input_shape) != (28 * 28,) or tuple(m.output_shape) != (10,):
                raise DeepnetError(
                    "reading codes needs digit models with 784 inputs and 10 outputs, got "
                    f"{tuple(m.input_shape)} -> {tuple(m.output_shape)}"
                )
        if not 0.0 <= min_confidence <= 1.0:
            raise DeepnetError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if expect_digits is not None and expect_digits < 1:
            raise DeepnetError(f"expect_digits must be at least 1, got {expect_digits}")
        self.models = models
        self.combine = check_combine(combine)
        self.model = models[0]
        self.min_confidence = min_confidence
        self.expect_digits = expect_digits
        self.prepare = [model_normalizer(m, normalize) for m in models]
        # Each model's predict_proba with its inference layers prepared once: set by
        # segment_many for all its pictures.
        self._predictors: list[Callable[[np.ndarray], np.ndarray]] | None = None

    def segment(self, picture: Any) -> Cut:
        """The normalized digits ``(n, 28, 28)`` and boxes of a picture (array or path)."""
        if isinstance(picture, str | Path):
            try:
                return cut_digits(read_grayscale(picture), self.expect_digits, self.score)
            except DataFormatError:
                raise
            except DeepnetError as exc:
                raise DataFormatError(f"{picture}: {exc}") from None
        return cut_digits(picture, self.expect_digits, self.score)

    def score(self, digits: np.ndarray) -> np.ndarray:
        """Class probabilities ``(m, 10)`` of MNIST-style digits ``(m, 28, 28)`` (0..255),
        pooled over the models."""
        x = digits.reshape(len(digits), -1)
        predict = self._predictors or [m.predict_proba for m in self.models]
        return pool(
            [p(prep(x)) for p, prep in zip(predict, self.prepare, strict=True)], self.combine
        )

    def read_many(self, pictures: Sequence[Any], jobs: int = 1) -> list[CodeRead]:
        """Read several pictures, classifying all their digits in one batch.

        ``jobs`` > 1 segments them in that many processes (forked, where the system can).
        """
        require("threadpoolctl")
        from threadpoolctl import threadpool_limits

        # One BLAS thread per process: the products here are small, and two processes of two
        # threads each on two cores ran 3x slower (58 against 193 codes/s, --jobs 2).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._read_many(pictures, jobs)

    def _read_many(self, pictures: Sequence[Any], jobs: int) -> list[CodeRead]:
        jobs = jobs if len(pictures) > 1 else 1
        chunk = max(1, len(pictures) // (4 * jobs))
        return self.classify(list(self.segment_many(pictures, jobs=jobs, chunksize=chunk)))

    def segment_many(
        self, pictures: Iterable[Any], *, jobs: int = 1, chunksize: int = 1
    ) -> Iterator[Cut]:
        """:meth:`segment` each picture, yielding the cuts in order as they are made.

        ``jobs`` > 1 cuts them in that many processes (forked, where the system can), sent
        ``chunksize`` pictures at a time. The workers keep the BLAS thread count in force
        when this starts (:meth:`read_many` sets it to one).
        """
        # The models' inference layers are prepared once for all the pictures' candidate
        # batches, not once per batch: folding the default model's normalize layer into its
        # first weights took 7% of its reading time. Forked workers inherit them.
        previous, self._predictors = self._predictors, [m.predictor() for m in self.models]
        try:
            yield from self._segment_each(pictures, jobs, chunksize)
        finally:
            self._predictors = previous

    def _segment_each(self, pictures: Iterable[Any], jobs: int, chunksize: int) -> Iterator[Cut]:
        if jobs > 1 and "fork" in mp.get_all_start_methods():
            # Imported once here, inherited by every worker: imported in each, scipy.ndimage
            # alone took 0.21 s of CPU per worker.
            for module in ("scipy.ndimage", "PIL.Image", "PIL.ImageOps"):
                require(module)
            global _FORKED
            _FORKED = self  # forked workers inherit it: nothing to pickle but the pictures
            try:
                with warnings.catch_warnings():
                    # Python 3.12+ warns on fork in a threaded process (OpenBLAS's threads); the
                    # workers only run numpy, scipy and Pillow on their own pictures.
                    warnings.filterwarnings("ignore", ".*fork.*", DeprecationWarning)
                    pool = mp.get_context("fork").Pool(jobs)
                with pool:
                    yield from pool.imap(_segment_forked, pictures, chunksize=chunksize)
            finally:
                _FORKED = None
        else:
            for picture in pictures:
                yield self.segment(picture)

    def read(self, picture: Any) -> CodeRead:
        """Read one picture (an ``(H, W)`` array in 0..255 or a path)."""
        return self.read_many([picture])[0]

    def classify(self, cuts: Sequence[Cut]) -> list[CodeRead]:
        """Codes from already cut pictures (the output of :meth:`segment`)."""
        if not cuts:
            return []
        # Digits the grouping already scored are not classified again (half the CNN's work).
        todo = [c for c in cuts if c.proba is None]
        proba = iter(())
        if todo:
            proba = iter(self.score(np.concatenate([c.digits for c in todo])))
        reads = []
        for cut in cuts:
            p = cut.proba if cut.proba is not None else np.stack([next(proba) for _ in cut.digits])
            reads.append(self._code(p, cut))
        return reads

    def _code(self, proba: np.ndarray, cut: Cut) -> CodeRead:
        code = "".join(str(int(k)) for k in proba.argmax(axis=1))
        conf = tuple(float(v) for v in proba.max(axis=1))
        plausible = height_plausibility(cut.heights)
        read = CodeRead(code, conf, tuple(cut.boxes), False, "", cut.certainty, plausible)
        reason = ""
        if self.expect_digits and len(code) != self.expect_digits:
            reason = f"{len(code)} digits found, {self.expect_digits} expected"
        elif read.confidence < self.min_confidence:
            k = int(np.argmin(conf))
            why = f"digit {k + 1} ({code[k]}) at {conf[k]:.1%}"
            if plausible < min(conf):  # the heights cost more than the weakest digit
                k = int(np.argmin(cut.heights))
                share = cut.heights[k] / np.median(cut.heights)
                why = f"digit {k + 1} only {share:.0%} of the line's height"
            reason = f"code at {read.confidence:.1%} < {self.min_confidence:.1%}: {why}"
        return attrs.evolve(read, needs_human=bool(reason), reason=reason)


def height_plausibility(heights: Sequence[int]) -> float:
    """How plausible digits of these ``heights`` are as one line, in (0, 1]: 1 unless one is
    below :data:`SHORT_DIGIT` of the median, then ``exp(-SHORT_COST * shortfall)``, the
    shortfalls (in median heights) summed over the digits."""
    if not len(heights):
        return 1.0
    rel = np.asarray(heights, dtype=np.float64) / max(float(np.median(heights)), 1.0)
    return float(np.exp(-SHORT_COST * np.maximum(0.0, SHORT_DIGIT - rel).sum()))


_FORKED: CodeReader | None = None


def _segment_forked(picture: Any) -> Cut:
    assert _FORKED is not None
    return _FORKED.segment(picture)


def read_code(
    model: Any,
    picture: Any,
    *,
    min_confidence: float = MIN_CONFIDENCE,
    expect_digits: int | None = None,
    normalize: str | None = None,
) -> CodeRead:
    """Read the code in ``picture`` (a path, or ``(H, W)`` grayscale 0..255) with ``model``."""
    reader = CodeReader(
        model, min_confidence=min_confidence, expect_digits=expect_digits, normalize=normalize
    )
    return reader.read(picture)


def save_debug(
    directory: str | Path, stem: str, digits: np.ndarray, read: CodeRead | None = None
) -> list[Path]:
    """Write each normalized digit as ``STEM-K.png`` (or ``STEM-K-DIGIT.png``) in ``directory``."""
    pil = require("PIL.Image")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, d in enumerate(digits, start=1):
        label = f"-{read.code[k - 1]}" if read is not None else ""
        path = out / f"{stem}-{k}{label}.png"
        pil.fromarray(np.clip(d, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
