"""The contracts, one per component kind. Every component, built-in or contributed, follows them.

Arrays are row-major with the batch first: a dense layer computes ``Z = A_prev @ W + b`` with
``A_prev`` of shape ``(N, n_in)``, ``W`` of shape ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``.
That is the notebook's column form ``Z = W·A_prev + b`` transposed.

Components are attrs classes whose fields are their hyperparameters, so ``name + fields`` is
their whole config (see :func:`deepnet.core.registry.Registry.config_of`). Recipes, plain data
that name components, are registered as instances instead (:class:`Recipe`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np

from deepnet.core.errors import DeepnetError

Array = np.ndarray
Params = dict[str, np.ndarray]


class Activation:
    """Elementwise (or per-row) nonlinearity ``a = f(z)``.

    Elementwise activations implement ``forward`` and ``derivative``; others (softmax)
    override ``backward``. Shapes: ``z``, ``a``, ``da`` and the result all ``(N, ...)``.
    """

    kind: ClassVar[str] = "activation"

    def forward(self, z: Array) -> Array:
        """``a = f(z)``, same shape and dtype as ``z``; must not overflow for any finite ``z``."""
        raise NotImplementedError

    def derivative(self, z: Array, a: Array) -> Array:
        """``f'(z)`` elementwise; ``a = f(z)`` is given because it is often cheaper."""
        raise NotImplementedError

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        """``dz = f'(z) * da``."""
        return self.derivative(z, a) * da


class Loss:
    """A loss over a batch. ``a`` is the output activation, ``y`` the one-hot (or 0/1) targets.

    ``reduction="mean"`` divides by the batch size N (not by N·classes); ``"sum"`` does not,
    as the course notebook did. ``fused_activation`` names the output activation for which
    the gradient with respect to the pre-activation simplifies to ``(a - y)`` (divided by N
    for the mean); the model then skips the activation's backward, which is faster and stabler.
    """

    kind: ClassVar[str] = "loss"
    fused_activation: ClassVar[str | None] = None
    reduction: str = "mean"

    def forward(self, a: Array, y: Array) -> float:
        """The scalar loss for outputs ``a`` (N, K) and targets ``y`` (N, K)."""
        raise NotImplementedError

    def backward(self, a: Array, y: Array) -> Array:
        """``dL/da``, shape (N, K)."""
        raise NotImplementedError

    def fused_backward(self, a: Array, y: Array) -> Array:
        """``dL/dz`` when the output activation is ``fused_activation``: ``(a - y)`` / N."""
        return (a - y) * self.scale(a)

    def scale(self, a: Array) -> np.floating:
        """The reduction's factor, 1/N or 1, in ``a``'s dtype (no float64 creep)."""
        return a.dtype.type(1.0 / a.shape[0] if self.reduction == "mean" else 1.0)


@attrs.define(eq=False)
class Layer:
    """A layer computes ``z`` from ``x``; the model applies its ``activation`` (if any) to ``z``.

    cs231n style: ``forward`` returns ``(z, cache)`` and ``backward`` consumes the cache and
    returns ``(dx, grads)`` with ``grads`` keyed like ``params``. ``build`` receives the input
    shape without the batch dimension, so nothing in the core assumes 2-D data.
    """

    kind: ClassVar[str] = "layer"
    # Names of params that regularizers and constraints apply to (weights, not biases).
    regularized: ClassVar[tuple[str, ...]] = ()
    activation: ClassVar[Any] = None
    # True if forward takes integer inputs (uint8 pixels) and casts them itself; otherwise
    # the model casts each batch to its dtype first.
    accepts_integers: ClassVar[bool] = False
    # True if the layer is the identity in evaluation (augmentation): inference leaves it out
    # and Model.adapt looks through it.
    inference_identity: ClassVar[bool] = False
    #: Trainable arrays by name; optimizers update them in place.
    params: dict[str, np.ndarray] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    #: Non-trainable arrays saved with the model (e.g. running statistics).
    state: dict[str, np.ndarray] = attrs.field(init=False, factory=dict, repr=False, eq=False)

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> tuple:
        """Create ``self.params`` (and ``self.state``) for inputs ``(N, *input_shape)``.

        Returns the output shape without the batch dimension.
        """
        raise NotImplementedError

    def forward(self, x: Array, training: bool = False) -> tuple[Array, Any]:
        """``(z, cache)`` for ``x`` of shape ``(N, *input_shape)``."""
        raise NotImplementedError

    def backward(self, dz: Array, cache: Any, need_dx: bool = True) -> tuple[Array | None, Params]:
        """``(dx, grads)`` from ``dz = dL/dz`` and the cache of the matching forward.

        ``need_dx=False`` (the first layer) lets a layer skip computing ``dx`` and return None.
        """
        raise NotImplementedError


class Optimizer:
    """Updates parameters in place from their gradients.

    ``init(params)`` returns the per-parameter state; ``step`` updates ``params[i]`` from
    ``grads[i]`` and ``state[i]`` at learning rate ``lr`` (given by the schedule each step).
    """

    kind: ClassVar[str] = "optimizer"
    lr: float = 0.01

    def init(self, params: list[Array]) -> list[dict[str, Array]]:
        """Per-parameter state (e.g. velocities), same shapes and dtypes as ``params``.

        An entry named ``"scratch"`` is a per-step temporary (so that a step allocates
        nothing): checkpoints leave it out."""
        return [{} for _ in params]

    def step(
        self, params: list[Array], grads: list[Array], state: list[dict[str, Array]], lr: float
    ) -> None:
        """Update every ``params[i]`` in place."""
        raise NotImplementedError


class Regularizer:
    """A penalty on weights, or a constraint applied to them after each step.

    ``penalty(w)`` adds to the loss and ``gradient(w)`` to ``dL/dw``; ``constrain(w)``
    projects ``w`` in place after the optimizer step (max-norm). Any of them may be a no-op.
    """

    kind: ClassVar[str] = "regularizer"

    def penalty(self, w: Array) -> float:
        """Added to the loss; 0.0 for a pure constraint."""
        return 0.0

    def gradient(self, w: Array) -> Array | None:
        """``d penalty / dw`` (same shape as ``w``), or None if the penalty is 0."""
        return None

    def constrain(self, w: Array) -> None:
        """Project ``w`` in place after each optimizer step; nothing by default."""


class Initializer:
    """``init(shape, rng, fan_in, fan_out) -> float64 array``; layers cast to their dtype."""

    kind: ClassVar[str] = "initializer"

    def __call__(
        self, shape: tuple[int, ...], rng: np.random.Generator, fan_in: int, fan_out: int
    ) -> Array:
        raise NotImplementedError


class Schedule:
    """Learning rate as a function of training progress.

    ``epoch`` is fractional (``3.5`` is half-way through the fourth epoch); ``total`` is the
    number of epochs planned.
    """

    kind: ClassVar[str] = "schedule"

    def __call__(self, base_lr: float, epoch: float, total: int) -> float:
        raise NotImplementedError


class Callback:
    """Observes training; ``on_epoch_end`` returning True stops it.

    ``logs`` holds the epoch's metrics: ``loss``, ``train_accuracy``, ``dev_loss``,
    ``dev_accuracy`` (when there is a dev set), ``lr`` and ``seconds``. A callback that keeps
    something across epochs (early stopping's patience count) overrides ``state`` and
    ``load_state``: checkpoints save its config and state, and resuming restores them.
    """

    kind: ClassVar[str] = "callback"

    def on_train_begin(self, model: Any) -> None:
        """Called once before the first epoch."""

    def on_batch_end(self, model: Any, epoch: int, batch: int, n_batches: int, loss: float) -> None:
        """Called after each optimizer step."""

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> bool:
        """Called after each epoch; return True to stop training."""
        return False

    def on_train_end(self, model: Any) -> None:
        """Called once after the last epoch (also after an early stop)."""

    def state(self) -> dict[str, Any]:
        """What resuming needs, by name: numbers, strings, None or numpy arrays; {} if nothing."""
        return {}

    def load_state(self, model: Any, state: dict[str, Any]) -> None:
        """Restore ``state()`` after on_train_begin; ValueError if it does not fit ``model``."""


class Recipe:
    """How to train a model from scratch, as data: the fields of :class:`deepnet.recipes.Recipe`
    (layers, loss, optimizer, lr, schedule, epochs, batch size, normalization, seed, ...).

    Unlike the other kinds, a recipe is registered as an instance, ``register(recipe)``, named by
    its ``name`` field. Called with fields, ``recipe(epochs=3)`` is a copy with those replaced,
    so the registry makes a recipe from a name or a ``{"name": ..., **fields}`` config as it
    makes any other component.
    """

    kind: ClassVar[str] = "recipe"

    def __call__(self, **fields: Any) -> Any:
        known = [f.name for f in attrs.fields(type(self))]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise DeepnetError(
                f"recipe {getattr(self, 'name', '?')!r} has no field {unknown[0]!r}; "
                f"its fields: {', '.join(known)}"
            )
        return attrs.evolve(self, **fields)


KINDS: dict[str, type] = {
    c.kind: c
    for c in (
        Layer,
        Activation,
        Loss,
        Optimizer,
        Regularizer,
        Initializer,
        Schedule,
        Callback,
        Recipe,
    )
}
