"""Numerical gradient checking by central differences in float64, for every component kind.

Each ``check_*`` compares the component's analytic gradient with
``(f(x + h) - f(x - h)) / 2h`` for a scalar ``f`` (a random projection of the output, or the
loss itself) and returns the largest relative error ``|a - n| / max(|a| + |n|, 1e-8)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Activation, Layer, Loss, Regularizer

TOLERANCE = 1e-6
STEP = 1e-5


@attrs.frozen
class GradCheck:
    """Result of one gradient check: the worst relative error, per checked array."""

    errors: dict[str, float]
    tolerance: float = TOLERANCE

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tolerance

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return (
            f"{'PASS' if self.passed else 'FAIL'} max relative error {self.max_error:.2e} ({parts})"
        )


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """The largest elementwise ``|a - n| / max(|a| + |n|, 1e-8)``."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if a.shape != n.shape:
        raise ValueError(f"analytic gradient has shape {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return 0.0
    return float((np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-8)).max())


def numeric_gradient(
    f: Callable[[], float], x: np.ndarray, h: float = STEP, indices: np.ndarray | None = None
) -> np.ndarray:
    """``df/dx`` by central differences, perturbing ``x`` in place (restored afterwards).

    With ``indices`` (into ``x.ravel()``), only those entries, as a 1-D array.
    """
    flat = x.reshape(-1)
    idx = np.arange(flat.size) if indices is None else indices
    grad = np.empty(len(idx), dtype=np.float64)
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        grad[j] = (up - down) / (2 * h)
    return grad.reshape(x.shape) if indices is None else grad


def _away_from_kinks(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    # Piecewise activations (relu, hard_sigmoid) have kinks at 0 and ±1..3: central
    # differences across a kink are meaningless, so keep samples a step-size away from them.
    x = rng.normal(0.0, scale, size=shape)
    for kink in (0.0, -1.0, 1.0, -2.5, 2.5, -3.0, 3.0):
        near = np.abs(x - kink) < 1e-3
        x[near] += 2e-3
    return x


def check_activation(
    act: Activation, shape: tuple[int, ...] = (4, 7), seed: int = 0, scale: float = 2.0
) -> GradCheck:
    """``backward(z, a, r)`` against the numeric gradient of ``Σ forward(z) · r``."""
    rng = np.random.default_rng(seed)
    z = _away_from_kinks(rng, shape, scale)
    r = rng.normal(size=shape)
    analytic = act.backward(z, act.forward(z), r)
    numeric = numeric_gradient(lambda: float((act.forward(z) * r).sum()), z)
    return GradCheck({"z": relative_error(analytic, numeric)})


def _probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    z = rng.normal(size=shape)
    a = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    y = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[0])]
    return a, y


def check_loss(loss: Loss, shape: tuple[int, ...] = (5, 4), seed: int = 0) -> GradCheck:
    """``backward(a, y)`` against the numeric gradient of ``forward(a, y)`` in ``a``."""
    a, y = _probabilities(np.random.default_rng(seed), shape)
    analytic = loss.backward(a, y)
    numeric = numeric_gradient(lambda: loss.forward(a, y), a)
    return GradCheck({"a": relative_error(analytic, numeric)})


def check_fused(
    loss: Loss, act: Activation, shape: tuple[int, ...] = (5, 4), seed: int = 0
) -> GradCheck:
    """``fused_backward`` against the numeric gradient of ``loss(act(z), y)`` in ``z``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=shape)
    _, y = _probabilities(rng, shape)
    analytic = loss.fused_backward(act.forward(z), y)
    numeric = numeric_gradient(lambda: loss.forward(act.forward(z), y), z)
    return GradCheck({"z": relative_error(analytic, numeric)})


def _frozen_rng(layer: Layer) -> Callable[[], None]:
    # Stochastic layers (dropout) keep their Generator as ``rng``: replay the same draws
    # for every perturbed forward so that f is a deterministic function of the inputs.
    rng = getattr(layer, "rng", None)
    if not isinstance(rng, np.random.Generator):
        return lambda: None
    saved = rng.bit_generator.state

    def restore() -> None:
        rng.bit_generator.state = saved

    return restore


def check_layer(
    layer: Layer,
    input_shape: tuple[int, ...] = (6,),
    batch: int = 3,
    seed: int = 0,
    training: bool = False,
    build: bool = True,
) -> GradCheck:
    """``backward`` (dx and every param gradient) against numeric gradients of ``Σ z · r``.

    The layer is built in float64 for ``(batch, *input_shape)`` unless ``build=False``.
    """
    rng = np.random.default_rng(seed)
    if build:
        layer.build(tuple(input_shape), np.random.default_rng(seed + 1), np.float64)
    x = _away_from_kinks(rng, (batch, *input_shape), 1.0)
    restore = _frozen_rng(layer)
    z, cache = layer.forward(x, training)
    r = rng.normal(size=z.shape)
    dx, grads = layer.backward(r, cache)

    def f() -> float:
        restore()
        return float((layer.forward(x, training)[0] * r).sum())

    errors = {"x": relative_error(dx, numeric_gradient(f, x))}
    for name, p in layer.params.items():
        if name not in grads:
            raise AssertionError(f"backward returned no gradient for param {name!r}")
        errors[name] = relative_error(grads[name], numeric_gradient(f, p))
    return GradCheck(errors)


def check_regularizer(
    reg: Regularizer, shape: tuple[int, ...] = (5, 4), seed: int = 0
) -> GradCheck:
    """``gradient(w)`` against the numeric gradient of ``penalty(w)``."""
    w = _away_from_kinks(np.random.default_rng(seed), shape, 1.0)
    g = reg.gradient(w)
    analytic = np.zeros_like(w) if g is None else g
    numeric = numeric_gradient(lambda: float(reg.penalty(w)), w)
    return GradCheck({"w": relative_error(analytic, numeric)})


def check_model(model: Any, x: np.ndarray, y: np.ndarray, max_per_param: int = 20) -> GradCheck:
    """Full backprop (fused output, regularizers included) against numeric gradients.

    ``model`` must be built in float64. Checks up to ``max_per_param`` entries per array.
    """
    targets = model.one_hot(y)
    x = np.asarray(x, dtype=np.float64)

    def f() -> float:
        a, _ = model.forward(x, training=False)
        loss = model.loss.forward(a, targets)
        penalty = sum(
            reg.penalty(layer.params[name])
            for reg in model.regularizers
            for layer in model.layers
            for name in layer.regularized
        )
        return float(loss + penalty)

    _, caches = model.forward(x, training=False)
    grads = model.backward(caches, targets)
    model.regularize(grads)
    rng = np.random.default_rng(0)
    errors = {}
    for i, name, p in model.parameters():
        idx = rng.choice(p.size, size=min(max_per_param, p.size), replace=False)
        numeric = numeric_gradient(f, p, indices=idx)
        errors[f"{i}.{name}"] = relative_error(grads[i][name].reshape(-1)[idx], numeric)
    return GradCheck(errors)
