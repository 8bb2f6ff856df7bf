"""Model assembly, training, determinism, dtypes and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet import (
    Dense,
    DivergenceError,
    Flatten,
    Model,
    ShapeError,
    UnknownComponentError,
)
from deepnet.core.errors import DeepnetError


def small_model(**kwargs):
    return Model([Dense(8, "tanh"), Dense(3, "softmax")], **kwargs)


def test_models_by_objects_and_by_names_are_the_same(blobs):
    x, y = blobs
    by_objects = Model([Dense(8, "relu", init="he_normal"), Dense(3, "softmax")])
    by_names = Model(
        [{"name": "dense", "units": 8, "activation": "relu", "init": "he_normal"},
         {"name": "dense", "units": 3, "activation": "softmax"}],
        loss="categorical_cross_entropy",
    )  # fmt: skip
    for model in (by_objects, by_names):
        model.fit(x, y, epochs=2, batch_size=16, lr=0.1, seed=5)
    np.testing.assert_array_equal(by_objects.predict_proba(x), by_names.predict_proba(x))


def test_training_learns_and_records_history(blobs):
    x, y = blobs
    model = small_model()
    history = model.fit(x, y, epochs=5, batch_size=16, lr=0.2, dev_fraction=0.2, seed=0)
    assert len(history.epochs) == 5
    assert history["loss"][-1] < history["loss"][0]
    assert history["dev_accuracy"][-1] > 0.95
    assert model.evaluate(x, y)["accuracy"] > 0.95
    assert model.meta["training"]["samples"] == 240  # 20% held out as dev


def test_same_seed_gives_bit_identical_weights(blobs):
    x, y = blobs
    runs = []
    for _ in range(2):
        model = small_model()
        model.fit(x, y, epochs=3, batch_size=10, lr=0.1, dev_fraction=0.1, seed=42)
        runs.append([p.copy() for _, _, p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    other = small_model()
    other.fit(x, y, epochs=3, batch_size=10, lr=0.1, dev_fraction=0.1, seed=43)
    assert not np.array_equal(runs[0][0], other.parameters()[0][2])


def test_no_shuffle_is_the_notebooks_sequential_loop(blobs):
    x, y = blobs
    model = small_model(dtype="float64")
    model.fit(x, y, epochs=2, batch_size=50, lr=0.1, shuffle=False, seed=1)
    # The same updates written out by hand, batch after batch in the data's order.
    manual = small_model(dtype="float64").build((4,), seed=model.seed)
    targets = manual.one_hot(y)
    for _ in range(2):
        for start in range(0, 300, 50):
            _, caches = manual.forward(x[start : start + 50], training=True)
            grads = manual.backward(caches, targets[start : start + 50])
            for i, name, p in manual.parameters():
                p -= 0.1 * grads[i][name]
    for (_, _, a), (_, _, b) in zip(model.parameters(), manual.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_stays_in_its_dtype(dtype, blobs):
    x, y = blobs
    model = small_model(dtype=dtype)
    model.fit(x, y, epochs=1, batch_size=32, optimizer={"name": "sgd", "momentum": 0.9}, seed=0)
    assert all(p.dtype == np.dtype(dtype) for _, _, p in model.parameters())
    assert model.predict_proba(x).dtype == np.dtype(dtype)


def test_summed_gradients_are_batch_size_times_the_mean(blobs):
    x, y = blobs
    grads = {}
    for reduction in ("mean", "sum"):
        model = Model(
            [Dense(5, "sigmoid"), Dense(3, "sigmoid")],
            loss={"name": "binary_cross_entropy", "reduction": reduction},
            dtype="float64",
        ).build((4,), seed=0)
        _, caches = model.forward(x[:20])
        grads[reduction] = model.backward(caches, model.one_hot(y[:20]))
    np.testing.assert_allclose(grads["sum"][0]["W"], 20 * grads["mean"][0]["W"], rtol=1e-12)


def test_predict_uses_the_class_axis():
    model = Model([Dense(3, "softmax")]).build((2,), seed=0)
    model.layers[0].params["W"][...] = [[5, 0, 0], [0, 0, 5]]
    np.testing.assert_array_equal(model.predict([[1, 0], [0, 1], [0, 0.1]]), [0, 2, 2])


def test_wrong_input_width_is_a_clear_error():
    model = small_model().build((4,), seed=0)
    with pytest.raises(ShapeError, match=r"expected input of shape \(N, 4\), got \(2, 5\)"):
        model.predict(np.zeros((2, 5)))


def test_nan_inputs_are_refused(blobs):
    x, y = blobs
    x = x.copy()
    x[3, 1] = np.nan
    with pytest.raises(DeepnetError, match="1 NaN or infinite"):
        small_model().fit(x, y, epochs=1)


@pytest.mark.parametrize(
    ("labels", "message"),
    [(np.full(300, 3), r"labels must be in 0\.\.2"), (np.zeros((300, 2)), "labels must have")],
)
def test_bad_labels_are_refused(labels, message, blobs):
    with pytest.raises(DeepnetError, match=message):
        small_model().fit(blobs[0], labels, epochs=1)


def test_unknown_component_in_a_model_suggests_names():
    with pytest.raises(UnknownComponentError, match="Did you mean 'tanh'"):
        Model([Dense(3, "tahn")])
    with pytest.raises(UnknownComponentError, match="unknown loss"):
        Model([Dense(3)], loss="cross_entropy")


def test_divergence_raises_and_keeps_the_last_finite_weights(blobs):
    x, y = blobs
    model = Model([Dense(8, "relu", init="normal"), Dense(3, "softmax")])
    model.fit(x, y, epochs=1, lr=0.01, seed=0)
    before = [p.copy() for _, _, p in model.parameters()]
    with pytest.raises(DivergenceError, match="Lower the learning rate"):
        model.fit(x * 1e6, y, epochs=3, lr=1e6, seed=0)
    for kept, (_, _, now) in zip(before, model.parameters(), strict=True):
        np.testing.assert_array_equal(kept, now)


def test_flatten_lets_dense_take_images():
    model = Model([Flatten(), Dense(10, "softmax")]).build((28, 28), seed=0)
    assert model.predict(np.zeros((3, 28, 28))).shape == (3,)
    with pytest.raises(ShapeError, match="add a 'flatten' layer"):
        Model([Dense(10, "softmax")]).build((28, 28))


def test_bad_training_options_are_clear(blobs):
    x, y = blobs
    with pytest.raises(DeepnetError, match="epochs must be a positive integer"):
        small_model().fit(x, y, epochs=0)
    with pytest.raises(DeepnetError, match="nesterov needs momentum"):
        small_model().fit(x, y, optimizer={"name": "sgd", "nesterov": True})
    with pytest.raises(ShapeError, match="300 samples but y has 2"):
        small_model().fit(x, y[:2])


def test_cross_entropy_on_a_linear_output_is_refused():
    with pytest.raises(DeepnetError, match="needs probabilities: end the model with a softmax"):
        Model([Dense(8, "relu"), Dense(3)])


def test_fusion_survives_a_second_softmax(registry_of):
    import types

    from deepnet import hookimpl
    from deepnet.plugins.activations import Softmax

    class OtherSoftmax(Softmax):
        """Another provider's softmax."""

    twin = types.ModuleType("twin")
    twin.deepnet_register_activations = hookimpl(lambda register: register(OtherSoftmax, "softmax"))
    registry_of(twin)
    assert Model([Dense(3, "deepnet/softmax")])._fused
    assert not Model([Dense(3, "twin/softmax")])._fused  # not the loss's own: plain backward
