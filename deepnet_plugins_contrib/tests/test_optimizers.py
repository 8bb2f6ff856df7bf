"""Tests of the contributed optimizers: conformance, agreement with the textbook formulas,
convergence on an ill-conditioned problem, float32 throughout, and training a small model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepnet import Dense, Model
from deepnet.core.errors import DeepnetError
from deepnet.testing import assert_conforms
from deepnet_plugins_contrib import optimizers as O

NAMES = ["momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"]


@pytest.mark.parametrize("name", NAMES)
def test_conforms(registry, name):
    assert_conforms("optimizer", name, registry)


def reference(name, p, grads, lr):
    """The optimizer's update written out naively (new arrays each step), in float64."""
    p, v, s, m = p.copy(), 0.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if name == "momentum":
            v = 0.9 * v + g
            p = p - lr * v
        elif name == "nesterov":
            v = 0.9 * v + g
            p = p - lr * (g + 0.9 * v)
        elif name == "rmsprop":
            s = 0.9 * s + 0.1 * g * g
            p = p - lr * g / (np.sqrt(s) + 1e-7)
        elif name == "adagrad":
            s = s + g * g
            p = p - lr * g / (np.sqrt(s) + 1e-10)
        else:
            if name == "adamw":
                p = p * (1 - lr * 0.01)
            m = 0.9 * m + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            m_hat, s_hat = m / (1 - 0.9**t), s / (1 - 0.999**t)
            p = p - lr * m_hat / (np.sqrt(s_hat) + 1e-8)
    return p


@pytest.mark.parametrize("name", NAMES)
def test_matches_the_textbook_update(registry, name):
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(6)]
    opt = registry.create("optimizer", name)
    p = p0.copy()
    state = opt.init([p])
    for g in grads:
        opt.step([p], [g], state, 0.05)
    np.testing.assert_allclose(p, reference(name, p0, grads, 0.05), rtol=1e-12, atol=1e-14)


def test_adam_bias_correction_makes_the_first_step_lr_sized():
    p = np.zeros(5)
    opt = O.Adam(lr=0.01)
    state = opt.init([p])
    opt.step([p], [np.array([1e-2, -3.0, 50.0, -1e3, 2.0])], state, opt.lr)
    np.testing.assert_allclose(np.abs(p), 0.01, rtol=1e-5)
    assert state[0]["t"].shape == () and int(state[0]["t"]) == 1


def test_adamw_decay_is_decoupled_from_the_gradient():
    p = np.full(3, 2.0)
    opt = O.AdamW(lr=0.1, weight_decay=0.5)
    state = opt.init([p])
    for _ in range(3):
        opt.step([p], [np.zeros(3)], state, 0.1)
    np.testing.assert_allclose(p, 2.0 * (1 - 0.1 * 0.5) ** 3)
    q = np.full(3, 2.0)
    opt = O.Adam(lr=0.1)
    state = opt.init([q])
    opt.step([q], [np.zeros(3)], state, 0.1)
    np.testing.assert_array_equal(q, 2.0)


def ill_conditioned(spec, lr, dtype=np.float64, steps=200):
    """``Σ h/2·p²`` with curvatures h from 1 to 1000, from p = 1: the loss after ``steps``."""
    h = np.logspace(0, 3, 20)
    opt = spec if not isinstance(spec, str) else O.__dict__[spec]()
    p = np.ones(20, dtype)
    state = opt.init([p])
    for _ in range(steps):
        opt.step([p], [(h * p).astype(dtype)], state, lr)
        assert p.dtype == dtype
    return float((h / 2 * p.astype(np.float64) ** 2).sum())


def test_adaptive_and_momentum_methods_beat_sgd_on_an_ill_conditioned_quadratic(registry):
    start = 0.5 * np.logspace(0, 3, 20).sum()
    # Plain SGD is stable only for lr < 2/1000, which leaves the flat directions barely moved.
    sgd = ill_conditioned(registry.create("optimizer", "sgd"), 1.9e-3)
    assert sgd > 5e-4 * start
    rates = {"momentum": 1e-3, "nesterov": 1e-3, "rmsprop": 1e-2, "adagrad": 0.3, "adam": 0.05}
    rates["adamw"] = 0.05
    for name, lr in rates.items():
        for dtype in (np.float32, np.float64):
            loss = ill_conditioned(registry.create("optimizer", name), lr, dtype)
            assert loss < 0.05 * sgd, (name, dtype, loss)


def test_float32_steps_stay_float32_even_with_a_numpy_rate():
    # A schedule returning np.float64 must not make the update float64.
    p = np.ones(4, np.float32)
    for opt in (O.Momentum(), O.Nesterov(), O.RMSprop(), O.Adagrad(), O.Adam(), O.AdamW()):
        state = opt.init([p])
        opt.step([p], [np.ones(4, np.float32)], state, np.float64(0.01))
        assert p.dtype == np.float32
        assert all(v.dtype in (np.float32, np.int64) for v in state[0].values())


@pytest.mark.parametrize("name", ["adam", "rmsprop", "nesterov"])
def test_trains_a_small_model(registry, name, blobs):
    x, y, x_dev, y_dev = blobs
    model = Model([Dense(16, "relu", init="he_normal"), Dense(2, "softmax")])
    lr = {"nesterov": 0.05}.get(name, 0.01)
    history = model.fit(x, y, epochs=8, optimizer=name, lr=lr, seed=0, batch_size=32)
    assert history["loss"][-1] < history["loss"][0]
    assert model.evaluate(x_dev, y_dev)["accuracy"] > 0.88
    assert all(p.dtype == np.float32 for _, _, p in model.parameters())


def test_invalid_hyperparameters_are_rejected():
    with pytest.raises(DeepnetError, match="beta1 must be in"):
        O.Adam(beta1=1.0)
    with pytest.raises(DeepnetError, match="lr must be > 0"):
        O.RMSprop(lr=0)
    assert math.isclose(O.Adam(lr="0.5").lr, 0.5)  # JSON or CLI strings become floats


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_over_several_arrays_equals_adam_on_each_alone(registry, name):
    # The moments of all params live in one flat array each; the offsets must not mix them.
    rng = np.random.default_rng(3)
    shapes = [(7, 5), (5,), (5, 3), (3,)]
    p0 = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(4)]
    together = [p.copy() for p in p0]
    opt = registry.create("optimizer", name)
    state = opt.init(together)
    for gs in grads:
        opt.step(together, gs, state, 0.01)
    for i, p in enumerate(p0):
        alone = p.copy()
        single = registry.create("optimizer", name)
        s = single.init([alone])
        for gs in grads:
            single.step([alone], [gs[i]], s, 0.01)
        np.testing.assert_array_equal(together[i], alone)
    assert int(state[0]["t"]) == 4 and state[0]["m"].base is state[3]["m"].base
    assert all(set(s) == {"m", "v", "scratch", "t"} for s in state)  # what checkpoints save


def test_adam_refuses_params_of_mixed_dtypes(registry):
    opt = registry.create("optimizer", "adam")
    with pytest.raises(DeepnetError, match="share one dtype"):
        opt.init([np.zeros(3, np.float32), np.zeros(2, np.float64)])


@pytest.mark.parametrize("t", [-1, -2])
def test_adam_refuses_a_negative_step_count(registry, t):
    """As from a damaged checkpoint: the bias corrections raised ZeroDivisionError or a math
    domain error; the params stay untouched."""
    opt = registry.create("optimizer", "adam")
    p = np.ones(3, np.float32)
    state = opt.init([p])
    state[0]["t"][...] = t
    with pytest.raises(DeepnetError, match=rf"Adam: damaged state: step count {t}"):
        opt.step([p], [np.ones(3, np.float32)], state, 0.1)
    assert (p == 1).all()
