"""Tests of the contributed schedules: conformance, documented values, warm-up, use in fit."""

from __future__ import annotations

import pytest

from deepnet import Dense, Model
from deepnet.testing import assert_conforms
from deepnet_plugins_contrib.schedules import ExponentialDecay, StepDecay


@pytest.mark.parametrize("name", ["step", "exponential"])
def test_conforms(registry, name):
    assert_conforms("schedule", name, registry)


@pytest.mark.parametrize("name", ["step", "exponential"])
def test_conforms_with_warmup(registry, name):
    assert_conforms("schedule", name, registry, config={"warmup_epochs": 1.5})


def test_step_decay_values():
    sched = StepDecay(step_size=2, gamma=0.5)
    lrs = [sched(0.1, e, 10) for e in (0.0, 1.99, 2.0, 3.5, 4.0)]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert all(type(lr) is float for lr in lrs)


def test_exponential_decay_is_smooth_per_epoch():
    sched = ExponentialDecay(gamma=0.9)
    assert sched(0.1, 0.0, 5) == pytest.approx(0.1)
    assert sched(0.1, 1.5, 5) == pytest.approx(0.1 * 0.9**1.5)


def test_warmup_ramps_then_decay_counts_from_its_end():
    sched = StepDecay(step_size=2, gamma=0.5, warmup_epochs=1.0)
    assert sched(0.1, 0.0, 10) == pytest.approx(1e-4)  # warmup_factor's floor of 1e-3
    assert sched(0.1, 0.5, 10) == pytest.approx(0.05)
    assert sched(0.1, 1.0, 10) == pytest.approx(0.1)
    assert sched(0.1, 2.9, 10) == pytest.approx(0.1)
    assert sched(0.1, 3.0, 10) == pytest.approx(0.05)
    assert ExponentialDecay(gamma=0.5, warmup_epochs=2)(0.2, 3.0, 10) == pytest.approx(0.1)


def test_used_by_fit(registry, blobs):
    x, y, _, _ = blobs
    model = Model([Dense(2, "softmax")])
    spec = {"name": "step", "step_size": 1, "gamma": 0.5}
    history = model.fit(x, y, epochs=3, lr=0.4, schedule=spec, seed=0, batch_size=300)
    # One batch per epoch: the logged rate is the one of that epoch's only step.
    assert history["lr"] == pytest.approx([0.4, 0.2, 0.1])
    assert model.meta["training"]["schedule"] == {**spec, "warmup_epochs": 0.0, "step_size": 1.0}
