"""Tests of early stopping: conformance, when it stops, restoring the best weights, in fit."""

from __future__ import annotations

import numpy as np
import pytest

from deepnet import Dense, Model
from deepnet.core.errors import DeepnetError
from deepnet.testing import assert_conforms
from deepnet_plugins_contrib.callbacks import EarlyStopping


def test_conforms(registry):
    assert_conforms("callback", "early_stopping", registry)


def tiny_model():
    return Model([Dense(2, "softmax")], dtype="float64").build((3,), seed=0)


def replay(cb, model, values, key="dev_accuracy"):
    """Feed ``values`` as the monitored metric, moving the weights after each epoch."""
    cb.on_train_begin(model)
    snapshots = []
    for epoch, value in enumerate(values):
        snapshots.append(model.layers[0].params["W"].copy())
        if cb.on_epoch_end(model, epoch, {key: value, "loss": 1.0}):
            break
        model.layers[0].params["W"] += 1.0
    cb.on_train_end(model)
    return epoch, snapshots


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best():
    model, cb = tiny_model(), EarlyStopping(patience=2)
    stopped, snapshots = replay(cb, model, [0.5, 0.8, 0.7, 0.8, 0.9, 0.95])
    assert (stopped, cb.stopped_epoch, cb.best_epoch, cb.best) == (3, 3, 1, 0.8)
    np.testing.assert_array_equal(model.layers[0].params["W"], snapshots[1])


def test_min_delta_mode_and_no_restore():
    model, cb = tiny_model(), EarlyStopping(monitor="dev_loss", patience=1, min_delta=0.1)
    assert cb.minimize
    stopped, snapshots = replay(cb, model, [1.0, 0.95, 0.5], key="dev_loss")
    assert (stopped, cb.best_epoch) == (1, 0)  # 0.95 is not 0.1 better than 1.0
    model, cb = tiny_model(), EarlyStopping(patience=1, restore_best=False)
    stopped, snapshots = replay(cb, model, [0.9, 0.1])
    np.testing.assert_array_equal(model.layers[0].params["W"], snapshots[-1])
    assert not EarlyStopping(monitor="train_accuracy").minimize
    assert EarlyStopping(monitor="loss", mode="max").minimize is False


def test_runs_to_the_end_without_stopping_but_still_ends_on_the_best_weights():
    model, cb = tiny_model(), EarlyStopping(patience=5)
    stopped, snapshots = replay(cb, model, [0.5, 0.9, 0.8])
    assert stopped == 2 and cb.stopped_epoch is None
    np.testing.assert_array_equal(model.layers[0].params["W"], snapshots[1])


def test_a_missing_metric_is_an_error_naming_the_fix():
    with pytest.raises(DeepnetError, match="dev_fraction"):
        EarlyStopping().on_epoch_end(tiny_model(), 0, {"loss": 1.0, "train_accuracy": 0.5})


def test_config_holds_hyperparameters_only(registry):
    cb = EarlyStopping(patience=3)
    replay(cb, tiny_model(), [0.5, 0.6])
    assert registry.config_of(cb) == {
        "name": "early_stopping", "monitor": "dev_accuracy", "patience": 3, "min_delta": 0.0,
        "restore_best": True, "mode": "auto",
    }  # fmt: skip


def test_in_fit_it_stops_early_and_keeps_the_best_dev_weights(registry, blobs):
    x, y, x_dev, y_dev = blobs
    # Dev labels are noise: the dev loss stops improving after a few epochs.
    y_dev = np.random.default_rng(1).integers(0, 2, size=len(y_dev))
    model = Model([Dense(32, "tanh"), Dense(2, "softmax")])
    cb = EarlyStopping(monitor="dev_loss", patience=2)
    history = model.fit(
        x, y, epochs=30, lr=0.5, dev=(x_dev, y_dev), callbacks=[cb], seed=0, batch_size=32
    )
    assert history.stopped_early and len(history.epochs) < 30
    assert len(history.epochs) == cb.best_epoch + 1 + cb.patience
    assert min(history["dev_loss"]) == cb.best
    assert model.evaluate(x_dev, y_dev)["loss"] == pytest.approx(cb.best, rel=1e-5)


def test_state_loaded_into_a_fresh_callback_continues_the_same_way():
    """What a checkpoint saves and resuming loads: the counters and the best weights."""
    values = [0.5, 0.8, 0.7, 0.75, 0.6, 0.9]
    whole_model, whole = tiny_model(), EarlyStopping(patience=3)
    stopped, _ = replay(whole, whole_model, values)

    model, first = tiny_model(), EarlyStopping(patience=3)
    replay(first, model, values[:3])  # ends with epoch 1's weights: move on to epoch 3's
    model.layers[0].params["W"] += 2.0
    state = first.state()
    assert {k: state[k] for k in ("best", "best_epoch", "wait", "stopped_epoch")} == {
        "best": 0.8,
        "best_epoch": 1,
        "wait": 1,
        "stopped_epoch": None,
    }
    resumed = EarlyStopping(patience=3)
    resumed.on_train_begin(model)
    resumed.load_state(model, state)
    for epoch, value in enumerate(values[3:], start=3):
        if resumed.on_epoch_end(model, epoch, {"dev_accuracy": value}):
            break
        model.layers[0].params["W"] += 1.0
    resumed.on_train_end(model)
    assert (epoch, resumed.stopped_epoch, resumed.best_epoch) == (stopped, whole.stopped_epoch, 1)
    np.testing.assert_array_equal(model.layers[0].params["W"], whole_model.layers[0].params["W"])


def test_load_state_refuses_what_does_not_fit():
    model, cb = tiny_model(), EarlyStopping()
    replay(cb, model, [0.5])
    state = cb.state()
    other = Model([Dense(3, "softmax")], dtype="float64").build((3,), seed=0)
    with pytest.raises(ValueError, match=r"weights\.0\.params\.W is not a finite float64 array "
                       r"of shape \(3, 3\)"):  # fmt: skip
        EarlyStopping().load_state(other, state)
    with pytest.raises(ValueError, match=r"best weights are missing"):
        EarlyStopping().load_state(model, {k: v for k, v in state.items() if "." not in k})
    with pytest.raises(ValueError, match=r"best True, best_epoch 0, wait 0, stopped_epoch None "):
        EarlyStopping().load_state(model, {**state, "best": True})
    # Without restore_best there are no weights to keep.
    cb = EarlyStopping(restore_best=False)
    replay(cb, model, [0.5])
    assert set(cb.state()) == {"best", "best_epoch", "wait", "stopped_epoch"}
