"""Recipes as data: layer specs, presets, errors; recipes as a registered component kind."""

from __future__ import annotations

import attrs
import pytest

from deepnet import __version__
from deepnet.core.errors import AmbiguousComponentError, DeepnetError, UnknownComponentError
from deepnet.core.registry import Provenance, Registry
from deepnet.recipes import RECIPES, Recipe, get_recipe, parse_layers
from deepnet.testing import assert_conforms, check_component, make_plugin, registry_with

#: A quick recipe a third party might register: 784-16-10 on raw pixels.
SMALL = Recipe(name="small", description="784-16-10 relu/softmax", layers=("16:relu", "10:softmax"))


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


# -- recipes in the registry ----------------------------------------------------------------
@pytest.fixture(scope="module")
def builtins() -> Registry:
    return registry_with(use_entry_points=False)


def test_builtin_recipes_are_registered_by_the_builtin_plugin(builtins):
    assert builtins.names("recipe") == ["default", "seed-a", "seed-b"]
    for name, recipe in RECIPES.items():
        entry = builtins.lookup("recipe", name)
        assert entry.factory is recipe and entry.doc == recipe.description
        assert entry.provenance == Provenance("deepnet.recipes", "deepnet", __version__)
    plugin = next(p for p in builtins.plugins if p.name == "deepnet.recipes")
    assert plugin.hooks == ["deepnet_register_recipes"] and plugin.components == 3


def test_get_recipe_looks_in_the_registry_and_suggests_close_names(builtins):
    assert get_recipe("seed-a", builtins) == RECIPES["seed-a"]
    assert get_recipe("deepnet/default", builtins) == RECIPES["default"]
    with pytest.raises(UnknownComponentError) as info:
        get_recipe("seed-c", builtins)
    assert str(info.value) == (
        "unknown recipe 'seed-c'. Did you mean 'seed-b', 'seed-a'? "
        "Available recipes: default, seed-a, seed-b."
    )


def test_a_plugin_recipe_is_registered_with_its_provenance():
    registry = registry_with(make_plugin("mine", recipe={"small": SMALL}), use_entry_points=False)
    entry = registry.lookup("recipe", "small")
    assert entry.provenance == Provenance("mine") and entry.factory is SMALL
    assert get_recipe("mine/small", registry) == SMALL
    # Created from a config, as any component: the fields given replace the recipe's.
    made = registry.create("recipe", {"name": "small", "epochs": 2, "seed": 5})
    assert made == attrs.evolve(SMALL, epochs=2, seed=5) and SMALL.epochs == 20
    with pytest.raises(DeepnetError, match="recipe 'small' has no field 'epoch'; its fields: "):
        registry.create("recipe", "small", epoch=2)


def test_a_recipe_name_given_twice_is_kept_twice_and_picked_by_provider():
    mine = attrs.evolve(SMALL, name="default")
    registry = registry_with(make_plugin("mine", recipe={"default": mine}), use_entry_points=False)
    with pytest.raises(AmbiguousComponentError, match="deepnet/default, mine/default"):
        get_recipe("default", registry)
    assert get_recipe("mine/default", registry) == mine
    assert get_recipe("deepnet/default", registry) == RECIPES["default"]


def test_only_recipes_register_as_recipes():
    registry = Registry()
    for wrong in (Recipe, {"name": "x"}, lambda: SMALL):
        with pytest.raises(DeepnetError, match=r"register a recipe as a deepnet\.recipes\.Recipe"):
            registry.register("recipe", wrong, "x", Provenance("p"))
    with pytest.raises(DeepnetError, match="invalid recipe name 'Seed A'"):
        registry.register("recipe", SMALL, "Seed A", Provenance("p"))


def test_a_registered_recipe_conforms():
    registry = registry_with(make_plugin("mine", recipe={"small": SMALL}), use_entry_points=False)
    results = assert_conforms("recipe", "small", registry)
    assert [r.check for r in results] == ["create", "components", "shapes", "training"]


@pytest.mark.parametrize(
    ("fields", "check", "message"),
    [
        ({"layers": ("16:relx", "10:softmax")}, "components", "unknown activation 'relx'"),
        ({"optimizer": {"name": "sgd", "beta": 1}}, "components", "cannot create optimizer"),
        ({"extra_layers": ((2, {"name": "dense", "units": 3, "activation": "softmax"}),)},
         "shapes", "output shape (3,), but its last layer has 10 units"),
        ({"lr": 1e30}, "training", "overflow"),
    ],
)  # fmt: skip
def test_a_broken_recipe_fails_the_check_meant_for_it(fields, check, message):
    broken = attrs.evolve(SMALL, **fields)
    registry = registry_with(make_plugin("mine", recipe={"small": broken}), use_entry_points=False)
    results = {r.check: r for r in check_component("recipe", "small", registry)}
    failed = [name for name, r in results.items() if not r.passed]
    assert failed[:1] == [check] and message in results[check].detail, results
