"""Shared fixtures: small synthetic data, the bundled MNIST, and registry swapping."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from deepnet.testing import registry_with, using_registry


@pytest.fixture
def registry_of():
    """Make a registry with extra in-process plugins the process-wide one, for one test."""
    with contextlib.ExitStack() as stack:

        def install(*extra, **kwargs):
            return stack.enter_context(using_registry(registry_with(*extra, **kwargs)))

        yield install


@pytest.fixture(scope="session")
def mnist():
    from deepnet.datasets import load_mnist

    return load_mnist()


@pytest.fixture
def blobs():
    """Three well separated Gaussian blobs in 4-D: (x (300, 4) float, y (300,) int)."""
    rng = np.random.default_rng(0)
    centers = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], dtype=float)
    y = rng.integers(0, 3, size=300)
    x = centers[y] + rng.normal(scale=0.5, size=(300, 4))
    return x, y
