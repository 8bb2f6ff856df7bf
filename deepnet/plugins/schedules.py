"""Built-in learning-rate schedules: constant and cosine decay with optional linear warm-up."""

from __future__ import annotations

import math

import attrs

from deepnet.core.components import Schedule
from deepnet.core.hookspecs import hookimpl


@attrs.define
class Constant(Schedule):
    """The base learning rate throughout."""

    def __call__(self, base_lr: float, epoch: float, total: int) -> float:
        return base_lr


def warmup_factor(epoch: float, warmup_epochs: float) -> float:
    """Linear ramp from ~0 to 1 over ``warmup_epochs``; 1 afterwards."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return 1.0
    return max(epoch / warmup_epochs, 1e-3)


@attrs.define
class Cosine(Schedule):
    """Cosine decay from the base rate to min_lr over training, after a linear warm-up."""

    min_lr: float = 0.0
    warmup_epochs: float = 0.0

    def __call__(self, base_lr: float, epoch: float, total: int) -> float:
        if epoch < self.warmup_epochs:
            return base_lr * warmup_factor(epoch, self.warmup_epochs)
        span = max(total - self.warmup_epochs, 1e-12)
        progress = min((epoch - self.warmup_epochs) / span, 1.0)
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@hookimpl
def deepnet_register_schedules(register):
    register(Constant, name="constant")
    register(Cosine, name="cosine")
