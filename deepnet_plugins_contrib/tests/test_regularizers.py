"""Tests of the contributed regularizers: conformance, documented penalties, max-norm, training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepnet import Dense, Model
from deepnet.core.errors import DeepnetError
from deepnet.testing import assert_conforms
from deepnet_plugins_contrib import regularizers as R

NAMES = ["l2", "l1", "l1_l2", "max_norm"]
W = np.array([[1.0, -2.0], [0.0, 3.0]])


@pytest.mark.parametrize("name", NAMES)
def test_conforms(registry, name):
    assert_conforms("regularizer", name, registry)


def test_penalties_and_gradients_as_documented():
    np.testing.assert_allclose(R.L2(lam=0.1).penalty(W), 0.1 / 2 * 14)
    np.testing.assert_allclose(R.L2(lam=0.1).gradient(W), 0.1 * W)
    np.testing.assert_allclose(R.L1(lam=0.1).penalty(W), 0.1 * 6)
    # The subgradient at w = 0 is 0.
    np.testing.assert_allclose(R.L1(lam=0.1).gradient(W), [[0.1, -0.1], [0.0, 0.1]])
    both = R.L1L2(l1=0.1, l2=0.2)
    assert both.penalty(W) == pytest.approx(R.L1(0.1).penalty(W) + R.L2(0.2).penalty(W))
    np.testing.assert_allclose(both.gradient(W), R.L1(0.1).gradient(W) + R.L2(0.2).gradient(W))


def test_max_norm_rescales_only_columns_over_the_bound():
    w = np.array([[3.0, 0.1, 0.0], [4.0, 0.2, 0.0]])  # column norms 5, ~0.22, 0
    R.MaxNorm(max_value=2.0).constrain(w)
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), [2.0, np.hypot(0.1, 0.2), 0.0])
    np.testing.assert_allclose(w[:, 0], [1.2, 1.6])
    np.testing.assert_array_equal(w[:, 1:], [[0.1, 0.0], [0.2, 0.0]])
    assert R.MaxNorm().penalty(w) == 0.0 and R.MaxNorm().gradient(w) is None


def test_max_norm_axes_survive_a_json_round_trip(registry):
    reg = R.MaxNorm(axis=(0, 1))
    config = json.loads(json.dumps(registry.config_of(reg)))
    assert config == {"name": "max_norm", "max_value": 3.0, "axis": [0, 1]}
    again = registry.create("regularizer", config)
    assert again.axis == (0, 1)
    w = np.full((2, 2, 3), 5.0)
    again.constrain(w)
    np.testing.assert_allclose(np.sqrt((w**2).sum(axis=(0, 1))), [3.0, 3.0, 3.0])


def test_negative_factors_are_rejected():
    with pytest.raises(DeepnetError, match="lam must be >= 0"):
        R.L2(lam=-1)
    with pytest.raises(DeepnetError, match="max_value must be > 0"):
        R.MaxNorm(max_value=0)


def test_training_with_regularizers(registry, blobs):
    x, y, _, _ = blobs

    def trained(*regularizers):
        model = Model([Dense(16, "tanh"), Dense(2, "softmax")], regularizers=regularizers)
        model.fit(x, y, epochs=5, lr=0.5, seed=0)
        return model

    def weight_norm(model):
        return sum(float(np.square(layer.params["W"]).sum()) for layer in model.layers)

    assert weight_norm(trained("l2")) < 0.9 * weight_norm(trained())
    capped = trained({"name": "max_norm", "max_value": 0.5})
    for layer in capped.layers:
        assert np.linalg.norm(layer.params["W"], axis=0).max() <= 0.5 + 1e-6
