"""Tests of the contributed layers: gradients, dropout, batch norm, shifts, conv and pooling."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import deepnet
from deepnet import Dense, Flatten, Model
from deepnet.core import gradcheck, plugins
from deepnet.core.errors import DeepnetError, ShapeError
from deepnet_plugins_contrib import layers

NAMES = ["dropout", "batch_norm", "random_shift", "reshape", "conv2d", "max_pool2d"]


@pytest.fixture(autouse=True, scope="module")
def contrib_layers():
    """The process registry with the contrib layers, from the entry point or in-process."""
    saved = plugins.get_registry()
    installed = "conv2d" in saved.names("layer")
    registry = saved if installed else plugins.load_plugins(extra=[layers])
    plugins.set_registry(registry)
    yield registry
    plugins.set_registry(saved)


def built(layer, input_shape, seed=0, dtype=np.float64):
    layer.build(tuple(input_shape), np.random.default_rng(seed), dtype)
    return layer


def randomized_batch_norm(input_shape):
    """A float64 batch_norm whose params and running stats are not the trivial 1s and 0s."""
    layer = built(layers.BatchNorm(), input_shape)
    rng = np.random.default_rng(5)
    c = input_shape[0]
    layer.params["gamma"][...] = rng.uniform(0.5, 2.0, c)
    layer.params["beta"][...] = rng.normal(size=c)
    layer.state["running_mean"][...] = rng.normal(size=c)
    layer.state["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return layer


GRADIENT_CASES = {
    "dropout": (lambda: layers.Dropout(0.3), (6,)),
    "dropout_images": (lambda: layers.Dropout(0.5), (2, 3, 3)),
    "batch_norm": (lambda: randomized_batch_norm((6,)), (6,)),
    "batch_norm_images": (lambda: randomized_batch_norm((3, 4, 2)), (3, 4, 2)),
    "random_shift": (lambda: layers.RandomShift(2), (2, 5, 6)),
    "random_shift_2d": (lambda: layers.RandomShift(1), (5, 6)),
    "reshape": (lambda: layers.Reshape((2, 3)), (6,)),
    "conv2d_valid": (lambda: layers.Conv2D(3, 3), (2, 6, 7)),
    "conv2d_same": (lambda: layers.Conv2D(3, 3, padding="same"), (2, 6, 7)),
    "conv2d_strided": (lambda: layers.Conv2D(3, (3, 2), stride=2, padding="same"), (2, 7, 6)),
    "conv2d_even_kernel": (lambda: layers.Conv2D(2, 2, stride=(2, 1), padding="same"), (1, 5, 5)),
    "max_pool2d": (lambda: layers.MaxPool2D(2), (2, 4, 6)),
    "max_pool2d_cropped": (lambda: layers.MaxPool2D(3), (2, 7, 5)),
}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient(case, training):
    make, input_shape = GRADIENT_CASES[case]
    layer = make()
    # batch_norm comes built, with non-trivial params and stats: building would reset them.
    prebuilt = bool(layer.params)
    result = gradcheck.check_layer(
        layer, input_shape, batch=4, training=training, build=not prebuilt
    )
    assert result.passed, result
    assert set(result.errors) == {"x", *layer.params}


def test_every_layer_is_registered(contrib_layers):
    assert set(NAMES) <= set(contrib_layers.names("layer"))


@pytest.mark.skipif(
    importlib.util.find_spec("deepnet.testing") is None, reason="no conformance kit yet"
)
@pytest.mark.parametrize("name", NAMES)
def test_conformance(name):
    from deepnet.testing import assert_conforms

    assert_conforms("layer", name)


def test_full_model_gradient_with_every_layer():
    model = Model(
        [
            layers.Reshape((1, 6, 6)),
            layers.Conv2D(3, 3, padding="same"),
            layers.BatchNorm(activation="tanh"),
            layers.MaxPool2D(2),
            layers.Conv2D(2, 2, activation="tanh"),
            Flatten(),
            Dense(5),
            layers.BatchNorm(activation="tanh"),
            layers.Dropout(0.5),
            Dense(3, "softmax"),
        ],
        dtype="float64",
    ).build((36,), seed=0)
    rng = np.random.default_rng(0)
    result = gradcheck.check_model(model, rng.normal(size=(5, 36)), rng.integers(0, 3, size=5))
    assert result.passed, result


# -- dropout -----------------------------------------------------------------------------
def test_dropout_is_identity_in_evaluation():
    x = np.random.default_rng(0).normal(size=(50, 20))
    z, _ = built(layers.Dropout(0.5), (20,)).forward(x, training=False)
    np.testing.assert_array_equal(z, x)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_drops_about_rate_and_keeps_the_mean(rate):
    x = np.ones((400, 500))
    layer = built(layers.Dropout(rate), (500,))
    z, mask = layer.forward(x, training=True)
    assert abs((z == 0).mean() - rate) < 0.01
    assert abs(z.mean() - 1.0) < 0.02
    np.testing.assert_allclose(np.unique(z), [0.0, 1.0 / (1.0 - rate)])
    dx, grads = layer.backward(np.ones_like(z), mask)
    np.testing.assert_array_equal(dx, z)  # the same units, the same scale
    assert grads == {}


def test_dropout_keeps_float32():
    x = np.ones((64, 32), np.float32)
    layer = built(layers.Dropout(0.5), (32,), dtype=np.float32)
    z, mask = layer.forward(x, training=True)
    assert z.dtype == np.float32 and mask.dtype == np.float32
    dx, _ = layer.backward(np.ones_like(z), mask)
    assert dx.dtype == np.float32


def test_dropout_is_deterministic_for_a_seed():
    x = np.ones((10, 30))
    masks = [built(layers.Dropout(0.5), (30,), seed=s).forward(x, True)[1] for s in (3, 3, 4)]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])


def test_dropout_rate_zero_is_identity_and_bad_rates_fail():
    x = np.ones((4, 3))
    np.testing.assert_array_equal(built(layers.Dropout(0.0), (3,)).forward(x, True)[0], x)
    for rate in (1.0, -0.1):
        with pytest.raises(DeepnetError, match="rate"):
            layers.Dropout(rate)


def test_dropout_training_is_reproducible(three_blobs):
    x, y = three_blobs

    def train():
        model = Model([Dense(16, "relu"), layers.Dropout(0.5), Dense(3, "softmax")])
        model.fit(x, y, epochs=2, optimizer="sgd", lr=0.1, seed=11)
        return model.get_weights()

    for a, b in zip(train(), train(), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.fixture
def three_blobs():
    """Three separated Gaussian blobs in 4-D: x (300, 4), y (300,)."""
    rng = np.random.default_rng(0)
    centers = 3.0 * np.eye(3, 4)
    y = rng.integers(0, 3, size=300)
    return centers[y] + rng.normal(scale=0.5, size=(300, 4)), y


# -- batch norm --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(256, 5), (32, 3, 4, 4)])
def test_batch_norm_training_output_is_standardized(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=shape) * rng.uniform(0.1, 10, size=(1, shape[1], *shape[2:]))
    z, _ = built(layers.BatchNorm(), shape[1:]).forward(x, training=True)
    axes = (0, *range(2, len(shape)))
    np.testing.assert_allclose(z.mean(axis=axes), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.var(axis=axes), 1.0, rtol=1e-4)


def test_batch_norm_running_stats_converge_and_evaluation_uses_them():
    rng = np.random.default_rng(0)
    mean, std = np.array([2.0, -1.0, 0.0]), np.array([0.5, 3.0, 1.0])
    layer = built(layers.BatchNorm(momentum=0.9), (3,))
    for _ in range(200):
        layer.forward(rng.normal(mean, std, size=(64, 3)), training=True)
    assert (np.abs(layer.state["running_mean"] - mean) < 0.1 * std).all()
    np.testing.assert_allclose(layer.state["running_var"], std**2, rtol=0.15)

    x = rng.normal(mean, std, size=(8, 3)) + 1.0  # a shifted batch: its own stats differ
    z_eval, _ = layer.forward(x, training=False)
    running = (x - layer.state["running_mean"]) / np.sqrt(layer.state["running_var"] + 1e-5)
    np.testing.assert_allclose(z_eval, running)
    z_train, _ = layer.forward(x, training=True)
    assert not np.allclose(z_eval, z_train)


def test_batch_norm_keeps_float32():
    x = np.random.default_rng(0).normal(size=(16, 4, 3, 3)).astype(np.float32)
    layer = built(layers.BatchNorm(), (4, 3, 3), dtype=np.float32)
    for training in (True, False):
        z, cache = layer.forward(x, training)
        dx, grads = layer.backward(np.ones_like(z), cache)
        assert z.dtype == dx.dtype == np.float32
        assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    assert {s.dtype for s in layer.state.values()} == {np.dtype(np.float32)}


def test_batch_norm_state_survives_save_and_load(tmp_path, three_blobs):
    x, y = three_blobs
    model = Model([Dense(16), layers.BatchNorm(activation="relu"), Dense(3, "softmax")])
    model.fit(x, y, epochs=3, optimizer="sgd", lr=0.1, seed=0)
    bn = model.layers[1]
    assert not np.allclose(bn.state["running_mean"], 0.0)  # training moved them
    loaded = deepnet.load(model.save(tmp_path / "bn.npz"))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    for key in ("running_mean", "running_var"):
        np.testing.assert_array_equal(loaded.layers[1].state[key], bn.state[key])
    assert loaded.describe() == model.describe()
    assert model.evaluate(x, y)["accuracy"] > 0.95


def test_batch_norm_rejects_bad_hyperparameters():
    with pytest.raises(DeepnetError, match="momentum"):
        layers.BatchNorm(momentum=1.0)
    with pytest.raises(DeepnetError, match="eps"):
        layers.BatchNorm(eps=0.0)


# -- random shift ------------------------------------------------------------------------
def test_random_shift_moves_each_image_within_range():
    s, n = 2, 200
    x = np.zeros((n, 1, 9, 9))
    x[:, 0, 4, 4] = 1.0  # a single central pixel: its new place is the shift
    layer = built(layers.RandomShift(s), (1, 9, 9))
    np.testing.assert_array_equal(layer.forward(x, training=False)[0], x)
    z, _ = layer.forward(x, training=True)
    assert z.shape == x.shape and (z.sum(axis=(1, 2, 3)) == 1).all()
    flat = z[:, 0].reshape(n, -1).argmax(axis=1)
    dy, dx = flat // 9 - 4, flat % 9 - 4
    assert set(dy) == set(dx) == set(range(-s, s + 1))  # every shift occurs, none beyond s


def test_random_shift_fills_with_zeros_and_is_seeded():
    x = np.ones((30, 6, 6))
    z1 = built(layers.RandomShift(1), (6, 6), seed=1).forward(x, training=True)[0]
    z2 = built(layers.RandomShift(1), (6, 6), seed=1).forward(x, training=True)[0]
    np.testing.assert_array_equal(z1, z2)
    assert set(np.unique(z1)) == {0.0, 1.0}
    assert (z1.sum(axis=(1, 2)) >= 25).all()  # at most one row and one column emptied


# -- reshape, conv2d, max_pool2d ---------------------------------------------------------
def naive_conv(x, w, b, kernel, stride, pads):
    """Direct loops: x (N, C, H, W), w (kh·kw·C, F) over (kh, kw, C)-ordered patches."""
    (kh, kw), (sh, sw) = kernel, stride
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    n, c, hp, wp = xp.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    kernels = w.reshape(kh, kw, c, -1)
    out = np.zeros((n, w.shape[1], ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,hwcf->nf", patch, kernels) + b
    return out


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "pads", "out_hw"),
    [
        (3, 1, "valid", ((0, 0), (0, 0)), (5, 4)),
        (3, 1, "same", ((1, 1), (1, 1)), (7, 6)),
        ((3, 2), 2, "same", ((1, 1), (0, 0)), (4, 3)),
        (2, (2, 1), "same", ((0, 1), (0, 1)), (4, 6)),
    ],
)
def test_conv2d_matches_direct_convolution(kernel, stride, padding, pads, out_hw):
    x = np.random.default_rng(0).normal(size=(3, 2, 7, 6))
    layer = layers.Conv2D(4, kernel, stride=stride, padding=padding, bias_init="normal")
    assert layer.build((2, 7, 6), np.random.default_rng(0), np.float64) == (4, *out_hw)
    z, _ = layer.forward(x)
    expected = naive_conv(x, layer.params["W"], layer.params["b"], layer.kernel_size,
                          layer.stride, pads)  # fmt: skip
    np.testing.assert_allclose(z, expected, atol=1e-12)


def test_conv2d_weights_are_per_filter_columns():
    layer = built(layers.Conv2D(8, 5), (3, 12, 12))
    assert layer.params["W"].shape == (5 * 5 * 3, 8) and layer.params["b"].shape == (8,)
    assert layers.Conv2D.regularized == ("W",)


def test_image_layers_explain_bad_input_shapes():
    for layer in (layers.Conv2D(2), layers.MaxPool2D()):
        with pytest.raises(ShapeError, match="reshape"):
            built(layer, (784,))
    with pytest.raises(ShapeError, match="larger"):
        built(layers.Conv2D(2, 5), (1, 3, 3))
    with pytest.raises(ShapeError, match="784"):
        built(layers.Reshape((1, 27, 28)), (784,))
    with pytest.raises(DeepnetError, match="pair"):
        layers.Conv2D(2, kernel_size=(3, 0))


def test_max_pool2d_matches_reduction_and_routes_ties_to_the_first():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 4))
    layer = built(layers.MaxPool2D(2), (3, 6, 4))
    z, _ = layer.forward(x)
    np.testing.assert_array_equal(z, x.reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5)))

    tied = np.zeros((1, 1, 2, 2))
    dx, grads = layer.backward(np.ones((1, 1, 1, 1)), layer.forward(tied)[1])
    np.testing.assert_array_equal(dx, [[[[1.0, 0.0], [0.0, 0.0]]]])
    assert grads == {}


def test_cnn_trains_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=120)
    images = rng.normal(scale=0.1, size=(120, 8, 8))
    images[y == 1, 2:6, 3:5] += 1.0  # class 1: a vertical bar
    images[y == 0, 3:5, 2:6] += 1.0  # class 0: a horizontal bar
    x = images.reshape(120, 64)
    model = Model(
        [
            layers.Reshape((1, 8, 8)),
            layers.RandomShift(1),
            layers.Conv2D(4, 3, padding="same", activation="relu", init="he_normal"),
            layers.MaxPool2D(2),
            layers.BatchNorm(),
            Flatten(),
            layers.Dropout(0.2),
            Dense(2, "softmax"),
        ]
    )
    model.fit(x, y, epochs=8, batch_size=16, optimizer="sgd", lr=0.1, seed=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95
    assert model.predict_proba(x).dtype == np.float32
    loaded = deepnet.load(model.save(tmp_path / "cnn.npz"))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.layers[2].kernel_size == (3, 3) and loaded.layers[0].target_shape == (1, 8, 8)
