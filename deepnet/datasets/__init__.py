"""Data sets shipped with deepnet: MNIST, bundled as package data so it loads offline."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from numpy.typing import DTypeLike

from deepnet.core.data import (
    FASHION_MNIST,
    Dataset,
    fetch_idx_files,
    load_idx_dir,
    read_idx,
    train_dev_split,
)

__all__ = [
    "FASHION_MNIST",
    "MNIST_DIR",
    "Dataset",
    "fetch_idx_files",
    "load_idx_dir",
    "load_mnist",
    "read_idx",
    "train_dev_split",
]

# A regular (non-zipped) package, so the resource is a real directory on disk.
MNIST_DIR: Path = Path(str(files("deepnet.datasets") / "mnist"))


def load_mnist(
    *,
    normalize: str = "scale",
    dtype: DTypeLike = "float32",
    flatten: bool = True,
    data_dir: str | Path | None = None,
) -> Dataset:
    """Load MNIST: x_train (60000, 784), x_test (10000, 784) (or (N, 28, 28)), labels (N,) int64.

    Reads the bundled copy unless ``data_dir`` names another MNIST-layout directory. See
    :func:`load_idx_dir` for ``normalize`` and ``dtype``.
    """
    directory = MNIST_DIR if data_dir is None else Path(data_dir)
    return load_idx_dir(directory, normalize=normalize, dtype=dtype, flatten=flatten, name="mnist")
