"""Fixtures of the contrib tests: a registry that has the contributed components."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from deepnet.core import plugins
from deepnet.testing import registry_with, using_registry

MODULES = ("activations", "regularizers", "optimizers", "schedules", "callbacks", "layers")


@pytest.fixture(scope="module")
def registry():
    """The process registry with contrib's components: the installed entry points if present,
    else the modules loaded in-process (a source tree where contrib was never installed)."""
    installed = plugins.get_registry()
    if "adam" in installed.names("optimizer"):
        yield installed
        return
    modules = [importlib.import_module(f"deepnet_plugins_contrib.{m}") for m in MODULES]
    with using_registry(registry_with(*modules)) as reg:
        yield reg


@pytest.fixture
def blobs():
    """Two overlapping Gaussian blobs in 5-D with a dev set: (x, y, x_dev, y_dev)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    x = rng.normal(size=(400, 5)) + 1.5 * np.where(y[:, None] == 1, 1.0, -1.0) * np.eye(5)[0]
    return x[:300], y[:300], x[300:], y[300:]
