"""Contributed activations: leaky_relu, elu, selu, gelu, softplus, silu (= swish), hard_sigmoid
and linear. All elementwise, dtype-preserving, and silent for any finite input.

Softmax is not here: the core registers it (categorical cross-entropy fuses with it), and a
second provider would make the name ambiguous.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numpy as np

from deepnet.core.components import Activation, Array
from deepnet.core.hookspecs import hookimpl
from deepnet.core.validators import non_negative
from deepnet.plugins.activations import Sigmoid

_sigmoid = Sigmoid().forward  # the core's overflow-free logistic function


@attrs.define
class LeakyReLU(Activation):
    """Leaky ReLU: z for z > 0, alpha·z otherwise."""

    # float(): a NumPy float64 hyperparameter would turn float32 activations into float64.
    alpha: float = attrs.field(default=0.01, converter=float, validator=non_negative)

    def forward(self, z: Array) -> Array:
        return z * self.derivative(z, z)

    def derivative(self, z: Array, a: Array) -> Array:
        # 1 for z > 0, alpha otherwise, from the mask by arithmetic: np.where is ~10x slower
        # on random masks. Built as 1 + (alpha - 1)·[z <= 0] so that the slope 1 is exact.
        slope = (z <= 0).astype(z.dtype)
        slope *= self.alpha - 1.0
        slope += 1.0
        return slope


class _ExponentialLinear(Activation):
    # scale·z for z > 0, scale·alpha·(e^z - 1) otherwise; expm1 of min(z, 0) never overflows.
    # Subclasses give alpha (a field or a constant).
    scale: ClassVar[float] = 1.0

    def forward(self, z: Array) -> Array:
        negative = (self.scale * self.alpha) * np.expm1(np.minimum(z, 0))
        return np.where(z > 0, self.scale * z, negative)

    def derivative(self, z: Array, a: Array) -> Array:
        # For z <= 0 the derivative scale·alpha·e^z is a + scale·alpha.
        return np.where(z > 0, self.scale, a + self.scale * self.alpha).astype(z.dtype, copy=False)

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        return self.derivative(z, a) * da


@attrs.define
class ELU(_ExponentialLinear):
    """Exponential linear unit: z for z > 0, alpha·(e^z - 1) otherwise."""

    alpha: float = attrs.field(default=1.0, converter=float, validator=non_negative)


@attrs.define
class SELU(_ExponentialLinear):
    """Scaled ELU (self-normalizing): scale·elu(z, alpha) with the fixed constants of Klambauer
    et al. (alpha ≈ 1.6733, scale ≈ 1.0507); use with lecun_normal initialization."""

    alpha: ClassVar[float] = 1.6732632423543772
    scale: ClassVar[float] = 1.0507009873554805


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
# tanh of the GELU argument is exactly ±1 in float64 beyond |z| = 10; clipping there keeps z³
# from overflowing without changing any result.
_GELU_CLIP = 10.0


@attrs.define
class GELU(Activation):
    """Gaussian error linear unit, tanh approximation (NumPy has no erf):
    0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))."""

    def _tanh(self, z: Array) -> tuple[Array, Array]:
        zc = np.clip(z, -_GELU_CLIP, _GELU_CLIP)
        return np.tanh(_GELU_C * (zc + _GELU_K * zc * zc * zc)), zc

    def forward(self, z: Array) -> Array:
        t, _ = self._tanh(z)
        return 0.5 * z * (1.0 + t)

    def derivative(self, z: Array, a: Array) -> Array:
        t, zc = self._tanh(z)
        dt = (1.0 - t * t) * (_GELU_C * (1.0 + 3.0 * _GELU_K * zc * zc))
        return 0.5 * (1.0 + t) + 0.5 * z * dt


@attrs.define
class Softplus(Activation):
    """Softplus log(1 + e^z), as logaddexp(0, z) so it never overflows; derivative sigmoid(z)."""

    def forward(self, z: Array) -> Array:
        return np.logaddexp(0, z)

    def derivative(self, z: Array, a: Array) -> Array:
        return _sigmoid(z)


@attrs.define
class SiLU(Activation):
    """Sigmoid-weighted linear unit z·sigmoid(z), also called swish."""

    def forward(self, z: Array) -> Array:
        return z * _sigmoid(z)

    def derivative(self, z: Array, a: Array) -> Array:
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))


@attrs.define
class Swish(SiLU):
    """Swish z·sigmoid(z): silu under its other name (its own class, so configs keep the name)."""


@attrs.define
class HardSigmoid(Activation):
    """Piecewise-linear sigmoid, as PyTorch's: clip(z/6 + 1/2, 0, 1)."""

    def forward(self, z: Array) -> Array:
        return np.clip(z / 6 + 0.5, 0, 1)

    def derivative(self, z: Array, a: Array) -> Array:
        return np.where(np.abs(z) < 3, 1 / 6, 0.0).astype(z.dtype)

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        return np.where(np.abs(z) < 3, da / 6, 0)


@attrs.define
class Linear(Activation):
    """The identity f(z) = z (e.g. for regression outputs)."""

    def forward(self, z: Array) -> Array:
        return z

    def derivative(self, z: Array, a: Array) -> Array:
        return np.ones_like(z)

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        return da


@hookimpl
def deepnet_register_activations(register):
    register(LeakyReLU, name="leaky_relu")
    register(ELU, name="elu")
    register(SELU, name="selu")
    register(GELU, name="gelu")
    register(Softplus, name="softplus")
    register(SiLU, name="silu")
    register(Swish, name="swish")
    register(HardSigmoid, name="hard_sigmoid")
    register(Linear, name="linear")
