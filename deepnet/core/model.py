"""Model: a stack of layers, each optionally followed by its activation, and a loss.

Per layer: ``z, cache = layer.forward(a_prev)``; ``a = activation(z)``. Backward runs the
notebook's formulas in row-major form: ``dz = act'(z) * da``, then the layer turns ``dz`` into
``dW = a_prevᵀ @ dz``, ``db = Σ dz`` and ``da_prev = dz @ Wᵀ``. When the loss declares a fused
output activation (sigmoid + binary, softmax + categorical cross-entropy) the output ``dz`` is
``a - y`` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepnet.core.components import Activation, Layer, Loss, Regularizer
from deepnet.core.errors import DeepnetError, ShapeError
from deepnet.core.plugins import get_registry
from deepnet.core.registry import Entry

FLOAT_DTYPES = ("float32", "float64")


def as_dtype(dtype: Any) -> np.dtype:
    """``float32`` or ``float64``; anything else is an error naming the choices."""
    dt = np.dtype(dtype)
    if dt.name not in FLOAT_DTYPES:
        raise DeepnetError(f"dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dt.name}")
    return dt


class Model:
    """A feed-forward network.

    ``layers`` are layer instances, names or ``{"name": ..., **config}`` dicts; ``loss`` and
    ``regularizers`` likewise. Example::

        Model([Dense(50, "tanh"), Dense(25, "sigmoid"), Dense(10, "sigmoid")],
              loss="binary_cross_entropy")
    """

    def __init__(
        self,
        layers: Sequence[Any],
        loss: Any = "categorical_cross_entropy",
        regularizers: Sequence[Any] = (),
        dtype: Any = "float32",
    ) -> None:
        registry = get_registry()
        if not layers:
            raise DeepnetError("a model needs at least one layer")
        self.layers: list[Layer] = [registry.create("layer", spec) for spec in layers]
        self.activations: list[Activation | None] = [
            None if layer.activation is None else registry.create("activation", layer.activation)
            for layer in self.layers
        ]
        self.loss: Loss = registry.create("loss", loss)
        self.regularizers: list[Regularizer] = [
            registry.create("regularizer", spec) for spec in regularizers
        ]
        self._built_from: list[Entry] = []  # what layers look up while building (initializers)
        self.dtype = as_dtype(dtype)
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.seed: int | None = None
        #: Free-form record of how the model was trained and how it scored; saved with it.
        self.meta: dict[str, Any] = {}
        self._fused = self._output_is_fused(registry)

    def _output_is_fused(self, registry) -> bool:
        name, last = self.loss.fused_activation, self.activations[-1]
        if name is None:
            return False
        if last is None:
            raise DeepnetError(
                f"{registry.spec_of(self.loss)} needs probabilities: end the model with a "
                f"{name} output layer, e.g. Dense(10, {name!r})"
            )
        # The loss fuses with the activation its own distribution registered under that name,
        # even when another plugin registers the same name too.
        dist = registry.provenance_of(self.loss).distribution
        return any(
            type(last) is e.factory
            for e in registry.entries("activation")
            if e.name == name and e.provenance.distribution == dist
        )

    # -- building ----------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape: Sequence[int], seed: int | None = None) -> Model:
        """Create every layer's parameters for inputs ``(N, *input_shape)``.

        The same seed gives bit-identical weights. Each layer gets its own random stream.
        """
        seq = np.random.SeedSequence(seed)
        self.seed = int(seq.entropy) if seed is None else seed  # type: ignore[arg-type]
        shape = tuple(int(d) for d in input_shape)
        self.input_shape = shape
        with get_registry().recording() as used:
            for layer, child in zip(self.layers, seq.spawn(len(self.layers)), strict=True):
                shape = tuple(layer.build(shape, np.random.default_rng(child), self.dtype))
        self._built_from = used
        self.output_shape = shape
        return self

    def requirements(self) -> list[Entry]:
        """Every registered component the model was made from (initializers included)."""
        registry = get_registry()
        parts = [*self.layers, *filter(None, self.activations), self.loss, *self.regularizers]
        used = [*self._built_from, *(registry.entry_of(c) for c in parts)]
        unique = {(e.kind, e.name, e.provenance): e for e in used}
        return sorted(unique.values(), key=lambda e: (e.kind, e.name))

    def parameters(self) -> list[tuple[int, str, np.ndarray]]:
        """Every trainable array as ``(layer index, name, array)``, in a fixed order."""
        return [(i, n, p) for i, layer in enumerate(self.layers) for n, p in layer.params.items()]

    def count_params(self) -> list[int]:
        """Number of trainable values per layer."""
        return [sum(p.size for p in layer.params.values()) for layer in self.layers]

    def get_weights(self) -> list[dict[str, np.ndarray]]:
        """Copies of every layer's params and state (for snapshots and early stopping)."""
        return [
            {**{f"params.{k}": v.copy() for k, v in layer.params.items()},
             **{f"state.{k}": v.copy() for k, v in layer.state.items()}}
            for layer in self.layers
        ]  # fmt: skip

    def set_weights(self, weights: list[dict[str, np.ndarray]]) -> None:
        """Copy ``weights`` (as from :meth:`get_weights`) into the layers, in place."""
        if len(weights) != len(self.layers):
            raise ShapeError(f"{len(weights)} weight sets for {len(self.layers)} layers")
        for i, (layer, saved) in enumerate(zip(self.layers, weights, strict=True)):
            for key, value in saved.items():
                group, _, name = key.partition(".")
                target = getattr(layer, group)
                if name not in target or target[name].shape != value.shape:
                    raise ShapeError(
                        f"layer {i}: {key} has shape {value.shape}, expected "
                        f"{target[name].shape if name in target else 'no such array'}"
                    )
                target[name][...] = value

    # -- computing ---------------------------------------------------------------------
    def check_input(self, x: Any) -> np.ndarray:
        """``x`` as a C-contiguous array, shape-checked; floats in the model's dtype and finite.

        Integer inputs (uint8 pixels) stay integers: :meth:`forward` casts them one batch at a
        time, so a data set of pixels never needs a float copy (4x its size for float32).
        """
        if not self.built:
            raise DeepnetError("the model is not built: call build(input_shape) or fit() first")
        x = np.asarray(x)
        if x.ndim == 1 and len(self.input_shape) == 1:
            x = x[None, :]
        if x.shape[1:] != self.input_shape:
            raise ShapeError(
                f"expected input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise DeepnetError(f"input must be numeric, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.integer):
            return np.ascontiguousarray(x)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise DeepnetError(f"input contains {bad} NaN or infinite values; clean it first")
        return x

    def adapt(self, x: Any) -> None:
        """Fit the data-dependent state of the leading layers that have ``adapt`` (normalize's
        statistics) to the training inputs ``x``; :func:`~deepnet.core.training.fit` calls it
        when it builds the model. Augmentation layers before them are looked through: they
        see the data as it is."""
        x = self.check_input(x)
        layers = [ly for ly in self.layers if not getattr(ly, "inference_identity", False)]
        for i, layer in enumerate(layers):
            if not hasattr(layer, "adapt"):
                break
            layer.adapt(x)
            if i + 1 < len(layers) and hasattr(layers[i + 1], "adapt"):
                x = layer.forward(x)[0]

    def forward(self, x: np.ndarray, training: bool = False) -> tuple[np.ndarray, list]:
        """Output activations ``(N, *output_shape)`` and the caches backward needs."""
        return self._forward(x, self.layers, self.activations, training)

    def _forward(self, x: np.ndarray, layers: list, activations: list, training: bool):
        caches = []
        a = x if x.dtype == self.dtype or layers[0].accepts_integers else x.astype(self.dtype)
        for layer, act in zip(layers, activations, strict=True):
            z, cache = layer.forward(a, training)
            a = z if act is None else act.forward(z)
            caches.append((cache, z, a))
        return a, caches

    def backward(self, caches: list, y: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Gradients of the loss, per layer keyed like its params, from forward's caches."""
        grads: list[dict[str, np.ndarray]] = [{} for _ in self.layers]
        _, _, a = caches[-1]
        da = None if self._fused else self.loss.backward(a, y)
        # Nothing before the first layer with parameters needs a gradient (reshape, shifts).
        first = next((i for i, layer in enumerate(self.layers) if layer.params), 0)
        for i in range(len(self.layers) - 1, first - 1, -1):
            cache, z, a = caches[i]
            act = self.activations[i]
            if i == len(self.layers) - 1 and self._fused:
                dz = self.loss.fused_backward(a, y)
            else:
                dz = da if act is None else act.backward(z, a, da)
            da, grads[i] = self.layers[i].backward(dz, cache, need_dx=i > first)
        return grads

    def regularize(self, grads: list[dict[str, np.ndarray]]) -> float:
        """Add the regularizers' gradients into ``grads``; return their total penalty."""
        total = 0.0
        for reg in self.regularizers:
            for i, layer in enumerate(self.layers):
                for name in layer.regularized:
                    w = layer.params[name]
                    total += reg.penalty(w)
                    g = reg.gradient(w)
                    if g is not None:
                        grads[i][name] += g
        return total

    def constrain(self) -> None:
        """Apply every regularizer's constraint (e.g. max-norm) to the regularized weights."""
        for reg in self.regularizers:
            for layer in self.layers:
                for name in layer.regularized:
                    reg.constrain(layer.params[name])

    def one_hot(self, y: Any) -> np.ndarray:
        """Integer labels ``(N,)`` as one-hot ``(N, K)``; ``(N, K)`` targets pass through."""
        y = np.asarray(y)
        k = self.output_shape[-1]
        if y.ndim == 2 and y.shape[1] == k:
            return y.astype(self.dtype, copy=False)
        if y.ndim != 1:
            raise ShapeError(f"labels must have shape (N,) or (N, {k}), got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.array_equal(y, np.round(y)):
                raise DeepnetError("labels must be integers (class indices)")
            y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= k):
            raise DeepnetError(f"labels must be in 0..{k - 1}, got {y.min()}..{y.max()}")
        out = np.zeros((y.shape[0], k), dtype=self.dtype)
        out[np.arange(y.shape[0]), y] = 1
        return out

    def predict_proba(self, x: Any, batch_size: int = 2048) -> np.ndarray:
        """Output activations ``(N, K)`` in evaluation mode, computed in batches."""
        x = self.check_input(x)
        return self._predict(x, *self._inference_stack(), batch_size)

    def predictor(self, batch_size: int = 2048) -> Callable[[Any], np.ndarray]:
        """:meth:`predict_proba` with the inference layers prepared once, for many calls on
        small batches (reading postal codes scores each code's candidate digits apart).

        Preparing them folds a leading normalize layer into the next dense layer, a copy of
        its weights: the function keeps computing with the weights as they were when it was
        made, so make it anew after training.
        """
        if not self.built:
            raise DeepnetError("the model is not built: call build(input_shape) or fit() first")
        layers, acts = self._inference_stack()
        return lambda x: self._predict(self.check_input(x), layers, acts, batch_size)

    def _predict(self, x: np.ndarray, layers: list, acts: list, batch_size: int) -> np.ndarray:
        outs = [
            self._forward(x[i : i + batch_size], layers, acts, False)[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, *self.output_shape), self.dtype)

    def _inference_stack(self) -> tuple[list, list]:
        """The layers and activations for inference: layers that are the identity there
        (augmentation) are left out, and a leading layer that can ``fold`` itself into the next
        one (normalize into dense) is folded, once per call."""
        kept = [
            (layer, act)
            for layer, act in zip(self.layers, self.activations, strict=True)
            if act is not None or not getattr(layer, "inference_identity", False)
        ]
        if not kept:
            return self.layers, self.activations
        layers, acts = [k[0] for k in kept], [k[1] for k in kept]
        first = layers[0]
        foldable = len(layers) > 1 and hasattr(first, "fold") and acts[0] is None
        folded = first.fold(layers[1]) if foldable else None
        if folded is None:
            return layers, acts
        return [folded, *layers[2:]], acts[1:]

    def predict(self, x: Any, batch_size: int = 2048) -> np.ndarray:
        """Predicted class indices ``(N,)``: the argmax over classes (axis 1)."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def evaluate(self, x: Any, y: Any, batch_size: int = 2048) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on ``(x, y)`` in evaluation mode."""
        a = self.predict_proba(x, batch_size)
        targets = self.one_hot(y)
        n = max(len(a), 1)
        # The loss of the mean reduction is per sample; for "sum" report it per sample too.
        loss = self.loss.forward(a, targets)
        if self.loss.reduction == "sum":
            loss /= n
        accuracy = float((a.argmax(axis=1) == targets.argmax(axis=1)).mean()) if len(a) else 0.0
        return {"loss": loss, "accuracy": accuracy}

    def fit(self, x: Any, y: Any, **kwargs: Any):
        """Train; see :func:`deepnet.core.training.fit` for the options. Returns the History."""
        from deepnet.core.training import fit

        return fit(self, x, y, **kwargs)

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to one ``.npz`` file (no pickle), atomically."""
        from deepnet.core.serialization import save_model

        return save_model(self, path)

    @staticmethod
    def load(path: str | Path) -> Model:
        """Read a model written by :meth:`save`."""
        from deepnet.core.serialization import load_model

        return load_model(path)

    def describe(self) -> list[str]:
        """One line per layer: name, output shape, activation, parameter count."""
        registry = get_registry()
        lines = []
        for layer, act, n in zip(self.layers, self.activations, self.count_params(), strict=True):
            act_name = registry.spec_of(act) if act is not None else "-"
            lines.append(f"{registry.spec_of(layer):<12} activation={act_name:<10} params={n}")
        return lines

    def __repr__(self) -> str:
        return f"Model(layers={self.layers!r}, loss={self.loss!r}, dtype={self.dtype.name})"
