"""Built-in initializers: the notebook's standard normal, zeros, and the scaled ones.

Scaled initializers draw with variance ``scale / fan``: LeCun (1/fan_in), Glorot/Xavier
(2/(fan_in+fan_out)), He (2/fan_in); ``*_uniform`` draws from ±sqrt(3·variance).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from deepnet.core.components import Array, Initializer
from deepnet.core.hookspecs import hookimpl


@attrs.define
class Normal(Initializer):
    """Normal(mean, std); the course notebook used the standard normal (std=1)."""

    mean: float = 0.0
    std: float = 1.0

    def __call__(self, shape, rng, fan_in, fan_out) -> Array:
        return rng.normal(self.mean, self.std, size=shape)


@attrs.define
class Zeros(Initializer):
    """All zeros (the default for biases)."""

    def __call__(self, shape, rng, fan_in, fan_out) -> Array:
        return np.zeros(shape)


@attrs.define
class _VarianceScaling(Initializer):
    scale: ClassVar[float] = 1.0
    mode: ClassVar[str] = "fan_in"
    uniform: ClassVar[bool] = False

    def __call__(self, shape, rng, fan_in, fan_out) -> Array:
        fan = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        std = np.sqrt(self.scale / max(fan, 1))
        if self.uniform:
            limit = np.sqrt(3.0) * std
            return rng.uniform(-limit, limit, size=shape)
        return rng.normal(0.0, std, size=shape)


@attrs.define
class LecunNormal(_VarianceScaling):
    """Normal with variance 1/fan_in: the notebook's randn·√(1/n_in) fix."""


@attrs.define
class LecunUniform(_VarianceScaling):
    """Uniform with variance 1/fan_in."""

    uniform = True


@attrs.define
class GlorotNormal(_VarianceScaling):
    """Glorot/Xavier normal: variance 2/(fan_in + fan_out)."""

    mode = "fan_avg"


@attrs.define
class GlorotUniform(_VarianceScaling):
    """Glorot/Xavier uniform: variance 2/(fan_in + fan_out)."""

    mode = "fan_avg"
    uniform = True


@attrs.define
class HeNormal(_VarianceScaling):
    """He/Kaiming normal: variance 2/fan_in, for ReLU layers."""

    scale = 2.0


@attrs.define
class HeUniform(_VarianceScaling):
    """He/Kaiming uniform: variance 2/fan_in, for ReLU layers."""

    scale = 2.0
    uniform = True


@hookimpl
def deepnet_register_initializers(register):
    register(Normal, name="normal")
    register(Zeros, name="zeros")
    register(LecunNormal, name="lecun_normal")
    register(LecunUniform, name="lecun_uniform")
    register(GlorotNormal, name="glorot_normal")
    register(GlorotUniform, name="glorot_uniform")
    register(HeNormal, name="he_normal")
    register(HeUniform, name="he_uniform")
