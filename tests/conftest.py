"""Shared fixtures: small synthetic data, a real MNIST subset, and registry swapping."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet.core import plugins


@pytest.fixture
def registry_of():
    """Make a registry with extra in-process plugins the process-wide one, for one test."""
    saved = plugins.get_registry()

    def install(*extra, **kwargs):
        registry = plugins.load_plugins(extra=extra, **kwargs)
        plugins.set_registry(registry)
        return registry

    yield install
    plugins.set_registry(saved)


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
