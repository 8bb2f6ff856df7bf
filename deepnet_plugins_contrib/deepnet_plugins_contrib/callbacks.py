"""Contributed callbacks: early stopping on a monitored metric, restoring the best weights."""

from __future__ import annotations

from typing import Any

import attrs

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
    ``stopped_epoch`` (0-based, None if it never stopped) tell what happened.
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


@hookimpl
def deepnet_register_callbacks(register):
    register(EarlyStopping, name="early_stopping")
