"""Classification metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet.metrics import classification_report, confusion_matrix, most_confused, per_class_scores

Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 2, 2, 2, 0, 0]


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [2, 0, 2]]
    assert cm.dtype == np.int64


def test_confusion_matrix_keeps_classes_never_seen():
    assert confusion_matrix([0, 1], [1, 1], n_classes=4).shape == (4, 4)


def test_confusion_matrix_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        confusion_matrix([0, 1, 2], [0, 1])


def test_per_class_scores_by_hand():
    scores = per_class_scores(confusion_matrix(Y_TRUE, Y_PRED))
    # class 0: tp 2, predicted 4, true 3; class 2: tp 2, predicted 3, true 4.
    assert scores[0].precision == pytest.approx(2 / 4)
    assert scores[0].recall == pytest.approx(2 / 3)
    assert scores[0].f1 == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert scores[2].precision == pytest.approx(2 / 3)
    assert scores[2].recall == pytest.approx(2 / 4)
    assert [s.support for s in scores] == [3, 2, 4]


def test_a_class_never_predicted_scores_zero_not_nan():
    scores = per_class_scores(confusion_matrix([0, 1, 1], [0, 0, 0]))
    assert (scores[1].precision, scores[1].recall, scores[1].f1) == (0.0, 0.0, 0.0)


def test_most_confused_orders_by_count_and_skips_zeros():
    cm = np.array([[5, 3, 0], [1, 5, 0], [7, 0, 5]])
    assert most_confused(cm, top=5) == [(2, 0, 7), (0, 1, 3), (1, 0, 1)]
    assert most_confused(np.eye(3, dtype=int)) == []


def test_classification_report():
    report = classification_report(Y_TRUE, Y_PRED)
    assert report["samples"] == 9
    assert report["accuracy"] == pytest.approx(5 / 9)
    assert report["most_confused"][0] == {"true": 2, "predicted": 0, "count": 2}
    assert report["macro"]["recall"] == pytest.approx(np.mean([2 / 3, 1 / 2, 2 / 4]))
    assert len(report["classes"]) == 3 and report["classes"][1]["label"] == 1
