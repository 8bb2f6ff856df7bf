"""The normalize layer: preprocessing saved with the model, raw uint8 pixels in, no float copy."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from deepnet import Dense, Model
from deepnet.core import gradcheck
from deepnet.core.data import normalize_pixels, pixel_stats
from deepnet.core.errors import DeepnetError
from deepnet.plugins.layers import Normalize
from deepnet.testing import assert_conforms


@pytest.fixture(scope="module")
def pixels():
    """The first 3,000 MNIST training and 1,000 test images as raw uint8 rows, and labels."""
    from deepnet.datasets import load_mnist

    data = load_mnist(normalize="none", dtype="uint8")
    return data.x_train[:3000], data.y_train[:3000], data.x_test[:1000], data.y_test[:1000]


@pytest.mark.parametrize("method", ["scale", "standardize"])
def test_conforms(method):
    assert_conforms("layer", "normalize", config={"method": method})


def test_gradient_with_adapted_statistics():
    rng = np.random.default_rng(0)
    layer = Normalize("standardize")
    layer.build((6,), rng, np.float64)
    layer.adapt(rng.normal(3.0, 2.0, size=(50, 6)))
    assert not np.allclose(layer.state["scale"], 1.0)
    assert gradcheck.check_layer(layer, (6,), build=False).max_error < 1e-6


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        Normalize("whiten")


@pytest.mark.parametrize("method", ["scale", "standardize"])
def test_uint8_pixels_give_the_same_outputs_as_normalized_floats(pixels, method):
    x_train, y_train, x_test, _ = pixels

    def dense():
        return [Dense(32, "relu"), Dense(10, "softmax")]

    inside = Model([{"name": "normalize", "method": method}, *dense()]).build((784,), seed=0)
    inside.adapt(x_train)  # built before fit, so fit does not adapt it
    outside = Model(dense()).build((784,))
    outside.set_weights(inside.get_weights()[1:])
    inside.fit(x_train, y_train, epochs=1, batch_size=64, seed=0)
    stats = pixel_stats(x_train) if method == "standardize" else None
    outside.fit(normalize_pixels(x_train, method, stats), y_train, epochs=1, batch_size=64, seed=0)
    for a, b in zip(inside.layers[1:], outside.layers, strict=True):
        np.testing.assert_allclose(a.params["W"], b.params["W"], rtol=1e-3, atol=1e-5)
    p_inside = inside.predict_proba(x_test)
    p_outside = outside.predict_proba(normalize_pixels(x_test, method, stats))
    np.testing.assert_allclose(p_inside, p_outside, rtol=1e-3, atol=1e-5)
    assert p_inside.dtype == np.float32


def test_statistics_come_from_the_training_part_and_are_saved(pixels, tmp_path):
    x_train, y_train, x_test, y_test = pixels
    model = Model([Normalize("standardize"), Dense(10, "softmax")])
    model.fit(x_train, y_train, epochs=3, lr=0.1, dev_fraction=0.2, seed=1)
    mean = model.layers[0].state["mean"]
    assert not np.allclose(mean, x_train.mean(axis=0), atol=1e-3)  # the dev rows are left out
    assert np.isclose(mean.mean(), x_train.mean(), rtol=0.05)
    loaded = Model.load(model.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.layers[0].state["mean"], mean)
    np.testing.assert_array_equal(loaded.predict_proba(x_test), model.predict_proba(x_test))
    assert loaded.evaluate(x_test, y_test)["accuracy"] > 0.8


def test_the_first_fit_adapts_a_model_built_beforehand_and_later_fits_keep_it(pixels):
    x_train, y_train, _, _ = pixels
    model = Model([Normalize("standardize"), Dense(10, "softmax")]).build((784,), seed=0)
    model.fit(x_train, y_train, epochs=1, seed=0)
    mean = model.layers[0].state["mean"].copy()
    np.testing.assert_allclose(mean, x_train.mean(axis=0), rtol=1e-5, atol=1e-3)
    model.fit(x_train[:500], y_train[:500], epochs=1, seed=0)  # continued training
    np.testing.assert_array_equal(model.layers[0].state["mean"], mean)


def test_integer_input_stays_integer_and_floats_are_still_checked(pixels):
    x_train, y_train, *_ = pixels
    model = Model([Normalize(), Dense(10, "softmax")]).build((784,))
    assert model.check_input(x_train).dtype == np.uint8
    bad = x_train[:4].astype(np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(DeepnetError, match="1 NaN or infinite"):
        model.predict(bad)
    # A model without normalize casts each integer batch itself.
    plain = Model([Dense(10, "softmax")])
    plain.fit(x_train, y_train, epochs=1, seed=0)
    assert plain.predict_proba(x_train[:5]).dtype == np.float32


def test_fit_with_a_dev_split_and_predict_make_no_float_copy_of_the_pixels(pixels):
    x_train, y_train, *_ = pixels
    x = np.repeat(x_train, 3, axis=0)  # 9,000 images: 7 MB as uint8, 28 MB as float32
    model = Model([Normalize("standardize"), Dense(16, "relu"), Dense(10, "softmax")])
    tracemalloc.start()
    try:
        model.fit(x, np.repeat(y_train, 3), epochs=1, batch_size=128, dev_fraction=0.1, seed=0)
        model.predict(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * x.size * 4, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("method", ["scale", "standardize"])
def test_predict_folds_the_normalization_into_the_first_dense_layer(pixels, method):
    x_train, y_train, x_test, _ = pixels
    model = Model([Normalize(method), Dense(32, "tanh"), Dense(10, "softmax")])
    model.fit(x_train, y_train, epochs=1, seed=0)
    norm, dense = model.layers[:2]
    folded = norm.fold(dense)
    assert folded is not None and folded.params["W"].dtype == np.float32
    x = x_test.astype(np.float32)
    expected = dense.forward(norm.forward(x_test)[0])[0]
    np.testing.assert_allclose(folded.forward(x)[0], expected, rtol=1e-4, atol=1e-4)
    unfolded = model.forward(x_test)[0]  # forward (training, gradients) never folds
    np.testing.assert_allclose(model.predict_proba(x_test), unfolded, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x_test), unfolded.argmax(axis=1))
    assert norm.fold(Normalize()) is None  # only a plain dense layer takes the fold


def test_a_predictor_folds_once_and_predicts_as_predict_proba(pixels, monkeypatch):
    x_train, y_train, x_test, _ = pixels
    model = Model([Normalize("standardize"), Dense(16, "relu"), Dense(10, "softmax")])
    model.fit(x_train, y_train, epochs=1, seed=0)
    folds = []
    fold = Normalize.fold
    monkeypatch.setattr(Normalize, "fold", lambda self, nxt: folds.append(1) or fold(self, nxt))
    predict = model.predictor(batch_size=64)
    for part in (x_test[:7], x_test[7:300], x_test[:0]):
        np.testing.assert_array_equal(predict(part), model.predict_proba(part, batch_size=64))
    assert len(folds) == 1 + 3  # the predictor's one, then predict_proba's one per call
    with pytest.raises(DeepnetError, match="not built"):
        Model([Dense(10, "softmax")]).predictor()
