"""Built-in layers: normalize (input preprocessing), dense (fully connected) and flatten."""

from __future__ import annotations

from math import prod
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Array, Layer
from deepnet.core.data import pixel_stats
from deepnet.core.errors import DeepnetError, ShapeError
from deepnet.core.hookspecs import hookimpl
from deepnet.core.plugins import create
from deepnet.core.validators import positive_int


@attrs.define(eq=False)
class Dense(Layer):
    """Fully connected: z = x @ W + b, x (N, n_in), W (n_in, units), b (units,), z (N, units)."""

    units: int = attrs.field(validator=positive_int)
    activation: Any = None
    init: Any = "glorot_uniform"
    bias_init: Any = "zeros"

    regularized = ("W",)

    def build(self, input_shape, rng, dtype):
        if len(input_shape) != 1:
            raise ShapeError(
                f"dense layer expects inputs of shape (N, features), got (N, "
                f"{', '.join(map(str, input_shape))}); add a 'flatten' layer before it"
            )
        n_in = int(input_shape[0])
        w = create("initializer", self.init)((n_in, self.units), rng, n_in, self.units)
        b = create("initializer", self.bias_init)((self.units,), rng, n_in, self.units)
        self.params.clear()
        self.params.update(W=np.ascontiguousarray(w, dtype=dtype), b=b.astype(dtype))
        return (self.units,)

    def forward(self, x: Array, training: bool = False) -> tuple[Array, Array]:
        z = x @ self.params["W"]
        z += self.params["b"]  # in place: no second (N, units) array
        return z, x

    def backward(self, dz: Array, cache: Array, need_dx: bool = True):
        grads = {"W": cache.T @ dz, "b": dz.sum(axis=0)}
        return (dz @ self.params["W"].T if need_dx else None), grads


@attrs.define(eq=False)
class Normalize(Layer):
    """Input preprocessing inside the model: z = (x - mean) · scale, per feature, no params.

    ``method="scale"`` maps pixels 0..255 to 0..1 (mean 0, scale 1/255); ``"standardize"``
    uses the per-feature mean and 1/std of the training data, set by :meth:`adapt` (which
    :meth:`Model.fit` calls when it builds the model). Both are ``state``, saved with the model,
    so a model file carries its preprocessing and takes raw pixels. Integer inputs (uint8
    pixels) are cast here, one batch at a time: the data set never needs a float copy.
    """

    method: str = attrs.field(
        default="scale", validator=attrs.validators.in_(("scale", "standardize"))
    )

    accepts_integers = True

    def build(self, input_shape, rng, dtype):
        scale = 1 / 255 if self.method == "scale" else 1.0
        self.state.clear()
        self.state.update(
            mean=np.zeros(input_shape, dtype=dtype), scale=np.full(input_shape, scale, dtype)
        )
        return tuple(input_shape)

    def adapt(self, x: Array) -> None:
        """Fit ``standardize``'s mean and 1/std to ``x`` ``(N, *input_shape)``; constant
        features get scale 1. ``scale`` needs no data."""
        if self.method != "standardize":
            return
        if len(x) == 0:
            raise DeepnetError("normalize: cannot compute statistics of an empty data set")
        mean, std = pixel_stats(x)
        self.state["mean"][...] = mean
        self.state["scale"][...] = 1.0 / std

    def forward(self, x: Array, training: bool = False) -> tuple[Array, None]:
        mean, scale = self.state["mean"], self.state["scale"]
        if self.method == "scale":  # its mean is 0: one pass, which also casts uint8
            return np.multiply(x, scale, dtype=scale.dtype), None
        z = np.subtract(x, mean, dtype=mean.dtype)
        z *= scale
        return z, None

    def backward(self, dz: Array, cache: None, need_dx: bool = True):
        return (dz * self.state["scale"] if need_dx else None), {}

    def fold(self, following: Layer) -> Layer | None:
        """``following`` applied to normalized inputs, as one dense layer on the raw inputs
        (for inference): ((x - mean)·scale) @ W + b = x @ (scale·W) + (b - (mean·scale) @ W).

        Saves the per-batch normalization passes; equal up to float rounding. None unless
        ``following`` is a plain :class:`Dense` on 1-D features.
        """
        if type(following) is not Dense or self.state["scale"].ndim != 1:
            return None
        w, b = following.params["W"], following.params["b"]
        mean, scale = self.state["mean"], self.state["scale"]
        folded = Dense(following.units, following.activation)
        folded.params.update(W=scale[:, None] * w, b=b - (mean * scale) @ w)
        return folded


@attrs.define(eq=False)
class Flatten(Layer):
    """Reshapes (N, d1, d2, ...) to (N, d1·d2·...)."""

    def build(self, input_shape, rng, dtype):
        return (prod(input_shape),)

    def forward(self, x: Array, training: bool = False) -> tuple[Array, tuple]:
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dz: Array, cache: tuple, need_dx: bool = True):
        return dz.reshape(cache), {}


@hookimpl
def deepnet_register_layers(register):
    register(Normalize, name="normalize")
    register(Dense, name="dense")
    register(Flatten, name="flatten")
