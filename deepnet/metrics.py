"""Classification metrics: confusion matrix, per-class precision/recall/F1, most confused pairs.

Conventions follow scikit-learn: ``confusion[i, j]`` counts samples of true class ``i``
predicted as ``j``; a precision or recall whose denominator is 0 is reported as 0.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if n_classes is None:
        n_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    # bincount on the flattened (true, pred) index is one pass and exact.
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat[: n_classes * n_classes].reshape(n_classes, n_classes)


@attrs.frozen
class ClassScore:
    """Precision, recall, F1 and support (true samples) of one class."""

    label: int
    precision: float
    recall: float
    f1: float
    support: int


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def per_class_scores(confusion: np.ndarray) -> list[ClassScore]:
    """One :class:`ClassScore` per row of ``confusion``."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return [
        ClassScore(k, float(precision[k]), float(recall[k]), float(f1[k]), int(support[k]))
        for k in range(len(confusion))
    ]


def most_confused(confusion: np.ndarray, top: int = 5) -> list[tuple[int, int, int]]:
    """The ``top`` off-diagonal cells as ``(true, predicted, count)``, largest first."""
    off = np.array(confusion, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    rows, cols = np.unravel_index(order, off.shape)
    pairs = [(int(i), int(j), int(off[i, j])) for i, j in zip(rows, cols, strict=True)]
    return [p for p in pairs if p[2] > 0]


def classification_report(y_true: Any, y_pred: Any, n_classes: int | None = None) -> dict:
    """Accuracy, per-class scores, macro averages, confusion matrix and confused pairs."""
    confusion = confusion_matrix(y_true, y_pred, n_classes)
    scores = per_class_scores(confusion)
    total = int(confusion.sum())
    return {
        "samples": total,
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "classes": [attrs.asdict(s) for s in scores],
        "macro": {
            key: float(np.mean([getattr(s, key) for s in scores])) if scores else 0.0
            for key in ("precision", "recall", "f1")
        },
        "confusion": confusion.tolist(),
        "most_confused": [
            {"true": t, "predicted": p, "count": c} for t, p, c in most_confused(confusion)
        ],
    }
