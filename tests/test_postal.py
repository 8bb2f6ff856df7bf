"""Reading postal codes: segmentation, polarity, touching digits, the CLI, the synthetic set."""

from __future__ import annotations

import csv
import itertools
import json

import attrs
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from deepnet import Dense, Model, postal
from deepnet.cli import main
from deepnet.core.errors import DataFormatError, DeepnetError
from deepnet.ensemble import pool
from deepnet.postal import (
    READ_HEIGHT,
    SHORT_COST,
    SHORT_DIGIT,
    CodeReader,
    Cut,
    Piece,
    _best_path,
    _departures,
    candidate_groups,
    claim_ink,
    components,
    cut_digits,
    cut_paths,
    height_plausibility,
    ink_map,
    over_cut,
    reduction,
    segment,
    segment_digits,
    shrink,
    sorted_median,
    sorted_percentile,
    sure_first_cut,
)
from deepnet.postal_set import (
    accepted,
    accuracy_at_rejection,
    compose_set,
    compose_strip,
    mnist_test_digits,
    read_set,
    synthesize,
)


@pytest.fixture(scope="module")
def test_digits():
    return mnist_test_digits()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small digit model trained here on MNIST training images (a few seconds)."""
    from deepnet.datasets import load_mnist

    data = load_mnist()
    m = Model([Dense(128, "relu"), Dense(10, "softmax")])
    sgd = {"name": "sgd", "momentum": 0.9, "nesterov": True}
    m.fit(data.x_train[:30000], data.y_train[:30000], epochs=3, optimizer=sgd, lr=0.1, seed=0)
    path = tmp_path_factory.mktemp("postal") / "m.npz"
    m.save(path)
    return m, path


def strip(test_digits, code: str, seed: int, touch_rate: float = 0.0):
    images, labels = test_digits
    rng = np.random.default_rng(seed)
    picks = [images[rng.choice(np.flatnonzero(labels == int(d)))] for d in code]
    return compose_strip(picks, rng, touch_rate=touch_rate)


def inside(found, true) -> bool:
    """The found box's center lies in the true box, and the boxes overlap mostly."""
    (t, left, b, r), (tt, tl, tb, tr) = found, true
    cy, cx = (t + b) / 2, (left + r) / 2
    inter = max(0, min(b, tb) - max(t, tt)) * max(0, min(r, tr) - max(left, tl))
    return tt <= cy <= tb and tl <= cx <= tr and inter >= 0.6 * (tb - tt) * (tr - tl)


@pytest.mark.parametrize("seed", range(8))
def test_strips_are_cut_at_their_known_boxes(test_digits, seed):
    picture, boxes = strip(test_digits, "75008", seed)
    digits, found = segment_digits(picture)
    assert digits.shape == (5, 28, 28) and digits.dtype == np.float32
    assert all(inside(f, t) for f, t in zip(found, boxes, strict=True)), (found, boxes)


def test_shrink_is_the_mean_of_each_block():
    picture = np.random.default_rng(0).uniform(0, 255, (23, 31)).astype(np.float32)
    expected = picture[:21, :30].reshape(7, 3, 10, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(shrink(picture, 3), expected, rtol=1e-6)
    assert shrink(picture, 1) is picture


def big(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` enlarged ``factor`` times, as a photo of it would be."""
    im = Image.fromarray(picture).resize(
        (picture.shape[1] * factor, picture.shape[0] * factor), Image.BICUBIC
    )
    return np.asarray(im, dtype=np.float64)


@pytest.mark.parametrize("seed", range(3))
def test_a_large_photo_is_cut_shrunk_with_boxes_in_its_own_pixels(test_digits, seed):
    picture, boxes = strip(test_digits, "75008", seed)
    assert reduction(picture.astype(np.float32)) == 1  # a strip: cut as it is
    photo = big(picture, 8)
    factor = reduction(photo.astype(np.float32))
    # Digits 24..70 px tall become 192..560: shrunk to about READ_HEIGHT..2 READ_HEIGHT px.
    height = np.median([b[2] - b[0] for b in boxes]) * 8
    assert factor > 1 and READ_HEIGHT <= height / factor < 2.5 * READ_HEIGHT, (factor, height)
    digits, found = segment_digits(photo)
    assert digits.shape == (5, 28, 28)
    big_boxes = [tuple(8 * v for v in b) for b in boxes]
    assert all(inside(f, t) for f, t in zip(found, big_boxes, strict=True)), (found, big_boxes)


def test_a_wrong_probe_falls_back_to_full_size(test_digits, monkeypatch):
    """A shrink that leaves the digits too small to read (the probe took a stain for them) is
    undone: the cut is the full-size one."""
    import deepnet.postal as postal

    picture, _ = strip(test_digits, "75008", 1)
    full = cut_digits(picture)
    monkeypatch.setattr(postal, "reduction", lambda picture: 4)
    again = cut_digits(picture)
    assert again.boxes == full.boxes
    np.testing.assert_array_equal(again.digits, full.digits)


def test_polarity_does_not_change_the_cut(test_digits):
    picture, _ = strip(test_digits, "31415", 3)
    a, boxes_a = segment_digits(picture)
    b, boxes_b = segment_digits(255 - picture)
    assert boxes_a == boxes_b
    np.testing.assert_allclose(a, b, atol=2.0)


def test_unevenly_lit_paper_is_still_paper(test_digits):
    picture, boxes = strip(test_digits, "75008", 2)
    if np.median(picture) < 128:
        picture = 255 - picture
    # A photo lit from the right: the paper darkens to 45% of its brightness on the left.
    shade = np.linspace(0.45, 1.0, picture.shape[1])[None, :]
    _, found = segment_digits(picture * shade)
    assert len(found) == 5 and all(inside(f, t) for f, t in zip(found, boxes, strict=True))


@pytest.mark.parametrize("seed", range(3))
def test_a_digit_written_paler_than_the_rest_is_found(test_digits, seed):
    picture, boxes = strip(test_digits, "75008", seed)
    picture = picture.astype(np.float64)
    paper = np.median(picture)
    t, left, b, r = boxes[1]
    # The 5 written with a pen running dry: its ink a quarter as far from the paper.
    picture[t:b, left:r] = paper + 0.25 * (picture[t:b, left:r] - paper)
    _, found = segment_digits(picture)
    assert len(found) == 5 and all(inside(f, t) for f, t in zip(found, boxes, strict=True))


def rings(gap: int, bridge: bool = True) -> np.ndarray:
    """Two drawn zeros ``gap`` px apart, dark on light, joined by a short stroke if ``bridge``."""
    im = Image.new("L", (140 + gap, 80), 235)
    draw = ImageDraw.Draw(im)
    draw.ellipse((10, 10, 60, 70), outline=20, width=7)
    draw.ellipse((60 + gap, 10, 110 + gap, 70), outline=20, width=7)
    if bridge:  # as a pen that did not lift between the digits
        draw.line((58, 52, 62 + gap, 52), fill=20, width=4)
    return np.asarray(im, dtype=np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_statistics_of_sorted_values_are_numpys_bit_for_bit(dtype):
    # ink_map sorts once instead of letting np.percentile and np.median partition copies;
    # the reads must not change by one bit.
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 4, 7, 100, 1001, 2500]:
        for values in (rng.random(n) * 255, rng.integers(0, 256, n), rng.normal(size=n)):
            x = values.astype(dtype)
            s = np.sort(x)
            for q in ([1, 50, 99], 99.9, 50, 0, 100, [0, 37.5, 100], 1):
                expected, got = np.percentile(x, q), sorted_percentile(s, q)
                assert np.array_equal(expected, got)
                assert np.asarray(got).dtype == np.asarray(expected).dtype
            assert sorted_median(s) == np.median(x)
            assert np.asarray(sorted_median(s)).dtype == np.median(x).dtype
    with_nan = np.sort(np.array([3.0, np.nan, 1.0], dtype))
    assert np.isnan(sorted_percentile(with_nan, [1, 50])).all()
    assert np.isnan(sorted_percentile(with_nan, 99.9)) and np.isnan(sorted_median(with_nan))


def test_claiming_ink_near_the_pieces_is_claiming_it_on_the_whole_picture():
    # claim_ink runs its distance transform on the pieces' box grown by their reach only:
    # what it claims must be what the transform of the whole picture claims.
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    for _ in range(20):
        loose = ndimage.gaussian_filter(rng.random((60, 160)), 2.0) > 0.52
        # Ink in a box inside the picture, some of it loose only, so that the box matters.
        top, left = rng.integers(0, 20), rng.integers(0, 60)
        inside = np.zeros_like(loose)
        inside[top + 8 : top + 30, left + 8 : left + 90] = True
        loose &= inside
        loose[top : top + 38, left : left + 98] |= rng.random((38, 98)) > 0.9
        strict = ndimage.binary_erosion(loose)
        pieces = [p for p in components(strict) if p.area >= 3]
        reach = float(rng.uniform(2.0, 6.0))
        labels = np.zeros(loose.shape, dtype=np.int32)
        for k, p in enumerate(pieces, start=1):
            labels[p.top : p.bottom, p.left : p.right][p.mask] = k
        dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        owner = np.where((dist <= 2.0) | (loose & (dist <= reach)), labels[iy, ix], 0)
        got = np.zeros(loose.shape, dtype=np.int32)
        for k, p in enumerate(claim_ink(pieces, loose, reach), start=1):
            got[p.top : p.bottom, p.left : p.right][p.mask] = k
        assert len(pieces) > 1
        np.testing.assert_array_equal(got, owner)


def test_touching_digits_are_split_at_the_valley():
    picture = rings(6)
    assert len(components(ink_map(picture) > 128)) == 1  # one blob of ink
    _, pieces = segment(picture)
    assert len(pieces) == 2
    # The cut falls on the bridge (columns 60..66), not inside either ring.
    assert 58 <= pieces[0].right <= 68 and 58 <= pieces[1].left <= 68


def test_one_digit_wide_enough_is_not_split():
    im = Image.new("L", (100, 80), 235)
    ImageDraw.Draw(im).ellipse((10, 10, 75, 70), outline=20, width=7)  # a wide zero
    _, pieces = segment(np.asarray(im, dtype=np.float64))
    assert len(pieces) == 1


def test_expected_length_splits_and_merges():
    _, pieces = segment(rings(-4, bridge=False), expect_digits=2)
    assert len(pieces) == 2
    _, pieces = segment(rings(20, bridge=False), expect_digits=1)  # two apart, one expected: merged
    assert len(pieces) == 1


def test_best_path_is_the_best_of_all_groupings_and_totals_them():
    """The dynamic programme against brute force over every way to group 6 atoms into 3."""
    rng = np.random.default_rng(0)
    m, n = 6, 3
    score = {(i, j): float(rng.normal()) for i in range(m) for j in range(i + 1, min(i + 3, m) + 1)}
    groupings = []
    for ends in itertools.combinations(range(1, m), n - 1):
        bounds = (0, *ends, m)
        spans = list(itertools.pairwise(bounds))
        if all(s in score for s in spans):
            groupings.append((sum(score[s] for s in spans), spans))
    path, best, total = _best_path(score, m, n)
    top = max(groupings)
    assert path == top[1] and best == pytest.approx(top[0])
    assert total == pytest.approx(np.logaddexp.reduce([g for g, _ in groupings]))
    assert _best_path(score, m, 1)[0] is None  # 6 atoms are never one digit of at most 3


def test_a_digit_over_cut_into_four_atoms_is_a_candidate():
    """A 0 touching its neighbour is often over-cut into four atoms: one candidate holds them all,
    but never more than four, nor a run two digit heights wide."""
    atoms = [Piece(0, 8 * k, np.ones((30, 8), dtype=bool)) for k in range(9)]
    groups = candidate_groups(atoms, height=30.0)
    assert (0, 4) in groups and groups[0, 4].box == (0, 0, 30, 32)
    assert (0, 5) not in groups
    wide = [Piece(0, 20 * k, np.ones((30, 20), dtype=bool)) for k in range(5)]
    assert (0, 3) in candidate_groups(wide, height=30.0)
    assert (0, 4) not in candidate_groups(wide, height=30.0)  # 80 px: over two heights
    assert (4, 5) in candidate_groups(atoms, height=30.0, most=1)
    assert (0, 4) not in candidate_groups(atoms, height=30.0, most=3)


def test_departures_count_the_first_cuts_undone_and_added():
    origin = [0, 0, 1, 2, 2]  # atoms 0-1 and 3-4 were one piece each in the first cut
    assert _departures((0, 2), origin) == 0  # the first piece whole
    assert _departures((0, 1), origin) == 1  # splits it
    assert _departures((1, 4), origin) == 3  # joins parts of three pieces, splits the last
    assert _departures((3, 5), origin) == 0 and _departures((0, 1), None) == 0


@pytest.mark.parametrize(("seed", "code"), [(0, "25868"), (3, "21522"), (20, "85823")])
def test_recognition_fixes_cuts_the_shapes_alone_get_wrong(test_digits, model, seed, code):
    """Touching digits the geometric cut gets wrong; grouped by the classifier, they are right."""
    picture, boxes = strip(test_digits, code, seed, touch_rate=0.5)
    _, first = segment(picture, expect_digits=5)
    assert not all(inside(p.box, t) for p, t in zip(first, boxes, strict=True))
    read = CodeReader(model[0], expect_digits=5).read(picture)
    assert all(inside(f, t) for f, t in zip(read.boxes, boxes, strict=True)), (read.boxes, boxes)
    assert read.code == code and 0.0 < read.cut_certainty <= 1.0


def leaning_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two strokes leaning right, side by side, joined by a short bridge: the masks ``(80, 70)``
    of the left one and of the right one (bridge included)."""
    masks = []
    for x in (8, 22):
        im = Image.new("1", (70, 80), 0)
        ImageDraw.Draw(im).line((x, 75, x + 16, 4), fill=1, width=7)
        masks.append(np.asarray(im, dtype=bool))
    bridge = Image.new("1", (70, 80), 0)
    ImageDraw.Draw(bridge).line((16, 40, 30, 40), fill=1, width=3)
    left = masks[0]
    return left, (masks[1] | np.asarray(bridge, dtype=bool)) & ~left


def test_a_bent_cut_separates_digits_no_column_separates():
    left, right = leaning_pair()
    cols = np.flatnonzero(left.any(axis=0)), np.flatnonzero(right.any(axis=0))
    assert cols[0].max() > cols[1].min() + 5  # their columns overlap: no straight cut
    piece = Piece(0, 0, left | right).trimmed()
    parts = piece.cut(cut_paths(piece, spacing=10))
    # Some run of parts from the left is the left stroke, all but a bridge's pixels.
    owned = np.zeros_like(left)
    best = 0
    for part in parts:
        owned[part.top : part.bottom, part.left : part.right] |= part.mask
        if not (owned & right).sum() > 40:
            best = max(best, (owned & left).sum())
    assert best == left.sum()


def test_a_thick_blob_wide_as_two_digits_is_still_over_cut():
    """Paths sliding out to a fused blob's sides cross least ink, so no path has an inner
    minimum; the blob is cut once anyway, at its column valley."""
    im = Image.new("1", (60, 44), 0)
    ImageDraw.Draw(im).ellipse((2, 2, 56, 42), fill=1)
    blob = Piece(0, 0, np.asarray(im, dtype=bool)).trimmed()
    assert cut_paths(blob, spacing=10) == []
    parts = over_cut([blob], height=40.0)
    assert len(parts) == 2 and sum(p.area for p in parts) == blob.area


@pytest.mark.parametrize(("seed", "code"), [(3, "41712"), (11, "41712"), (14, "17141")])
def test_narrow_ones_touching_their_neighbours_are_cut_right(test_digits, model, seed, code):
    """Every pair touching (a 1 leaning into a 4, a 7): cut along bent paths at several places,
    the classifier finds the digits (the deepest column valleys alone cut these wrong)."""
    picture, boxes = strip(test_digits, code, seed, touch_rate=1.0)
    read = CodeReader(model[0], expect_digits=5).read(picture)
    assert all(inside(f, t) for f, t in zip(read.boxes, boxes, strict=True)), (read.boxes, boxes)
    assert read.code == code


def test_blank_and_empty_pictures_are_errors():
    with pytest.raises(DeepnetError, match="no ink found"):
        segment(np.full((40, 120), 250.0))
    with pytest.raises(DeepnetError, match="non-empty 2-D"):
        segment(np.zeros((0, 10)))


def test_reader_reads_codes_and_flags_doubtful_ones(test_digits, model):
    m, _ = model
    right = 0
    for seed in range(10):
        picture, _ = strip(test_digits, "75008", seed)
        read = CodeReader(m, expect_digits=5).read(picture)
        assert len(read.code) == 5 and len(read.confidences) == 5
        assert read.confidence == pytest.approx(np.prod(read.confidences))
        assert read.needs_human == (read.confidence < 0.9)
        right += read.code == "75008"
    assert right >= 7
    assert CodeReader(m, min_confidence=1.0).read(picture).needs_human
    # A known length is met by splitting the widest piece.
    assert len(CodeReader(m, expect_digits=6).read(picture).code) == 6


def test_reading_many_prepares_the_model_once_and_reads_the_same(test_digits, model, monkeypatch):
    m, _ = model
    pictures = [strip(test_digits, "75008", seed, touch_rate=0.5)[0] for seed in range(4)]
    reader = CodeReader(m, expect_digits=5)
    one_by_one = reader.classify([reader.segment(p) for p in pictures])  # predict_proba
    made = []
    predictor = Model.predictor
    monkeypatch.setattr(Model, "predictor", lambda self: made.append(1) or predictor(self))
    reads = reader.read_many(pictures)
    assert len(made) == 1
    assert [(r.code, r.confidences) for r in reads] == [(r.code, r.confidences) for r in one_by_one]


def test_two_doubtful_digits_make_a_code_less_sure_than_one(model):
    """The code's confidence is its digits' probabilities multiplied, not its weakest one's."""
    reader = CodeReader(model[0], expect_digits=5)
    proba = np.zeros((2, 5, 10))
    proba[:, :, 3] = 1.0  # 33333
    proba[0, :1, 3] = proba[1, :2, 3] = 0.7  # one doubtful digit, and two
    proba[0, :1, 5] = proba[1, :2, 5] = 0.3
    boxes = [(0, 10 * k, 20, 10 * k + 8) for k in range(5)]
    cuts = [Cut(np.zeros((5, 28, 28)), boxes, proba=p, heights=(20,) * 5) for p in proba]
    a, b = reader.classify(cuts)
    assert a.code == b.code == "33333" and min(a.confidences) == min(b.confidences) == 0.7
    assert a.confidence == pytest.approx(0.7) and b.confidence == pytest.approx(0.49)
    assert a.needs_human and a.reason == "code at 70.0% < 90.0%: digit 1 (3) at 70.0%"


def test_a_digit_much_shorter_than_the_line_makes_a_code_doubtful(model):
    """A piece far shorter than its neighbours is most often a fragment of a wrong cut."""
    reader = CodeReader(model[0], expect_digits=5)
    proba = np.eye(10)[[1, 2, 3, 4, 5]]
    boxes = [(0, 10 * k, 20, 10 * k + 8) for k in range(5)]
    even = Cut(np.zeros((5, 28, 28)), boxes, proba=proba, heights=(40, 44, 38, 40, 42))
    short = attrs.evolve(even, heights=(40, 44, 20, 40, 42))  # half the median height
    a, b = reader.classify([even, short])
    assert a.confidence == 1.0 and not a.needs_human
    assert b.confidence == pytest.approx(np.exp(-SHORT_COST * (SHORT_DIGIT - 0.5)))
    assert b.needs_human and b.reason.endswith("digit 3 only 50% of the line's height")
    assert height_plausibility(()) == height_plausibility((30, 30, 30 * SHORT_DIGIT)) == 1.0


def test_accuracy_at_rejection_drops_the_least_confident_first():
    correct = np.array([True, False, True, True, False])
    confidence = np.array([0.9, 0.2, 0.8, 0.99, 0.5])
    assert accuracy_at_rejection(correct, confidence, 0.0) == (0.6, 0.0)
    assert accuracy_at_rejection(correct, confidence, 0.4) == (1.0, 0.8)
    accuracy, threshold = accuracy_at_rejection(correct, confidence, 1.0)
    assert np.isnan(accuracy) and threshold == np.inf  # all rejected: nothing to be right
    np.testing.assert_array_equal(accepted(confidence, 0.4), [2, 0, 3])


def invoke(*args, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def test_cli_reads_a_code_from_a_png(test_digits, model, tmp_path):
    m, path = model
    picture, _ = strip(test_digits, "75008", 1)
    png = tmp_path / "envelope.png"
    Image.fromarray(picture).save(png)
    expected = CodeReader(m, expect_digits=5).read(png)
    debug = tmp_path / "d"
    out = invoke("predict", path, png, "--code", "--expect-digits", 5, "--debug-dir", debug)
    assert out.output.startswith(f"{png}: {expected.code}  (")
    assert f"{expected.confidences[0]:.1%}" in out.output
    assert len(list((tmp_path / "d").glob("envelope-*.png"))) == 5
    with Image.open(tmp_path / "d" / f"envelope-1-{expected.code[0]}.png") as im:
        assert im.size == (28, 28)
    doubt = invoke("predict", path, png, "--code", "--min-confidence", 1, "--json").output
    doubt = json.loads(doubt)
    assert doubt[0]["needs_human"] and len(doubt[0]["digits"]) == len(doubt[0]["code"])


def test_cli_errors_are_one_line(model, tmp_path):
    _, path = model
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a picture")
    out = invoke("predict", path, garbage, "--code", code=2)
    assert "garbage.png: not a picture" in out.output and len(out.output.splitlines()) == 1
    blank = tmp_path / "blank.png"
    Image.new("L", (120, 40), 240).save(blank)
    out = invoke("predict", path, blank, "--code", code=2)
    assert "blank.png: no ink found" in out.output
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "empty.png" in invoke("predict", path, empty, "--code", code=2).output
    assert "no such file" in invoke("predict", path, tmp_path / "x.png", "--code", code=2).output
    out = invoke("predict", path, blank, "--expect-digits", 5, code=2)  # without --code
    assert "--expect-digits and --debug-dir read codes: add --code" in out.output


def test_synth_and_eval_on_a_small_set(model, tmp_path):
    _, path = model
    invoke("postal", "synth", tmp_path / "set", "--count", 20, "--seed", 4)
    with open(tmp_path / "set" / "codes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and all(len(r["code"]) == 5 for r in rows)
    with Image.open(tmp_path / "set" / rows[0]["file"]) as im:
        assert im.mode == "L"
    # The same seed gives the same set.
    invoke("postal", "synth", tmp_path / "again", "--count", 20, "--seed", 4)
    assert (tmp_path / "again" / rows[0]["file"]).read_bytes() == (
        tmp_path / "set" / rows[0]["file"]
    ).read_bytes()
    result = json.loads(invoke("postal", "eval", path, tmp_path / "set", "--json").output)
    assert result["codes"] == 20 and result["right_length"] == 1.0
    assert result["digit_accuracy"] >= 0.85 and result["code_accuracy"] >= 0.5
    rates = [row["rejection"] for row in result["rejection_table"]]
    assert rates[0] == 0.0 and result["rejection_table"][0]["accuracy"] == result["code_accuracy"]
    two = json.loads(invoke("postal", "eval", path, tmp_path / "set", "--jobs", 2, "--json").output)
    assert two["code_accuracy"] == result["code_accuracy"] and two["errors"] == result["errors"]
    text = invoke("postal", "eval", path, tmp_path / "set", "--limit", 5).output
    assert "codes read exactly" in text and "codes/s" in text
    text = invoke("postal", "eval", path, tmp_path / "set", "--limit", 2, "--min-confidence", 1)
    assert "100.0% sent to a human, none left" in text.output and "nan" not in text.output
    assert "no such file" in invoke("postal", "eval", path, tmp_path, code=2).output
    (tmp_path / "taken").touch()
    taken = invoke("postal", "synth", tmp_path / "taken", "--count", 1, code=2).output
    assert taken.strip() == f"Error: {tmp_path / 'taken'}: file exists"


def test_reading_a_missing_file_through_the_api_names_it(model, tmp_path):
    m, _ = model
    with pytest.raises(DataFormatError, match=r"nothing\.png"):
        CodeReader(m).read(tmp_path / "nothing.png")


@pytest.mark.parametrize("row", ["a.png", "a.png,", ",12345", "a.png,12a45", "a.png,1²"])
def test_a_bad_row_of_codes_csv_names_the_file_and_line(tmp_path, row):
    (tmp_path / "codes.csv").write_text(f"file,code\nok.png,00123\n{row}\n")
    with pytest.raises(DataFormatError, match=r"codes\.csv:3: expected a file and a code"):
        read_set(tmp_path)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second, differently trained digit model (another seed, fewer images)."""
    from deepnet.datasets import load_mnist

    data = load_mnist()
    m = Model([Dense(64, "relu"), Dense(10, "softmax")])
    m.fit(data.x_train[:10000], data.y_train[:10000], epochs=2, lr=0.1, seed=1)
    path = tmp_path_factory.mktemp("postal") / "other.npz"
    m.save(path)
    return m, path


def test_an_ensemble_pools_its_models_probabilities(test_digits, model, other_model):
    (a, _), (b, _) = model, other_model
    digits = test_digits[0][:20].reshape(20, 28, 28).astype(np.float32)
    alone = [CodeReader(a).score(digits), CodeReader(b).score(digits)]
    both = CodeReader([a, b]).score(digits)
    np.testing.assert_allclose(both, pool(alone, "geometric"), rtol=1e-6)
    assert not np.allclose(both, alone[0])  # b counts
    mean = CodeReader([a, b], combine="mean").score(digits)
    np.testing.assert_allclose(mean, (alone[0] + alone[1]) / 2, rtol=1e-6)
    with pytest.raises(DeepnetError, match="unknown combine 'median'"):
        CodeReader([a, b], combine="median")
    picture, _ = strip(test_digits, "75008", 3)
    read = CodeReader((a, b), expect_digits=5).read(picture)
    assert len(read.code) == 5
    with pytest.raises(DeepnetError, match="at least one model"):
        CodeReader([])
    wide = Model([Dense(10, "softmax")])
    wide.build((785,))
    with pytest.raises(DeepnetError, match=r"784 inputs and 10 outputs, got \(785,\)"):
        CodeReader([a, wide])


def test_cli_reads_with_an_ensemble(test_digits, model, other_model, tmp_path):
    (a, path), (b, other) = model, other_model
    picture, _ = strip(test_digits, "75008", 1)
    png = tmp_path / "envelope.png"
    Image.fromarray(picture).save(png)
    expected = CodeReader([a, b], expect_digits=5).read(png)
    out = invoke("predict", path, png, "--code", "--expect-digits", 5, "--with", other, "--json")
    got = json.loads(out.output)[0]
    assert got["code"] == expected.code
    assert got["confidence"] == pytest.approx(expected.confidence)
    # Plain digits too: the two models' probabilities pooled, geometric unless told.
    digit = tmp_path / "digit.npy"
    np.save(digit, test_digits[0][:1])
    one = json.loads(invoke("predict", path, digit, "--json").output)[0]["probabilities"]
    two = json.loads(invoke("predict", other, digit, "--json").output)[0]["probabilities"]
    pooled = {c: pool([np.array([one]), np.array([two])], c)[0] for c in ("geometric", "mean")}
    assert not np.allclose(pooled["geometric"], pooled["mean"], rtol=1e-5)  # told apart below
    for combine in ("", "geometric", "mean"):
        flag = ("--combine", combine) if combine else ()
        ens = invoke("predict", path, digit, "--with", other, *flag, "--json")
        expected = pooled[combine or "geometric"]
        np.testing.assert_allclose(json.loads(ens.output)[0]["probabilities"], expected, 1e-5)
    invoke("postal", "synth", tmp_path / "set", "--count", 4, "--seed", 2)
    result = invoke("postal", "eval", path, tmp_path / "set", "--with", other, "--json").output
    assert json.loads(result)["with"] == [str(other)]
    assert json.loads(result)["combine"] == "geometric"
    text = invoke("postal", "eval", path, tmp_path / "set", "--with", other, "--combine", "mean")
    assert f"model: {path} + {other} (mean)" in text.output
    wide = Model([Dense(10, "softmax")])
    wide.build((785,))
    wide.save(tmp_path / "wide.npz")
    out = invoke("predict", path, png, "--code", "--with", tmp_path / "wide.npz", code=2)
    assert "wide.npz: maps (785,) -> (10,)" in out.output and "must agree" in out.output


@pytest.mark.parametrize("seed", range(4))
def test_a_sure_first_cut_reads_as_the_full_regrouping_does(test_digits, model, seed, monkeypatch):
    """The shortcut (:func:`sure_first_cut`) takes the code, and gives the digits, boxes and
    probabilities the over-cut and regrouped reading gives."""
    picture, _ = strip(test_digits, "75008", seed)
    reader = CodeReader(model[0], expect_digits=5)
    fast = reader.segment(picture)
    assert fast.certainty == 1.0 and fast.proba is not None
    monkeypatch.setattr(postal, "SURE", 1.01)  # no probability reaches it: always regroup
    full = reader.segment(picture)
    assert full.boxes == fast.boxes
    np.testing.assert_allclose(full.digits, fast.digits)
    np.testing.assert_allclose(full.proba, fast.proba, rtol=1e-5)


def test_a_first_cut_is_sure_only_when_nothing_hints_at_a_wrong_cut():
    ink = np.zeros((40, 200))
    pieces = []
    for k in range(5):
        ink[5:35, 10 + 38 * k : 30 + 38 * k] = 255.0
        pieces.append(Piece(5, 10 + 38 * k, np.ones((30, 20), dtype=bool)))
    loose = ink > 0

    def scorer(p: float):
        return lambda digits: np.tile([p] + [(1 - p) / 9] * 9, (len(digits), 1))

    sure = sure_first_cut(ink, pieces, 5, scorer(0.95), 30.0, loose, 2.0)
    assert sure is not None and len(sure.pieces) == 5 and sure.digits.shape == (5, 28, 28)
    assert sure_first_cut(ink, pieces, 5, scorer(0.5), 30.0, loose, 2.0) is None  # unsure
    assert sure_first_cut(ink, pieces, 6, scorer(0.95), 30.0, loose, 2.0) is None  # count
    short = [*pieces[:4], Piece(20, pieces[4].left, np.ones((15, 20), dtype=bool))]
    assert sure_first_cut(ink, short, 5, scorer(0.95), 30.0, loose, 2.0) is None  # fragment
    wide = [*pieces[:4], Piece(5, pieces[4].left, np.ones((30, 60), dtype=bool))]
    assert sure_first_cut(ink, wide, 5, scorer(0.95), 30.0, loose, 2.0) is None  # two digits


def test_composed_strips_are_the_pictures_synth_writes(tmp_path):
    synthesize(tmp_path, 3, seed=5)
    pairs = read_set(tmp_path)
    strips = list(compose_set(3, seed=5))
    for (path, code), strip in zip(pairs, strips, strict=True):
        assert strip.code == code and len(strip.indices) == len(strip.boxes) == 5
        np.testing.assert_array_equal(np.asarray(Image.open(path)), strip.picture)
