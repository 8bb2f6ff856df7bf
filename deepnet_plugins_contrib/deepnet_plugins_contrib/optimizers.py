"""Contributed optimizers: momentum, nesterov, rmsprop, adagrad, adam and adamw.

Updates are in place and vectorized, through one preallocated ``scratch`` array per parameter
(kept in its state) so that a step allocates nothing. Every factor is a Python float: a NumPy
float64 scalar times a float32 array is float64 (NEP 50), which would double the memory traffic
and silently compute in the wrong precision. Defaults follow PyTorch unless noted.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Array, Optimizer
from deepnet.core.errors import DeepnetError
from deepnet.core.hookspecs import hookimpl
from deepnet.core.validators import non_negative, positive, unit_interval
from deepnet.plugins.optimizers import SGD

State = dict[str, Array]


def _rate(default: float) -> Any:
    return attrs.field(default=default, converter=float, validator=positive)


def _decay(default: float) -> Any:
    return attrs.field(default=default, converter=float, validator=unit_interval)


def _zeros(params: list[Array], *names: str) -> list[State]:
    """Per param: a zero array like it for each of ``names``, plus the ``scratch`` buffer."""
    return [{name: np.zeros_like(p) for name in (*names, "scratch")} for p in params]


def _shared_zeros(params: list[Array], *names: str) -> list[State]:
    """Like :func:`_zeros`, but each name's arrays are views into one flat array, their common
    ``.base`` (see :func:`_flat`): the elementwise passes that involve neither a param nor a
    gradient then run once over all parameters instead of once per array (fewer numpy calls,
    the same arithmetic). The state dicts look as before (checkpoints save the same arrays).
    The params must share one dtype (a model's)."""
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise DeepnetError(f"parameters must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop() if dtypes else np.float32
    ends = np.cumsum([p.size for p in params]).tolist()
    flat = {name: np.zeros(ends[-1] if ends else 0, dtype) for name in (*names, "scratch")}
    return [
        {name: a[start:end].reshape(p.shape) for name, a in flat.items()}
        for p, start, end in zip(params, [0, *ends], ends, strict=False)
    ]


def _flat(state: list[State], name: str) -> Array:
    """The flat array behind every param's ``state[i][name]`` made by :func:`_shared_zeros`."""
    return state[0][name].base


def _scaled_step(p: Array, numerator: Array, square_sum: Array, eps: float, lr: float, buf: Array):
    """``p -= lr · numerator / (sqrt(square_sum) + eps)``, computed in ``buf``."""
    np.sqrt(square_sum, out=buf)
    buf += eps
    np.divide(numerator, buf, out=buf)
    buf *= lr
    p -= buf


def _accumulate(avg: Array, value: Array, decay: float, buf: Array) -> None:
    """``avg = decay · avg + (1 - decay) · value`` in place (``buf`` may be ``value``)."""
    avg *= decay
    np.multiply(value, 1.0 - decay, out=buf)
    avg += buf


# momentum and nesterov are the core's SGD with momentum on by default; only the rule differs.
@attrs.define
class Momentum(SGD):
    """Heavy-ball momentum, PyTorch form: v = μ·v + g; p -= lr·v."""

    lr: float = _rate(0.01)
    momentum: float = _decay(0.9)
    nesterov: bool = attrs.field(default=False, init=False)


@attrs.define
class Nesterov(SGD):
    """Nesterov momentum, PyTorch form: v = μ·v + g; p -= lr·(g + μ·v)."""

    lr: float = _rate(0.01)
    momentum: float = _decay(0.9)
    nesterov: bool = attrs.field(default=True, init=False)


@attrs.define
class RMSprop(Optimizer):
    """RMSprop: s = ρ·s + (1-ρ)·g²; p -= lr·g / (√s + eps). Keras defaults (lr 0.001, ρ 0.9,
    eps 1e-7)."""

    lr: float = _rate(0.001)
    rho: float = _decay(0.9)
    eps: float = _rate(1e-7)

    def init(self, params: list[Array]) -> list[State]:
        return _zeros(params, "square_avg")

    def step(self, params, grads, state, lr) -> None:
        lr = float(lr)
        for p, g, s in zip(params, grads, state, strict=True):
            sq, buf = s["square_avg"], s["scratch"]
            np.multiply(g, g, out=buf)
            _accumulate(sq, buf, self.rho, buf)
            _scaled_step(p, g, sq, self.eps, lr, buf)


@attrs.define
class Adagrad(Optimizer):
    """Adagrad: G += g²; p -= lr·g / (√G + eps), G starting at initial_accumulator."""

    lr: float = _rate(0.01)
    eps: float = _rate(1e-10)
    initial_accumulator: float = attrs.field(default=0.0, converter=float, validator=non_negative)

    def init(self, params: list[Array]) -> list[State]:
        state = _zeros(params, "sum")
        for s in state:
            s["sum"] += self.initial_accumulator
        return state

    def step(self, params, grads, state, lr) -> None:
        lr = float(lr)
        for p, g, s in zip(params, grads, state, strict=True):
            acc, buf = s["sum"], s["scratch"]
            np.multiply(g, g, out=buf)
            acc += buf
            _scaled_step(p, g, acc, self.eps, lr, buf)


@attrs.define
class Adam(Optimizer):
    """Adam with bias correction: m, v = moving averages of g and g² (beta1, beta2);
    p -= lr·m̂ / (√v̂ + eps). Each param's m, v and scratch buffer are views into one flat
    array each (see :func:`_shared_zeros`); the step count t is a 0-d int64 array shared by
    every param's state."""

    lr: float = _rate(0.001)
    beta1: float = _decay(0.9)
    beta2: float = _decay(0.999)
    eps: float = _rate(1e-8)

    def init(self, params: list[Array]) -> list[State]:
        state = _shared_zeros(params, "m", "v")
        t = np.zeros((), np.int64)  # one count, shared like the moments
        for s in state:
            s["t"] = t
        return state

    def step(self, params, grads, state, lr) -> None:
        if not params:
            return
        lr, b1, b2 = float(lr), self.beta1, self.beta2
        m, v, buf = (_flat(state, k) for k in ("m", "v", "scratch"))
        t = state[0]["t"]
        if t < 0:  # only a damaged checkpoint has one; the bias corrections would divide by 0
            raise DeepnetError(f"{type(self).__name__}: damaged state: step count {int(t)}")
        t += 1
        # Twelve passes, as m, v = moving averages of g and g², then the scaled step; only
        # the three that read a gradient or write a param go array by array.
        for p, g, s in zip(params, grads, state, strict=True):
            self._decay_weights(p, lr)
            np.multiply(g, 1.0 - b1, out=s["scratch"])
        m *= b1
        m += buf
        for g, s in zip(grads, state, strict=True):
            np.multiply(g, g, out=s["scratch"])
        v *= b2
        buf *= 1.0 - b2
        v += buf
        # m̂/(√v̂ + eps) = (m/bc1) / (√v/√bc2 + eps) = (√bc2/bc1) · m / (√v + eps·√bc2):
        # the bias corrections become two scalars, and the update five passes.
        root_bc2 = math.sqrt(1.0 - b2 ** int(t))
        np.sqrt(v, out=buf)
        buf += self.eps * root_bc2
        np.divide(m, buf, out=buf)
        buf *= lr * root_bc2 / (1.0 - b1 ** int(t))
        for p, s in zip(params, state, strict=True):
            p -= s["scratch"]

    def _decay_weights(self, p: Array, lr: float) -> None:
        """No weight decay in Adam (AdamW overrides this)."""


@attrs.define
class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr·weight_decay before each Adam step (all
    parameters, biases included, as the optimizer sees no names)."""

    weight_decay: float = attrs.field(default=0.01, converter=float, validator=non_negative)

    def _decay_weights(self, p: Array, lr: float) -> None:
        p *= 1.0 - lr * self.weight_decay


@hookimpl
def deepnet_register_optimizers(register):
    register(Momentum, name="momentum")
    register(Nesterov, name="nesterov")
    register(RMSprop, name="rmsprop")
    register(Adagrad, name="adagrad")
    register(Adam, name="adam")
    register(AdamW, name="adamw")
