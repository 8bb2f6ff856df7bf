"""Contributed learning-rate schedules: step and exponential decay, each after an optional linear
warm-up (the core has constant and cosine). Decay counts epochs from the end of the warm-up."""

from __future__ import annotations

import math
from typing import Any

import attrs

from deepnet.core.components import Schedule
from deepnet.core.hookspecs import hookimpl
from deepnet.core.validators import non_negative, positive
from deepnet.plugins.schedules import warmup_factor


def _warmup_field() -> Any:
    return attrs.field(default=0.0, converter=float, validator=non_negative)


class _WarmupDecay(Schedule):
    # Subclasses are attrs classes with a warmup_epochs field.

    def __call__(self, base_lr: float, epoch: float, total: int) -> float:
        if epoch < self.warmup_epochs:
            return float(base_lr) * warmup_factor(epoch, self.warmup_epochs)
        return float(base_lr) * self.decay(epoch - self.warmup_epochs)

    def decay(self, epochs: float) -> float:
        """The factor after ``epochs`` (fractional) epochs of decay."""
        raise NotImplementedError


@attrs.define
class StepDecay(_WarmupDecay):
    """Multiplies the rate by gamma every step_size epochs: base·gamma^floor(epoch/step_size)."""

    step_size: float = attrs.field(default=10.0, converter=float, validator=positive)
    gamma: float = attrs.field(default=0.1, converter=float, validator=positive)
    warmup_epochs: float = _warmup_field()

    def decay(self, epochs: float) -> float:
        return self.gamma ** math.floor(epochs / self.step_size)


@attrs.define
class ExponentialDecay(_WarmupDecay):
    """Smooth exponential decay by gamma per epoch: base·gamma^epoch (fractional epochs)."""

    gamma: float = attrs.field(default=0.9, converter=float, validator=positive)
    warmup_epochs: float = _warmup_field()

    def decay(self, epochs: float) -> float:
        return self.gamma ** float(epochs)


@hookimpl
def deepnet_register_schedules(register):
    register(StepDecay, name="step")
    register(ExponentialDecay, name="exponential")
