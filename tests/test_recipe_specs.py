"""Recipes as data: layer specs, presets, errors."""

from __future__ import annotations

import pytest

from deepnet.core.errors import DeepnetError
from deepnet.recipes import RECIPES, Recipe, get_recipe, parse_layers


def test_parse_layers():
    assert parse_layers("50:tanh, 10", init="he_normal") == [
        {"name": "dense", "units": 50, "activation": "tanh", "init": "he_normal"},
        {"name": "dense", "units": 10, "init": "he_normal"},
    ]


@pytest.mark.parametrize("spec", ["", "50:tanh,,10", "x:relu", "0:relu", "-3:tanh"])
def test_malformed_layer_specs_are_explained(spec):
    with pytest.raises(DeepnetError, match="write UNITS:ACTIVATION"):
        parse_layers(spec)


def test_presets_are_the_notebooks_with_its_fixes():
    a, b = get_recipe("seed-a"), get_recipe("seed-b")
    assert a.layers == ("50:tanh", "25:sigmoid", "10:sigmoid") and a.lr == 0.1
    assert b.layers == ("50:relu", "25:relu", "10:sigmoid") and b.lr == 0.01
    for r in (a, b):
        assert (r.init, r.epochs, r.batch_size, r.shuffle) == ("lecun_normal", 30, 64, False)
    with pytest.raises(DeepnetError, match="available: default, seed-a, seed-b"):
        get_recipe("seed-c")
    assert set(RECIPES) == {"default", "seed-a", "seed-b"}


def test_recipe_layer_order_front_then_dense_with_extras():

    recipe = Recipe(
        name="t",
        description="",
        front=({"name": "flatten"},),
        layers=("8:relu", "3:softmax"),
        extra_layers=((1, {"name": "a"}), (0, {"name": "b"}), (1, {"name": "c"})),
    )
    names = [s["name"] for s in recipe.layer_specs()]
    assert names == ["flatten", "b", "dense", "a", "c", "dense"]
