"""Built-in losses: binary cross-entropy (sigmoid outputs) and categorical (softmax outputs)."""

from __future__ import annotations

import attrs
import numpy as np

from deepnet.core.components import Array, Loss
from deepnet.core.hookspecs import hookimpl

_REDUCTIONS = ("mean", "sum")


def _clip(a: Array) -> Array:
    # Saturated outputs (exactly 0 or 1 in float32) would give log(0) and 0/0.
    eps = np.finfo(a.dtype).eps
    return np.clip(a, eps, 1.0 - eps)


@attrs.define
class BinaryCrossEntropy(Loss):
    """-Σ y·log a + (1-y)·log(1-a) over outputs, per sample; fused with sigmoid."""

    fused_activation = "sigmoid"
    reduction: str = attrs.field(default="mean", validator=attrs.validators.in_(_REDUCTIONS))

    def forward(self, a: Array, y: Array) -> float:
        a = _clip(a)
        total = -(y * np.log(a) + (1.0 - y) * np.log1p(-a)).sum(dtype=np.float64)
        return float(total * self.scale(a))

    def backward(self, a: Array, y: Array) -> Array:
        a = _clip(a)
        return (a - y) / (a * (1.0 - a)) * self.scale(a)


@attrs.define
class CategoricalCrossEntropy(Loss):
    """-Σ y·log a over classes, per sample; fused with softmax."""

    fused_activation = "softmax"
    reduction: str = attrs.field(default="mean", validator=attrs.validators.in_(_REDUCTIONS))

    def forward(self, a: Array, y: Array) -> float:
        a = np.maximum(a, np.finfo(a.dtype).tiny)
        return float(-(y * np.log(a)).sum(dtype=np.float64) * self.scale(a))

    def backward(self, a: Array, y: Array) -> Array:
        a = np.maximum(a, np.finfo(a.dtype).tiny)
        return -y / a * self.scale(a)


@hookimpl
def deepnet_register_losses(register):
    register(BinaryCrossEntropy, name="binary_cross_entropy")
    register(CategoricalCrossEntropy, name="categorical_cross_entropy")
