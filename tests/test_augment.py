"""The built-in ``random_affine`` augmentation layer."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet import Model
from deepnet.core import gradcheck
from deepnet.core.errors import ShapeError
from deepnet.plugins.augment import RandomAffine

ndimage = pytest.importorskip("scipy.ndimage")


def built(shape, dtype=np.float64, seed=0, **options):
    layer = RandomAffine(**options)
    layer.build(shape, np.random.default_rng(seed), dtype)
    return layer


@pytest.mark.parametrize("shape", [(36,), (6, 7), (2, 5, 5)])
def test_gradient_in_training(shape):
    layer = RandomAffine(rotation=20, shift=1.5)
    result = gradcheck.check_layer(layer, input_shape=shape, batch=3, training=True)
    assert result.passed, result


@pytest.mark.parametrize("shape", [(36,), (2, 5, 5)])
def test_gradient_in_training_with_elastic_distortion(shape):
    layer = RandomAffine(rotation=20, shift=1.5, elastic=1.0, smoothness=2.0)
    result = gradcheck.check_layer(layer, input_shape=shape, batch=3, training=True)
    assert result.passed, result


def test_elastic_warp_samples_where_scipy_map_coordinates_does():
    """With ``elastic``, each output pixel reads its affine source moved by the drawn field."""
    x = np.random.default_rng(1).random((4, 2, 9, 8))
    layer = built(x.shape[1:], rotation=30, shift=3, elastic=1.5, smoothness=2.0)
    z, (linear, shift, field) = layer.forward(x, training=True)
    centre = np.array([[4.0], [3.5]])
    for n in range(len(x)):
        source = linear[n] @ layer.grid + centre - shift[n][:, None] + field[n]
        for c in range(2):
            expected = ndimage.map_coordinates(x[n, c], source, order=1, mode="grid-constant")
            np.testing.assert_allclose(z[n, c].ravel(), expected, atol=1e-9)


def test_elastic_field_is_smooth_of_the_size_asked_and_leaves_the_affine_part_alone():
    plain = built((28, 28), seed=5)
    bent = built((28, 28), seed=5, elastic=0.7, smoothness=4.0)
    assert len(plain._draw(3)) == 2  # no field drawn without elastic
    linear, _, field = bent._draw(2000)
    plain.rng = np.random.default_rng(5)
    np.testing.assert_array_equal(plain._draw(2000)[0], linear)
    inner = field.reshape(2000, 2, 28, 28)[:, :, 8:20, 8:20]
    assert 0.6 < inner.std() < 0.8  # the deviation asked for, away from the borders
    # Smooth: neighbours move alike (0.18 of the displacement apart here; 1.4 for white noise).
    assert np.abs(np.diff(inner, axis=-1)).mean() < 0.3 * np.abs(inner).mean()


def test_warps_as_scipy_affine_transform_does():
    """Each image is resampled exactly as ``scipy.ndimage.affine_transform`` (bilinear, zeros
    outside) resamples it with the same map, drawn by the layer."""
    x = np.random.default_rng(1).random((6, 2, 9, 8))
    layer = built(x.shape[1:], rotation=30, scale=0.3, shear=0.4, shift=3)
    z, (linear, shift) = layer.forward(x, training=True)
    centre = np.array([4.0, 3.5])
    for n in range(len(x)):
        offset = centre - linear[n] @ centre - shift[n]
        for c in range(2):
            expected = ndimage.affine_transform(
                x[n, c], linear[n], offset, order=1, mode="grid-constant"
            )
            np.testing.assert_allclose(z[n, c], expected, atol=1e-9)


def test_no_distortion_gives_the_input_back():
    pixels = np.random.default_rng(2).integers(0, 256, (4, 784), dtype=np.uint8)
    layer = built((784,), np.float32, rotation=0, scale=0, shear=0, shift=0)
    z, _ = layer.forward(pixels, training=True)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, pixels)


def test_each_image_gets_its_own_distortion_and_evaluation_is_the_identity():
    x = np.tile(np.random.default_rng(3).random((1, 10, 10)), (5, 1, 1))
    layer = built((10, 10))
    z, _ = layer.forward(x, training=True)
    assert len({z[i].tobytes() for i in range(5)}) == 5
    assert layer.forward(x, training=False)[0] is x


def test_inference_leaves_it_out_and_still_folds_normalize_into_dense():
    specs = [{"name": "random_affine"}, {"name": "normalize", "method": "standardize"}]
    specs.append({"name": "dense", "units": 3, "activation": "softmax"})
    model = Model(specs, loss="categorical_cross_entropy", dtype="float64")
    pixels = np.random.default_rng(4).integers(0, 256, (64, 16), dtype=np.uint8)
    model.fit(pixels, np.arange(64) % 3, epochs=1, batch_size=16, lr=0.01)
    # standardize was adapted although random_affine comes first
    assert model.layers[1].state["scale"].std() > 0
    layers, _ = model._inference_stack()
    assert [type(layer).__name__ for layer in layers] == ["Dense"]
    normalize, dense = model.layers[1], model.layers[2]
    by_hand = normalize.forward(pixels)[0] @ dense.params["W"] + dense.params["b"]
    np.testing.assert_allclose(
        model.predict_proba(pixels), model.activations[2].forward(by_hand), rtol=1e-9
    )


@pytest.mark.parametrize("shape", [(35,), (2, 3, 4, 5)])
def test_shapes_that_are_not_images_are_refused(shape):
    with pytest.raises(ShapeError, match="random_affine expects images"):
        built(shape)


def test_negative_or_nan_ranges_are_refused():
    with pytest.raises(ValueError, match="rotation must be >= 0"):
        RandomAffine(rotation=-1)
    with pytest.raises(ValueError, match="shift must be >= 0"):
        RandomAffine(shift=float("nan"))
    with pytest.raises(ValueError, match="elastic must be >= 0"):
        RandomAffine(elastic=-0.5)
    with pytest.raises(ValueError, match="smoothness must be > 0"):
        RandomAffine(elastic=1.0, smoothness=0.0)


def test_a_model_without_normalize_behind_it_still_gets_its_pixels_normalized():
    """random_affine takes raw pixels, but only a normalize layer makes the model take them."""
    from deepnet.images import model_normalizer

    specs = [{"name": "random_affine"}, {"name": "dense", "units": 10, "activation": "softmax"}]
    model = Model(specs, loss="categorical_cross_entropy")
    model.build((784,))
    model.meta["data"] = {"normalize": "scale"}
    pixels = np.full((2, 784), 255, dtype=np.uint8)
    np.testing.assert_array_equal(model_normalizer(model)(pixels), 1.0)
    model = Model([{"name": "random_affine"}, {"name": "normalize"}, *specs[1:]])
    model.build((784,))
    assert model_normalizer(model)(pixels) is pixels
