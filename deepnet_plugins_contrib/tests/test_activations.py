"""Tests of the contributed activations: conformance, known values, names and stability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepnet.testing import assert_conforms
from deepnet_plugins_contrib import activations as A

NAMES = [
    "leaky_relu", "elu", "selu", "gelu", "softplus", "silu", "swish", "hard_sigmoid", "linear",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_conforms(registry, name):
    assert_conforms("activation", name, registry)


def test_every_name_is_contrib_and_softmax_stays_the_core_one(registry):
    for name in NAMES:
        assert registry.lookup("activation", name).provenance.distribution != "deepnet"
    # Registering softmax again would make the loss's fused output activation ambiguous.
    assert registry.lookup("activation", "softmax").provenance.distribution == "deepnet"
    assert registry.collisions() == {}


def test_leaky_relu_and_elu_values():
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(A.LeakyReLU().forward(z), [-0.02, 0.0, 3.0])
    np.testing.assert_allclose(A.LeakyReLU(alpha=0.2).forward(z), [-0.4, 0.0, 3.0])
    np.testing.assert_allclose(A.ELU().forward(z), [math.expm1(-2.0), 0.0, 3.0])
    np.testing.assert_allclose(A.ELU(alpha=0.5).forward(z), [0.5 * math.expm1(-2.0), 0.0, 3.0])


def test_selu_constants_and_fixed_point():
    selu = A.SELU()
    np.testing.assert_allclose(selu.forward(np.array([1.0])), [1.0507009873554805])
    np.testing.assert_allclose(
        selu.forward(np.array([-1e4])), [-1.0507009873554805 * 1.6732632423543772]
    )
    # Self-normalizing: standard normal inputs keep mean ≈ 0 and variance ≈ 1.
    a = selu.forward(np.random.default_rng(0).normal(size=200_000))
    assert abs(a.mean()) < 0.01 and abs(a.var() - 1) < 0.02


def test_gelu_tanh_approximation_is_close_to_the_exact_one():
    z = np.linspace(-6, 6, 241)
    exact = 0.5 * z * (1 + np.array([math.erf(v / math.sqrt(2)) for v in z]))
    np.testing.assert_allclose(A.GELU().forward(z), exact, atol=1e-3)
    assert A.GELU().forward(np.array([1.0]))[0] == pytest.approx(0.8411920, abs=1e-6)
    # Beyond the clip the result is z (or 0) exactly, with no z³ overflow.
    big = np.array([-1e38, 1e38], np.float32)
    np.testing.assert_array_equal(A.GELU().forward(big), [0, big[1]])


def test_softplus_is_stable_and_its_derivative_is_sigmoid():
    sp = A.Softplus()
    z = np.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(sp.forward(z), [0.0, math.log(2), 1000.0])
    np.testing.assert_allclose(sp.derivative(z, sp.forward(z)), [0.0, 0.5, 1.0])


def test_silu_and_swish_are_one_function_under_two_names(registry):
    z = np.linspace(-5, 5, 11)
    np.testing.assert_array_equal(A.SiLU().forward(z), A.Swish().forward(z))
    np.testing.assert_allclose(A.SiLU().forward(z), z / (1 + np.exp(-z)))
    # Distinct classes, so a saved model names the one it was built with.
    assert registry.config_of(A.Swish()) == {"name": "swish"}
    assert registry.config_of(A.SiLU()) == {"name": "silu"}


def test_hard_sigmoid_matches_pytorch():
    hs = A.HardSigmoid()
    z = np.array([-4.0, -3.0, 0.0, 1.5, 3.0, 4.0])
    np.testing.assert_allclose(hs.forward(z), [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    np.testing.assert_allclose(
        hs.backward(z, hs.forward(z), np.ones(6)), [0, 0, 1 / 6, 1 / 6, 0, 0]
    )


def test_linear_is_the_identity():
    z = np.arange(6.0).reshape(2, 3)
    assert A.Linear().forward(z) is z
    da = np.ones_like(z)
    assert A.Linear().backward(z, z, da) is da


@pytest.mark.parametrize("name", NAMES)
def test_hidden_activation_trains(registry, name, blobs):
    from deepnet import Dense, Model

    x, y, x_dev, y_dev = blobs
    model = Model([Dense(8, name, init="lecun_normal"), Dense(2, "softmax")])
    model.fit(x, y, epochs=5, optimizer="sgd", lr=0.2, seed=0, batch_size=32)
    # The Bayes accuracy of these blobs is about 0.93.
    assert model.evaluate(x_dev, y_dev)["accuracy"] > 0.85
