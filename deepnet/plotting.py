"""Pictures of training and evaluation: learning curves and confusion matrices (matplotlib).

Figures are drawn on the Agg canvas directly rather than through pyplot, so nothing here needs a
display or changes matplotlib's global backend. The format follows the file name (PNG, SVG, ...).
"""

from __future__ import annotations

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
