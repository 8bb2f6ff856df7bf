"""Tests of the contributed recipes: the regularized CNN's architecture, their registration,
and short runs (one through `deepnet train`)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import deepnet
from deepnet.cli import build_recipe, main
from deepnet.core import plugins
from deepnet.core.data import Dataset
from deepnet.recipes import get_recipe, run_recipe
from deepnet.testing import assert_conforms
from deepnet_plugins_contrib.recipes import POSTAL, POSTAL_DEEP, POSTAL_WIDE, REGULARIZED

RECIPES = [REGULARIZED, POSTAL, POSTAL_DEEP, POSTAL_WIDE]

#: contrib.layers registers the recipes: its entry point, or the module loaded in-process.
LAYERS_PLUGIN = ("contrib.layers", "deepnet_plugins_contrib.layers")

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


def spec_names(recipe) -> list[str]:
    """The registered names of the layers of ``recipe``'s model."""
    model = recipe.model().build((784,), seed=0)
    return [plugins.get_registry().spec_of(layer) for layer in model.layers]


def test_the_postal_variants_architectures_and_training_are_postals_but_for_the_layers():
    block = ["conv2d", "batch_norm", "conv2d", "max_pool2d", "batch_norm"]
    head = ["flatten", "dense", "dropout", "dense"]
    assert spec_names(POSTAL_DEEP) == ["random_affine", "reshape", *block, *block, *head]
    convs = [(32, 1), (32, 32), (64, 32), (64, 64)]  # (filters, channels in) of the 3x3 kernels
    bns, dense = 2 * (32 + 32 + 64 + 64), (64 * 4 * 4) * 128 + 128 + 1290
    deep = POSTAL_DEEP.model().build((784,), seed=0)
    assert sum(deep.count_params()) == sum(f * c * 9 + f for f, c in convs) + bns + dense
    assert spec_names(POSTAL_WIDE) == spec_names(POSTAL)
    wide = POSTAL_WIDE.model().build((784,), seed=0)
    convs = 48 * 49 + 48 + 96 * 48 * 9 + 96 + 2 * (48 + 96)
    assert sum(wide.count_params()) == convs + (96 * 4 * 4) * 256 + 256 + 2570
    for recipe in (POSTAL_DEEP, POSTAL_WIDE):
        same = ("augment", "optimizer", "lr", "schedule", "epochs", "batch_size", "extra_layers")
        assert all(getattr(recipe, f) == getattr(POSTAL, f) for f in same)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipes_are_registered_by_contrib_layers_and_conform(registry, recipe):
    entry = registry.lookup("recipe", recipe.name)
    assert entry.factory is recipe and entry.provenance.plugin in LAYERS_PLUGIN
    assert get_recipe(recipe.name, registry) == recipe
    assert_conforms("recipe", recipe.name, registry)


def test_augment_and_layers_options_on_the_cnn_recipes():
    # --no-augment drops postal's random_affine; regularized's random_shift is one of its layers.
    assert build_recipe("postal", augment=False).augment == ()
    assert build_recipe("regularized", augment=False).front == REGULARIZED.front
    assert build_recipe("regularized", augment=True).augment == ({"name": "random_affine"},)
    # --layers replaces the dense layers after the convolutions; dropout stays after the first.
    recipe = build_recipe("postal", layers="64:relu,10:softmax")
    assert recipe.front == POSTAL.front and recipe.layers == ("64:relu", "10:softmax")
    names = [spec["name"] for spec in recipe.layer_specs()]
    assert names[-4:] == ["flatten", "dense", "dropout", "dense"]


def test_train_postal_from_the_command_line(tmp_path):
    out = tmp_path / "postal.npz"
    args = ["train", "--preset", "postal", "--epochs", "1", "--limit", "300", "--seed", "2"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "training postal: 784-reshape-conv2d-max_pool2d-batch_norm-conv2d-max_pool2d-batch_norm-"
        "flatten-128-dropout-10 relu/softmax, categorical_cross_entropy, "
    )
    assert lines[0].endswith(", 1 epochs, batch 128, init he_normal, random_affine")
    assert lines[1] == "data: mnist, 300 training images (8.3% held out as dev), 300 test, " + (
        "normalize scale"
    )
    assert lines[-1].startswith("test accuracy: ")
    model = deepnet.load(out)
    assert model.meta["recipe"] == "postal" and model.meta["training"]["seed"] == 2
    assert type(model.layers[3]).__name__ == "Conv2D" and model.output_shape == (10,)
    listing = CliRunner().invoke(main, ["list", "recipe"]).stdout
    assert any(
        line.startswith("  postal  [") and line.endswith(f"plugin {model_plugin}]")
        for line in listing.splitlines()
        for model_plugin in LAYERS_PLUGIN
    ), listing


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_cnn_recipes_learn_from_a_small_subset(mnist_subset, recipe):
    _, summary = run_recipe(recipe, mnist_subset, epochs=2)
    assert summary["dev_accuracy"] > 0.8


@pytest.fixture(scope="module")
def mnist_subset() -> Dataset:
    """2400 MNIST training images, split into train and dev by the recipe; no test images."""
    data = deepnet.load_mnist()
    x, y = data.x_train[:2400], data.y_train[:2400]
    return Dataset(x_train=x, y_train=y, x_test=x[:1], y_test=y[:1], name="mnist-subset")
