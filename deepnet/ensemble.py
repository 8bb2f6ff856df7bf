"""Pooling several models' class probabilities into one: an ensemble's prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepnet.core.errors import DeepnetError

#: How :func:`pool` combines the models: ``geometric`` (the default) multiplies their
#: probabilities, class by class, and renormalizes; ``mean`` averages them.
COMBINE = ("geometric", "mean")


def check_combine(combine: str) -> str:
    """``combine`` if it is one of :data:`COMBINE`, else a clear error."""
    if combine not in COMBINE:
        raise DeepnetError(f"unknown combine {combine!r}; expected one of {', '.join(COMBINE)}")
    return combine


def pool(probas: Sequence[np.ndarray], combine: str = "geometric") -> np.ndarray:
    """The ensemble's probabilities ``(N, K)`` from each model's ``(N, K)``.

    ``geometric`` is the normalized geometric mean, ``exp(mean_i log p_i)`` over the models,
    row-normalized (a product of experts): a class keeps its probability only where no model
    rules it out, while under the ``mean`` one confident model can carry it. Reading postal
    codes with two CNNs, it ranked wrong codes lower than the mean did (README, *Ensembles*).
    One model's probabilities pass unchanged.
    """
    check_combine(combine)
    if not probas:
        raise DeepnetError("pooling needs at least one model's probabilities")
    if len(probas) == 1:
        return probas[0]
    if combine == "mean":
        return np.mean(probas, axis=0)
    # A softmax may underflow to exactly 0: the smallest normal number keeps the log finite.
    tiny = np.finfo(np.result_type(*probas, np.float32)).tiny
    log_p = np.mean([np.log(np.maximum(p, tiny)) for p in probas], axis=0)
    q = np.exp(log_p - log_p.max(axis=-1, keepdims=True))  # the best class gets exp(0) = 1
    return q / q.sum(axis=-1, keepdims=True)
