"""No overflow, underflow or invalid-value warnings on extreme inputs; stays in its dtype."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet.core.plugins import create

EXTREMES = [-1e38, -1e4, -800.0, -80.0, -1.0, 0.0, 1.0, 80.0, 800.0, 1e4, 1e38]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "softmax"])
def test_activations_are_stable_and_keep_their_dtype(name, dtype):
    act = create("activation", name)
    z = np.array([EXTREMES, EXTREMES[::-1]], dtype=dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        a = act.forward(z)
        dz = act.backward(z, a, np.ones_like(z))
    assert a.dtype == z.dtype and dz.dtype == z.dtype
    assert np.isfinite(a).all() and np.isfinite(dz).all()


def test_sigmoid_saturates_to_the_right_limits():
    a = create("activation", "sigmoid").forward(np.array([-1e4, 0.0, 1e4], dtype=np.float32))
    np.testing.assert_array_equal(a, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", ["binary_cross_entropy", "categorical_cross_entropy"])
def test_losses_on_saturated_outputs_are_finite(name):
    loss = create("loss", name)
    a = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    y = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = loss.forward(a, y)
        grad = loss.backward(a, y)
    assert np.isfinite(value) and value > 0
    assert np.isfinite(grad).all() and grad.dtype == np.float32
