"""attrs validators for component hyperparameters; each error names the field and the value."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepnet.core.errors import DeepnetError


def positive(instance: Any, attribute: Any, value: Any) -> None:
    if not value > 0:
        raise DeepnetError(f"{attribute.name} must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: Any, value: Any) -> None:
    if not value >= 0:
        raise DeepnetError(f"{attribute.name} must be >= 0, got {value!r}")


def unit_interval(instance: Any, attribute: Any, value: Any) -> None:
    if not 0 <= value < 1:
        raise DeepnetError(f"{attribute.name} must be in [0, 1), got {value!r}")


def positive_int(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise DeepnetError(f"{attribute.name} must be a positive integer, got {value!r}")


def one_of(*choices: str) -> Any:
    """A validator accepting only ``choices``."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise DeepnetError(
                f"{attribute.name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )

    return check
