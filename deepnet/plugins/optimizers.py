"""Built-in optimizer: SGD with optional momentum and Nesterov momentum (as PyTorch's SGD)."""

from __future__ import annotations

import attrs
import numpy as np

from deepnet.core.components import Array, Optimizer
from deepnet.core.errors import DeepnetError
from deepnet.core.hookspecs import hookimpl
from deepnet.core.validators import positive, unit_interval


@attrs.define
class SGD(Optimizer):
    """Stochastic gradient descent: v = μ·v + g; p -= lr·v (Nesterov: p -= lr·(g + μ·v))."""

    lr: float = attrs.field(default=0.01, validator=positive)
    momentum: float = attrs.field(default=0.0, validator=unit_interval)
    nesterov: bool = False

    def __attrs_post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise DeepnetError("nesterov needs momentum > 0, e.g. momentum=0.9")

    def init(self, params: list[Array]) -> list[dict[str, Array]]:
        # "scratch" holds each update, so that a step allocates nothing.
        if not self.momentum:
            return [{"scratch": np.zeros_like(p)} for p in params]
        return [{"velocity": np.zeros_like(p), "scratch": np.zeros_like(p)} for p in params]

    def step(self, params, grads, state, lr):
        mu, lr = self.momentum, float(lr)  # a numpy float64 rate would upcast float32 updates
        for p, g, s in zip(params, grads, state, strict=True):
            buf = s["scratch"]
            if mu:
                v = s["velocity"]
                v *= mu
                v += g
                if self.nesterov:  # p -= lr·g + lr·μ·v
                    np.multiply(g, lr, out=buf)
                    p -= buf
                    np.multiply(v, lr * mu, out=buf)
                else:
                    np.multiply(v, lr, out=buf)
            else:
                np.multiply(g, lr, out=buf)
            p -= buf


@hookimpl
def deepnet_register_optimizers(register):
    register(SGD, name="sgd")
