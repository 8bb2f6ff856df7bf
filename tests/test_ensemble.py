"""deepnet.ensemble.pool: how an ensemble's probabilities are combined."""

import warnings

import numpy as np
import pytest

from deepnet.core.errors import DeepnetError
from deepnet.ensemble import COMBINE, pool


def test_geometric_pooling_is_the_renormalized_geometric_mean():
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    q = np.array([[0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    got = pool([p, q])
    by_hand = np.sqrt(np.maximum(p * q, 0.0))
    by_hand /= by_hand.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, by_hand, atol=1e-12)
    np.testing.assert_allclose(pool([p, q], "mean"), (p + q) / 2)


def test_a_class_one_model_rules_out_is_ruled_out_only_by_geometric_pooling():
    sure = np.array([[1e-6, 0.5, 0.5 - 1e-6]])
    other = np.array([[0.8, 0.2 - 1e-6, 1e-6]])
    geometric, mean = pool([sure, other]), pool([sure, other], "mean")
    assert mean.argmax() == 0 and geometric.argmax() == 1  # the class neither rules out
    assert geometric[0, 0] < 0.01 and geometric[0, 2] < 0.01
    # Models that agree keep their probabilities, whatever the pooling.
    for combine in COMBINE:
        np.testing.assert_allclose(pool([sure, sure, sure], combine), sure)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_underflowed_probabilities_stay_finite_without_warnings(dtype):
    zero = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    other = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pool([zero, other])
    assert got.dtype == dtype and np.isfinite(got).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got[0], [0.5, 0.5, 0.0], atol=1e-6)  # a tie, both ruled out once
    np.testing.assert_allclose(got[1], [0.0, 0.0, 1.0], atol=1e-6)


def test_one_model_passes_unchanged_and_bad_requests_are_clear():
    p = np.array([[0.3, 0.7]])
    assert pool([p]) is p
    with pytest.raises(DeepnetError, match="unknown combine 'vote'; expected one of geometric"):
        pool([p, p], "vote")
    with pytest.raises(DeepnetError, match="at least one model"):
        pool([])
