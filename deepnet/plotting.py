"""Pictures of training and evaluation: learning curves and confusion matrices (matplotlib).

Figures are drawn on the Agg canvas directly rather than through pyplot, so nothing here needs a
display or changes matplotlib's global backend. The format follows the file name (PNG, SVG, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepnet._extras import require


def _figure(width: float, height: float) -> Any:
    figure = require("matplotlib.figure")
    agg = require("matplotlib.backends.backend_agg")
    fig = figure.Figure(figsize=(width, height), dpi=100, layout="constrained")
    agg.FigureCanvasAgg(fig)
    return fig


def learning_curves(epochs: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Loss (train, dev) and accuracy (train, dev) per epoch, side by side."""
    ticker = require("matplotlib.ticker")
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    x = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
    for ax, keys, title in (
        (loss_ax, ("loss", "dev_loss"), "loss"),
        (acc_ax, ("train_accuracy", "dev_accuracy"), "accuracy"),
    ):
        for key, label in zip(keys, ("train", "dev"), strict=True):
            ys = [e.get(key, np.nan) for e in epochs]
            if not np.all(np.isnan(ys)):
                ax.plot(x, ys, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path)
    return Path(path)


def confusion_picture(confusion: Any, path: str | Path, labels: Sequence[str] = ()) -> Path:
    """The confusion matrix as a heat map with counts (rows true, columns predicted)."""
    cm = np.asarray(confusion)
    k = len(cm)
    labels = list(labels) or [str(i) for i in range(k)]
    fig = _figure(1.2 + 0.55 * k, 0.8 + 0.55 * k)
    ax = fig.subplots()
    # Log-ish colour scale: the diagonal would otherwise wash out every mistake.
    image = ax.imshow(np.log1p(cm), cmap="Blues")
    threshold = np.log1p(cm).max() / 2
    for i in range(k):
        for j in range(k):
            colour = "white" if np.log1p(cm[i, j]) > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    fig.colorbar(image, ax=ax, label="log(1 + count)", shrink=0.8)
    fig.savefig(path)
    return Path(path)


def sweep_picture(
    results: Sequence[Mapping[str, Any]],
    params: Sequence[str],
    path: str | Path,
    metric: str = "dev_accuracy",
) -> Path:
    """``metric`` of each finished trial against each parameter that varied, one panel each.

    Numbers are placed by value (on a log axis when they span 20x or more), other values
    (layer specs, optimizer configs) as categories; the best trial is the red star.
    """
    ok = [r for r in results if r.get("status") == "ok" and np.isfinite(r.get(metric, np.nan))]
    varied = [p for p in params if len({_label(r["params"].get(p)) for r in ok}) > 1] or [None]
    fig = _figure(3.6 * len(varied), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(varied)))
    scores = [r[metric] for r in ok]
    best = (np.argmin if metric.endswith("loss") else np.argmax)(scores) if ok else None
    for ax, param in zip(axes, varied, strict=True):
        values = [r["params"].get(param) for r in ok] if param else list(range(len(ok)))
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = np.asarray(values, dtype=float)
            if len(xs) and xs.min() > 0 and xs.max() >= 20 * xs.min():
                ax.set_xscale("log")
        else:
            labels = sorted({_label(v) for v in values})
            xs = np.asarray([labels.index(_label(v)) for v in values], dtype=float)
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=7)
            ax.set_xlim(-0.5, len(labels) - 0.5)  # categories off the frame's edges
        ax.scatter(xs, scores, alpha=0.7)
        if best is not None:
            ax.scatter([xs[best]], [scores[best]], marker="*", s=150, color="red", label="best")
            ax.legend(fontsize=7)
        ax.set_xlabel(param or "trial")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return Path(path)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
