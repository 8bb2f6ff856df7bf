"""Tests of the contributed recipes: the regularized CNN's architecture and a short run."""

from __future__ import annotations

import numpy as np
import pytest

import deepnet
from deepnet.core import plugins
from deepnet.core.data import Dataset
from deepnet.recipes import run_recipe
from deepnet_plugins_contrib.recipes import POSTAL, REGULARIZED

# conftest's registry: contrib installed, or its modules loaded in-process.
pytestmark = pytest.mark.usefixtures("registry")


def test_regularized_architecture(tmp_path):
    model = REGULARIZED.model().build((784,), seed=0)
    names = [plugins.get_registry().spec_of(layer) for layer in model.layers]
    assert names == [
        "reshape", "random_shift", "conv2d", "max_pool2d", "batch_norm",
        "conv2d", "max_pool2d", "batch_norm", "flatten", "dense", "dropout", "dense",
    ]  # fmt: skip
    assert model.output_shape == (10,)
    assert sum(model.count_params()) == 832 + 64 + 51264 + 128 + 131200 + 1290
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    loaded = deepnet.load(model.save(tmp_path / "regularized.npz"))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_postal_is_regularized_with_affine_distortions_of_the_raw_pixels():
    model = POSTAL.model(raw_pixels=True).build((784,), seed=0)
    names = [plugins.get_registry().spec_of(layer) for layer in model.layers]
    assert names[:4] == ["random_affine", "normalize", "reshape", "conv2d"]
    assert "random_shift" not in names
    assert sum(model.count_params()) == sum(REGULARIZED.model().build((784,)).count_params())


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [REGULARIZED, POSTAL], ids=lambda r: r.name)
def test_cnn_recipes_learn_from_a_small_subset(mnist_subset, recipe):
    _, summary = run_recipe(recipe, mnist_subset, epochs=2)
    assert summary["dev_accuracy"] > 0.8


@pytest.fixture(scope="module")
def mnist_subset() -> Dataset:
    """2400 MNIST training images, split into train and dev by the recipe; no test images."""
    data = deepnet.load_mnist()
    x, y = data.x_train[:2400], data.y_train[:2400]
    return Dataset(x_train=x, y_train=y, x_test=x[:1], y_test=y[:1], name="mnist-subset")
