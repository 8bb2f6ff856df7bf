"""attrs validators shared by the contrib components; errors name the field and the value."""

from __future__ import annotations

from typing import Any

from deepnet.core.errors import DeepnetError
from deepnet.plugins.optimizers import positive, unit_interval

__all__ = ["non_negative", "one_of", "positive", "unit_interval"]


def non_negative(instance: Any, attribute: Any, value: Any) -> None:
    if not value >= 0:
        raise DeepnetError(f"{attribute.name} must be >= 0, got {value!r}")


def one_of(*choices: str) -> Any:
    """A validator accepting only ``choices``."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise DeepnetError(
                f"{attribute.name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )

    return check
