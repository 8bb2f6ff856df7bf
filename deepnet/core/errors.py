"""Exceptions users see. Each message names what was wrong and how to fix it, on one line."""

from __future__ import annotations

from typing import Any


class DeepnetError(Exception):
    """Base class of every deepnet error meant for users."""


class UnknownComponentError(DeepnetError, KeyError):
    """A component name that no plugin registered."""

    def __init__(self, kind: str, name: str, close: list[str], available: list[str]):
        self.kind, self.name, self.close, self.available = kind, name, close, available
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Available {kind}s: {', '.join(available) or 'none'}."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class AmbiguousComponentError(DeepnetError, KeyError):
    """A name registered by more than one plugin; the user must pick a provider."""

    def __init__(self, kind: str, name: str, qualified: list[str]):
        self.kind, self.name, self.qualified = kind, name, qualified
        super().__init__(
            f"{kind} {name!r} is registered by {len(qualified)} plugins; "
            f"pick one by its qualified name: {', '.join(qualified)}."
        )

    def __str__(self) -> str:
        return self.args[0]


class PluginError(DeepnetError):
    """A plugin failed to load or register (raised only in strict mode)."""


class InvalidArgumentError(DeepnetError, ValueError):
    """An argument outside its allowed values; the message lists them."""


class DataFormatError(DeepnetError, ValueError):
    """A data file that is not what it claims to be; the message names the file."""


class ShapeError(DeepnetError, ValueError):
    """An array whose shape does not fit the model."""


class ModelFormatError(DeepnetError, ValueError):
    """A model file that is not a deepnet model, is damaged, or needs a missing plugin."""


class DivergenceError(DeepnetError, FloatingPointError):
    """Training produced a non-finite loss; the model keeps its last finite weights.

    ``history`` holds the metrics of the epochs completed before it (a ``History``).
    """

    def __init__(self, message: str, history: Any = None):
        super().__init__(message)
        self.history = history
