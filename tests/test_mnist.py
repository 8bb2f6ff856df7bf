"""Real data: training on a genuine MNIST subset must reach an accuracy floor."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet import Dense, Model
from deepnet.recipes import RECIPES, run_recipe

pytestmark = pytest.mark.slow


def test_small_net_learns_real_digits(mnist):
    model = Model([Dense(64, "relu", init="he_normal"), Dense(10, "softmax")])
    history = model.fit(
        mnist.x_train[:10000], mnist.y_train[:10000], epochs=2, batch_size=64,
        optimizer={"name": "sgd", "momentum": 0.9}, lr=0.05, dev_fraction=0.1, seed=0,
    )  # fmt: skip
    assert history["dev_accuracy"][-1] >= 0.90
    assert model.evaluate(mnist.x_test, mnist.y_test)["accuracy"] >= 0.90


# Two epochs on a tenth of the data; seed-b's lr of 0.01 learns slowly at first.
@pytest.mark.parametrize(("preset", "floor"), [("seed-a", 0.75), ("seed-b", 0.5)])
def test_notebook_presets_train_without_warnings(preset, floor):
    from deepnet.datasets import load_mnist

    data = load_mnist(normalize=RECIPES[preset].normalize)
    subset = type(data)(data.x_train[:6000], data.y_train[:6000], data.x_test[:2000],
                        data.y_test[:2000], "mnist-subset", data.normalization)  # fmt: skip
    model, summary = run_recipe(RECIPES[preset], subset, epochs=2)
    assert summary["test_accuracy"] >= floor
    assert set(summary) >= {"train_accuracy", "dev_accuracy", "test_accuracy", "seconds"}
    hidden = model.layers[0].forward(subset.x_test)[0]
    if preset == "seed-a":  # the scaled init keeps most tanh units out of saturation
        assert np.mean(np.abs(np.tanh(hidden)) > 0.99) < 0.25


def test_default_recipe_learns_from_distorted_raw_pixels():
    """The default recipe distorts the raw uint8 images (random_affine) before normalizing."""
    from deepnet.datasets import load_mnist
    from deepnet.plugins.augment import RandomAffine

    data = load_mnist(normalize="none", dtype="uint8")
    subset = type(data)(data.x_train[:6000], data.y_train[:6000], data.x_test[:2000],
                        data.y_test[:2000], "mnist-subset", data.normalization)  # fmt: skip
    model, summary = run_recipe(RECIPES["default"], subset, epochs=3)
    assert isinstance(model.layers[0], RandomAffine)
    assert summary["test_accuracy"] >= 0.9
