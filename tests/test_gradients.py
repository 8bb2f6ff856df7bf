"""Every built-in derivative against central differences in float64 (relative error ≤ 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet import Dense, Flatten, Model
from deepnet.core import gradcheck
from deepnet.core.plugins import create, get_registry

ACTIVATIONS = [
    e.name for e in get_registry().entries("activation") if e.provenance.distribution == "deepnet"
]
LOSSES = [e.name for e in get_registry().entries("loss") if e.provenance.distribution == "deepnet"]


def test_builtins_are_all_covered():
    assert set(ACTIVATIONS) == {"sigmoid", "tanh", "relu", "softmax"}
    assert set(LOSSES) == {"binary_cross_entropy", "categorical_cross_entropy"}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradient(name):
    result = gradcheck.check_activation(create("activation", name))
    assert result.passed, result


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_and_fused_gradient(name, reduction):
    loss = create("loss", {"name": name, "reduction": reduction})
    assert (result := gradcheck.check_loss(loss)).passed, result
    fused = gradcheck.check_fused(loss, create("activation", loss.fused_activation))
    assert fused.passed, fused


@pytest.mark.parametrize("init", ["normal", "he_normal", "glorot_uniform"])
def test_dense_gradient(init):
    result = gradcheck.check_layer(Dense(4, init=init), input_shape=(6,))
    assert result.passed, result
    assert set(result.errors) == {"x", "W", "b"}


def test_flatten_gradient():
    assert (result := gradcheck.check_layer(Flatten(), input_shape=(2, 3))).passed, result


@pytest.mark.parametrize(
    ("layers", "loss"),
    [
        ([Dense(5, "tanh"), Dense(4, "sigmoid"), Dense(3, "sigmoid")], "binary_cross_entropy"),
        ([Dense(5, "relu"), Dense(3, "softmax")], "categorical_cross_entropy"),
        # Not fused: the activation's own backward and the loss's backward are used.
        ([Dense(5, "tanh"), Dense(3, "sigmoid")], "categorical_cross_entropy"),
        ([Dense(5, "relu"), Dense(3, "softmax")], {"name": "binary_cross_entropy"}),
        (
            [Dense(5, "sigmoid"), Dense(3, "sigmoid")],
            {"name": "binary_cross_entropy", "reduction": "sum"},
        ),
    ],
)
def test_whole_model_backprop(layers, loss, blobs):
    x, y = blobs
    model = Model(layers, loss=loss, dtype="float64").build((4,), seed=3)
    result = gradcheck.check_model(model, x[:8], y[:8])
    assert result.passed, result


def test_checker_catches_a_wrong_derivative():
    class Wrong(type(create("activation", "tanh"))):
        def derivative(self, z, a):
            return 1.0 - a  # should be 1 - a²

    assert not gradcheck.check_activation(Wrong()).passed


def test_fused_and_unfused_output_gradients_agree(blobs):
    x, y = blobs
    model = Model([Dense(3, "softmax")], dtype="float64").build((4,), seed=0)
    _, caches = model.forward(x[:10])
    fused = model.backward(caches, model.one_hot(y[:10]))
    model._fused = False
    plain = model.backward(caches, model.one_hot(y[:10]))
    np.testing.assert_allclose(fused[0]["W"], plain[0]["W"], rtol=1e-9, atol=1e-12)
