"""Built-in layers: dense (fully connected) and flatten."""

from __future__ import annotations

from math import prod
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Array, Layer
from deepnet.core.errors import ShapeError
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
        return x @ self.params["W"] + self.params["b"], x

    def backward(self, dz: Array, cache: Array, need_dx: bool = True):
        grads = {"W": cache.T @ dz, "b": dz.sum(axis=0)}
        return (dz @ self.params["W"].T if need_dx else None), grads


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
    register(Dense, name="dense")
    register(Flatten, name="flatten")
