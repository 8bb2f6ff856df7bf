"""Contributed regularizers: l2 (weight decay), l1, l1_l2, and the max_norm constraint.

They apply to the weights a layer lists in ``regularized`` (dense and conv2d: ``W``, not the
biases). Penalties are added to the batch loss as they are, not divided by the batch size: the
course's ``λ/(2m)·Σw²`` is ``l2`` with ``lam = λ/m``.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Array, Regularizer
from deepnet.core.hookspecs import hookimpl
from deepnet.core.validators import non_negative, positive


def _abs_sum(w: Array) -> float:
    return float(np.abs(w).sum())


def _half_square_sum(w: Array) -> float:
    flat = w.reshape(-1)
    return 0.5 * float(flat @ flat)


def _lam_field(default: float = 0.01) -> Any:
    # float(): a NumPy float64 factor would turn float32 gradients into float64.
    return attrs.field(default=default, converter=float, validator=non_negative)


@attrs.define
class L2(Regularizer):
    """Weight decay: penalty lam/2·Σw², gradient lam·w."""

    lam: float = _lam_field()

    def penalty(self, w: Array) -> float:
        return self.lam * _half_square_sum(w)

    def gradient(self, w: Array) -> Array:
        return self.lam * w


@attrs.define
class L1(Regularizer):
    """Sparsity: penalty lam·Σ|w|, subgradient lam·sign(w) (0 at w = 0)."""

    lam: float = _lam_field()

    def penalty(self, w: Array) -> float:
        return self.lam * _abs_sum(w)

    def gradient(self, w: Array) -> Array:
        return self.lam * np.sign(w)


@attrs.define
class L1L2(Regularizer):
    """Elastic net: penalty l1·Σ|w| + l2/2·Σw², gradient l1·sign(w) + l2·w."""

    l1: float = _lam_field()
    l2: float = _lam_field()

    def penalty(self, w: Array) -> float:
        return self.l1 * _abs_sum(w) + self.l2 * _half_square_sum(w)

    def gradient(self, w: Array) -> Array:
        g = self.l1 * np.sign(w)
        g += self.l2 * w
        return g


def _axis(value: Any) -> int | tuple[int, ...]:
    # JSON turns a tuple of axes into a list; NumPy wants an int or a tuple.
    return int(value) if isinstance(value, int | np.integer) else tuple(int(a) for a in value)


@attrs.define
class MaxNorm(Regularizer):
    """Constraint: after each step, rescales each unit's weight vector (the norm over ``axis``)
    to at most max_value. For a dense W (n_in, n_out), axis=0 bounds each unit's incoming
    weights, i.e. each column. No penalty."""

    max_value: float = attrs.field(default=3.0, converter=float, validator=positive)
    axis: Any = attrs.field(default=0, converter=_axis)

    def constrain(self, w: Array) -> None:
        norms = np.sqrt(np.square(w).sum(axis=self.axis, keepdims=True))
        # Only vectors over the bound are scaled: the others (zero ones too) keep exactly 1.
        factor = np.ones_like(norms)
        np.divide(self.max_value, norms, out=factor, where=norms > self.max_value)
        w *= factor


@hookimpl
def deepnet_register_regularizers(register):
    register(L2, name="l2")
    register(L1, name="l1")
    register(L1L2, name="l1_l2")
    register(MaxNorm, name="max_norm")
