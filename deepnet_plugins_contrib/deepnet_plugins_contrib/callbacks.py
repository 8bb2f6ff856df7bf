"""Contributed callbacks: early stopping on a monitored metric, restoring the best weights."""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Callback
from deepnet.core.errors import DeepnetError
from deepnet.core.hookspecs import hookimpl
from deepnet.core.validators import non_negative, one_of


def _counter(default: Any = None) -> Any:
    # Training progress, not a hyperparameter: init=False keeps it out of the config.
    return attrs.field(init=False, default=default, eq=False)


@attrs.define
class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by more than min_delta for patience epochs.

    ``mode`` "auto" minimizes metrics named ``*loss`` and maximizes the others (accuracies).
    With restore_best, training ends with the weights of the best epoch (via
    ``model.get_weights()`` / ``set_weights()``). ``best``, ``best_epoch`` and
    ``stopped_epoch`` (0-based, None if it never stopped) tell what happened. ``state()``
    holds them, ``wait`` and the best weights (``weights.<layer>.<name>``), so that a resumed
    run stops at the same epoch with the same weights.
    """

    monitor: str = "dev_accuracy"
    patience: int = attrs.field(default=5, converter=int, validator=non_negative)
    min_delta: float = attrs.field(default=0.0, converter=float, validator=non_negative)
    restore_best: bool = True
    mode: str = attrs.field(default="auto", validator=one_of("auto", "min", "max"))
    best: float | None = _counter()
    best_epoch: int | None = _counter()
    stopped_epoch: int | None = _counter()
    wait: int = _counter(0)
    _best_weights: Any = attrs.field(init=False, default=None, eq=False, repr=False)

    @property
    def minimize(self) -> bool:
        if self.mode == "auto":
            return self.monitor.endswith("loss")
        return self.mode == "min"

    def on_train_begin(self, model: Any) -> None:
        self.best = self.best_epoch = self.stopped_epoch = self._best_weights = None
        self.wait = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.minimize:
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> bool:
        if self.monitor not in logs:
            hint = " (dev metrics need dev= or dev_fraction=)" if "dev" in self.monitor else ""
            raise DeepnetError(
                f"early_stopping monitors {self.monitor!r}, but the epoch logs have only "
                f"{', '.join(sorted(logs))}{hint}"
            )
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_weights = model.get_weights()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model: Any) -> None:
        if self.restore_best and self._best_weights is not None:
            model.set_weights(self._best_weights)

    def state(self) -> dict[str, Any]:
        weights = {
            f"weights.{i}.{name}": value
            for i, layer in enumerate(self._best_weights or [])
            for name, value in layer.items()
        }
        return {name: getattr(self, name) for name in COUNTERS} | weights

    def load_state(self, model: Any, state: dict[str, Any]) -> None:
        best, best_epoch, wait, stopped_epoch = (state.get(name) for name in COUNTERS)
        if not (
            (best is None or (_number(best) and math.isfinite(best)))
            and (best is None) == (best_epoch is None)
            and all(e is None or _natural(e) for e in (best_epoch, stopped_epoch))
            and _natural(wait)
        ):
            raise ValueError(
                f"best {best!r}, best_epoch {best_epoch!r}, wait {wait!r}, stopped_epoch "
                f"{stopped_epoch!r} are not an early stopping state"
            )
        # The best weights are there exactly when on_train_end is to restore them.
        keep = self.restore_best and best is not None
        self._best_weights = _best_weights(model, state, keep)
        self.best = None if best is None else float(best)
        self.best_epoch, self.wait, self.stopped_epoch = best_epoch, wait, stopped_epoch


COUNTERS = ("best", "best_epoch", "wait", "stopped_epoch")


def _best_weights(model: Any, state: dict[str, Any], keep: bool) -> list[dict] | None:
    """The best weights in ``state`` (``weights.<layer>.<name>``), checked against the model's."""
    expected = model.get_weights()
    arrays = {f"weights.{i}.{n}": a for i, layer in enumerate(expected) for n, a in layer.items()}
    given = {key: value for key, value in state.items() if key not in COUNTERS}
    if given.keys() != (arrays.keys() if keep else set()):
        raise ValueError("its best weights are missing or are not this model's arrays")
    for key, value in given.items():
        want = arrays[key]
        # The dtype first: isfinite raises TypeError on strings.
        if not (
            isinstance(value, np.ndarray)
            and (value.shape, value.dtype) == (want.shape, want.dtype)
            and np.isfinite(value).all()
        ):
            raise ValueError(f"its {key} is not a finite {want.dtype} array of shape {want.shape}")
    if not keep:
        return None
    return [
        {n: given[f"weights.{i}.{n}"].copy() for n in layer} for i, layer in enumerate(expected)
    ]


def _number(value: Any) -> bool:
    """An int or float, and not a bool (JSON's true is an int to Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@hookimpl
def deepnet_register_callbacks(register):
    register(EarlyStopping, name="early_stopping")
