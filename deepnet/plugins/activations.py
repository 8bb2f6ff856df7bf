"""Built-in activations: sigmoid, tanh, relu and softmax. None overflows on any finite input."""

from __future__ import annotations

import attrs
import numpy as np

from deepnet.core.components import Activation, Array
from deepnet.core.hookspecs import hookimpl


@attrs.define
class Sigmoid(Activation):
    """Logistic function 1 / (1 + e^-z), computed without overflow."""

    def forward(self, z: Array) -> Array:
        # exp of a non-positive number never overflows; both branches share it.
        e = np.exp(-np.abs(z))
        s = 1.0 / (1.0 + e)
        return np.where(z >= 0, s, e * s)

    def derivative(self, z: Array, a: Array) -> Array:
        return a * (1.0 - a)


@attrs.define
class Tanh(Activation):
    """Hyperbolic tangent."""

    def forward(self, z: Array) -> Array:
        return np.tanh(z)

    def derivative(self, z: Array, a: Array) -> Array:
        return 1.0 - a * a


@attrs.define
class ReLU(Activation):
    """Rectified linear unit max(z, 0)."""

    def forward(self, z: Array) -> Array:
        return np.maximum(z, 0)

    def derivative(self, z: Array, a: Array) -> Array:
        return (z > 0).astype(z.dtype)

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        return np.where(z > 0, da, 0)


@attrs.define
class Softmax(Activation):
    """Softmax over the last axis (an output activation), shifted by the row max."""

    def forward(self, z: Array) -> Array:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        return a * (da - (da * a).sum(axis=-1, keepdims=True))


@hookimpl
def deepnet_register_activations(register):
    register(Sigmoid, name="sigmoid")
    register(Tanh, name="tanh")
    register(ReLU, name="relu")
    register(Softmax, name="softmax")
