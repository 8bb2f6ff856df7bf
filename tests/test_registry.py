"""Names, close-match errors, collisions with qualified names, configs."""

from __future__ import annotations

import json

import attrs
import pytest

from deepnet import AmbiguousComponentError, Dense, UnknownComponentError
from deepnet.core.plugins import get_registry
from deepnet.core.registry import REQUIRED, Provenance, Registry, default_name
from deepnet.plugins.activations import ReLU, Tanh


def test_builtins_come_from_the_deepnet_distribution():
    entry = get_registry().lookup("activation", "relu")
    assert entry.factory is ReLU
    assert entry.provenance.distribution == "deepnet"
    assert entry.provenance.plugin == "deepnet.activations"
    assert entry.provenance.version


def test_unknown_name_suggests_close_ones_and_lists_the_kind():
    with pytest.raises(UnknownComponentError) as info:
        get_registry().create("activation", "sigmod")
    message = str(info.value)
    assert "'sigmoid'" in message.split("Available")[0]
    assert "relu" in message and "tanh" in message
    assert info.value.close[0] == "sigmoid"


def test_collision_is_reported_and_resolved_by_qualified_name():
    registry = Registry()
    registry.register("activation", Tanh, "act", Provenance("one", "dist-one", "1.0"))
    registry.register("activation", ReLU, "act", Provenance("two", "dist-two", "2.0"))
    assert list(registry.collisions()) == [("activation", "act")]
    with pytest.raises(AmbiguousComponentError) as info:
        registry.create("activation", "act")
    assert "dist-one/act" in str(info.value) and "dist-two/act" in str(info.value)
    assert isinstance(registry.create("activation", "dist-two/act"), ReLU)
    assert isinstance(registry.create("activation", "one/act"), Tanh)  # by plugin name too
    # A saved config names the provider so that it loads back unambiguously.
    assert registry.config_of(ReLU())["name"] == "dist-two/act"


def test_same_distribution_twice_is_qualified_by_plugin():
    registry = Registry()
    registry.register("activation", Tanh, "act", Provenance("p1", "dist", "1"))
    registry.register("activation", ReLU, "act", Provenance("p2", "dist", "1"))
    assert isinstance(registry.create("activation", "p2/act"), ReLU)


def test_invalid_names_and_kinds_are_refused():
    registry = Registry()
    with pytest.raises(Exception, match="invalid activation name"):
        registry.register("activation", Tanh, "Bad Name", Provenance("p"))
    with pytest.raises(Exception, match="unknown component kind"):
        registry.register("widget", Tanh, None, Provenance("p"))


def test_default_name_is_snake_case():
    assert default_name(attrs.make_class("LeakyReLUThing", [])) == "leaky_re_lu_thing"
    assert default_name(Dense) == "dense"


def test_params_with_defaults_and_config_round_trip():
    registry = get_registry()
    entry = registry.lookup("layer", "dense")
    params = {p.name: p.default for p in entry.params}
    assert params == {"units": REQUIRED, "activation": None, "init": "glorot_uniform",
                      "bias_init": "zeros"}  # fmt: skip
    layer = Dense(7, "tanh", init={"name": "normal", "std": 0.5})
    config = json.loads(json.dumps(registry.config_of(layer)))
    assert config == {"name": "dense", "units": 7, "activation": "tanh",
                      "init": {"name": "normal", "std": 0.5}, "bias_init": "zeros"}  # fmt: skip
    assert registry.config_of(registry.create("layer", config)) == config


def test_bad_config_names_the_parameters():
    with pytest.raises(Exception, match="Parameters: lr, momentum, nesterov"):
        get_registry().create("optimizer", {"name": "sgd", "learning_rate": 0.1})
