"""Checkpoints and resume: the same final weights as an uninterrupted run; saved work is kept."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import deepnet
from deepnet import Callback, DeepnetError, Dense, DivergenceError, Model, ModelFormatError
from deepnet.cli import main
from deepnet.core.checkpoint import load_checkpoint

# The core's SGD with Nesterov momentum, shuffling and a held-out dev set; and contrib's Adam
# (a step counter in its state) with dropout (a layer's own RNG) and batch norm (running state).
CASES = {
    "sgd": (
        lambda: [Dense(8, "relu", init="he_normal"), Dense(3, "softmax")],
        {"optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True}, "lr": 0.05,
         "schedule": "cosine", "dev_fraction": 0.2},
    ),
    "adam-dropout-batchnorm": (
        lambda: [Dense(16, "relu"), {"name": "dropout", "rate": 0.3}, {"name": "batch_norm"},
                 Dense(3, "softmax")],
        {"optimizer": "adam", "lr": 0.01},
    ),
}  # fmt: skip


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of an epoch."""


class CrashAt(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_batch_end(self, model, epoch, batch, n_batches, loss):
        if (epoch, batch) == self.at:
            raise Interrupted


def fit(layers, x, y, **kwargs):
    model = Model(layers())
    history = model.fit(x, y, epochs=4, batch_size=32, seed=7, **kwargs)
    return model, history


def same_weights(a: Model, b: Model) -> bool:
    return all(
        np.array_equal(wa[k], wb[k])
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True)
        for k in wa
    )


def metrics(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]


@pytest.mark.parametrize("case", CASES)
def test_resume_equals_an_uninterrupted_run(blobs, tmp_path, case):
    layers, options = CASES[case]
    x, y = blobs
    whole, whole_history = fit(layers, x, y, **options)

    path = tmp_path / "run.ckpt.npz"
    with pytest.raises(Interrupted):  # in the third epoch: the checkpoint holds two
        fit(layers, x, y, checkpoint=path, callbacks=[CrashAt(2, 3)], **options)
    assert load_checkpoint(path).epoch == 2
    resumed, history = fit(layers, x, y, checkpoint=path, resume=True, **options)

    assert same_weights(resumed, whole)
    assert metrics(history.epochs) == metrics(whole_history.epochs)
    assert metrics(resumed.meta["history"]["epochs"]) == metrics(whole_history.epochs)
    # The finished checkpoint holds the final model; resuming it again trains nothing.
    assert same_weights(deepnet.load(path), whole)
    again, history = fit(layers, x, y, checkpoint=path, resume=True, **options)
    assert same_weights(again, whole) and len(history.epochs) == 4


def test_resume_without_the_rng_states_would_differ(blobs, tmp_path, monkeypatch):
    """The test above can fail: a checkpoint without the dropout RNG's state resumes wrong."""
    from deepnet.core import checkpoint

    layers, options = CASES["adam-dropout-batchnorm"]
    x, y = blobs
    whole, _ = fit(layers, x, y, **options)
    monkeypatch.setattr(checkpoint, "_stochastic_layers", lambda model: {})
    path = tmp_path / "run.npz"
    with pytest.raises(Interrupted):
        fit(layers, x, y, checkpoint=path, callbacks=[CrashAt(2, 0)], **options)
    resumed, _ = fit(layers, x, y, checkpoint=path, resume=True, **options)
    assert not same_weights(resumed, whole)


def test_checkpoint_file_holds_the_training_state(blobs, tmp_path):
    layers, options = CASES["adam-dropout-batchnorm"]
    path = tmp_path / "c.npz"
    model, _ = fit(layers, *blobs, checkpoint=path, **options)
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 4 and ckpt.settings["batch_size"] == 32 and ckpt.settings["seed"] == 7
    assert {name for _, name in ckpt.optimizer_state} == {"m", "v", "t"}  # no temporaries
    assert ckpt.header["checkpoint"]["rng"]["bit_generator"] == "PCG64"
    assert list(ckpt.header["checkpoint"]["layer_rngs"]) == ["1"]  # the dropout layer
    with np.load(path, allow_pickle=False) as npz:  # a plain npz, readable without pickle
        assert npz["optimizer.0.m"].shape == (4, 16)
    np.testing.assert_array_equal(
        deepnet.load(path).predict_proba(blobs[0]), model.predict_proba(blobs[0])
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left


@pytest.mark.parametrize(("stop", "saves"), [(None, [1, 2, 3, 4]), (1, [1, 2])])
def test_each_epoch_is_checkpointed_once(blobs, tmp_path, monkeypatch, stop, saves):
    """The last epoch only after on_train_end, which may change the weights."""
    from deepnet.core import training

    epochs = []

    def save(*args, epoch, **kwargs):
        epochs.append(epoch)

    class StopAt(Callback):
        def on_epoch_end(self, model, epoch, logs):
            return epoch == stop

    monkeypatch.setattr(training, "save_checkpoint", save)
    layers, options = CASES["sgd"]
    fit(layers, *blobs, checkpoint=tmp_path / "c.npz", callbacks=[StopAt()], **options)
    assert epochs == saves


def test_an_early_stopped_checkpoint_holds_the_restored_best_weights(blobs, tmp_path):
    layers, options = CASES["sgd"]
    # The loss falls, so "max" mode finds its best at epoch 1 and stops after epoch 2.
    stop = {"name": "early_stopping", "monitor": "loss", "mode": "max", "patience": 1}
    path = tmp_path / "c.npz"
    model, history = fit(layers, *blobs, checkpoint=path, callbacks=[stop], **options)
    assert history.stopped_early and len(history.epochs) == 2
    assert same_weights(deepnet.load(path), model)
    again, history = fit(layers, *blobs, checkpoint=path, resume=True, callbacks=[stop], **options)
    assert same_weights(again, model) and history.stopped_early


def test_an_existing_checkpoint_is_never_overwritten_without_resume(blobs, tmp_path):
    layers, options = CASES["sgd"]
    path = tmp_path / "c.npz"
    fit(layers, *blobs, checkpoint=path, **options)
    saved = path.read_bytes()
    with pytest.raises(DeepnetError, match=r"c\.npz already exists; resume from it"):
        fit(layers, *blobs, checkpoint=path, **options)
    assert path.read_bytes() == saved


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 16}, r"made with batch_size 32, this run has 16"),
        ({"lr": 0.1}, r"made with lr 0\.05, this run has 0\.1"),
        ({"seed": 8}, r"made with seed 7, this run has 8"),
        ({"layers": lambda: [Dense(9, "relu"), Dense(3, "softmax")]}, r"different model \(layers"),
        ({"x_scale": 2.0}, r"the training data differs"),
    ],
)
def test_resume_refuses_a_different_run(blobs, tmp_path, change, message):
    layers, options = CASES["sgd"]
    x, y = blobs
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        fit(layers, x, y, checkpoint=path, callbacks=[CrashAt(1, 0)], **options)
    saved = path.read_bytes()
    change = dict(change)
    x = x * change.pop("x_scale", 1.0)
    layers = change.pop("layers", layers)
    kwargs = {"epochs": 4, "batch_size": 32, "seed": 7, **options, **change}
    with pytest.raises(DeepnetError, match=message):
        Model(layers()).fit(x, y, checkpoint=path, resume=True, **kwargs)
    assert path.read_bytes() == saved


def test_resume_needs_a_checkpoint(blobs, tmp_path):
    x, y = blobs
    model = Model([Dense(3, "softmax")])
    with pytest.raises(DeepnetError, match=r"nothing\.npz: no checkpoint to resume from"):
        model.fit(x, y, checkpoint=tmp_path / "nothing.npz", resume=True)
    with pytest.raises(DeepnetError, match=r"resume needs a checkpoint path"):
        model.fit(x, y, resume=True)
    plain = Model([Dense(3, "softmax")]).build((4,), seed=0).save(tmp_path / "model.npz")
    with pytest.raises(ModelFormatError, match=r"model\.npz: a model file, not a checkpoint"):
        model.fit(x, y, checkpoint=plain, resume=True)


@pytest.mark.parametrize("value", [-1, 2**200, None])
def test_a_damaged_random_state_is_refused_and_changes_nothing(blobs, tmp_path, value):
    """Found by the fuzzer: an out-of-range state made numpy raise OverflowError."""
    from deepnet.core.serialization import read_header, write_npz

    layers, options = CASES["adam-dropout-batchnorm"]
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        fit(layers, *blobs, checkpoint=path, callbacks=[CrashAt(1, 0)], **options)
    header, arrays = read_header(path)
    header["checkpoint"]["layer_rngs"]["1"]["state"]["inc"] = value
    saved = write_npz(path, header, arrays).read_bytes()
    with pytest.raises(ModelFormatError, match=r"c\.npz: damaged checkpoint \(random state 1: "):
        fit(layers, *blobs, checkpoint=path, resume=True, **options)
    assert path.read_bytes() == saved


def damage_header(path, change) -> None:
    """Rewrite the checkpoint at ``path`` with ``change(header)`` applied."""
    from deepnet.core.serialization import read_header, write_npz

    header, arrays = read_header(path)
    change(header)
    write_npz(path, header, arrays)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Without seed=, fit seeds its run with the checkpoint's; numpy raised TypeError.
        *[(lambda h, s=seed: h["checkpoint"]["settings"].update(seed=s), r"training state")
          for seed in ["abc", -5, 1.5, True]],
        # train_recipe sums the epochs' seconds on resume: they must be dicts of numbers.
        *[(lambda h, e=entry: h["meta"]["history"]["epochs"].__setitem__(0, e), r"history of 1 ")
          for entry in [1, None, {"epoch": 1, "seconds": "x"}]],
    ],
)  # fmt: skip
def test_a_damaged_seed_or_history_is_refused(blobs, tmp_path, change, message):
    layers, options = CASES["sgd"]
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        Model(layers()).fit(*blobs, epochs=2, checkpoint=path, callbacks=[CrashAt(1, 0)], **options)
    damage_header(path, change)
    with pytest.raises(ModelFormatError, match=rf"c\.npz: damaged checkpoint \({message}"):
        Model(layers()).fit(*blobs, epochs=2, checkpoint=path, resume=True, **options)


def damage_optimizer_state(path, key: str, value: float) -> bytes:
    from deepnet.core.serialization import read_header, write_npz

    header, arrays = read_header(path)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = value
    return write_npz(path, header, arrays).read_bytes()


def test_damaged_optimizer_state_is_refused_or_reported_as_divergence(blobs, tmp_path):
    """Found by the fuzzer: a negative second moment made Adam take the square root of it."""
    layers, options = CASES["adam-dropout-batchnorm"]
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        fit(layers, *blobs, checkpoint=path, callbacks=[CrashAt(1, 0)], **options)
    saved = damage_optimizer_state(path, "optimizer.0.v", np.nan)
    with pytest.raises(ModelFormatError, match=r"optimizer\.0\.v has NaN or infinite values"):
        fit(layers, *blobs, checkpoint=path, resume=True, **options)
    saved = damage_optimizer_state(path, "optimizer.0.v", -1.0)
    with pytest.raises(DivergenceError, match=r"at epoch 2, batch 2 .* \(or .*c\.npz, resumed "
                       r"from, is damaged\)"):  # fmt: skip
        fit(layers, *blobs, checkpoint=path, resume=True, **options)
    assert path.read_bytes() == saved


def test_optimizer_state_of_a_wrong_dtype_or_name_is_refused(blobs, tmp_path):
    """Strings where numbers belong: a ModelFormatError, not isfinite's TypeError."""
    from deepnet.core.serialization import read_header, write_npz

    layers, options = CASES["adam-dropout-batchnorm"]
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        fit(layers, *blobs, checkpoint=path, callbacks=[CrashAt(1, 0)], **options)
    header, arrays = read_header(path)
    arrays["optimizer.0.v"] = np.full(arrays["optimizer.0.v"].shape, "x")
    write_npz(path, header, arrays)
    with pytest.raises(ModelFormatError, match=r"optimizer\.0\.v is <U1 \(4, 16\), expected "):
        fit(layers, *blobs, checkpoint=path, resume=True, **options)
    arrays["optimizer.\u00b2.v"] = arrays.pop("optimizer.0.v")  # "²".isdigit(), int("²") fails
    write_npz(path, header, arrays)
    with pytest.raises(ModelFormatError, match=r"unexpected array 'optimizer\.\u00b2\.v'"):
        fit(layers, *blobs, checkpoint=path, resume=True, **options)


class PoisonAt(Callback):
    """Makes the next batch's loss NaN, as a diverging run would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_batch_end(self, model, epoch, batch, n_batches, loss):
        if (epoch, batch) == self.at:
            model.layers[0].params["W"][0, 0] = np.nan


def test_divergence_keeps_last_good_weights_history_and_checkpoint(blobs, tmp_path):
    layers, options = CASES["sgd"]
    x, y = blobs
    path = tmp_path / "c.npz"
    model = Model(layers())
    good = {}

    class Remember(Callback):
        def on_epoch_end(self, model, epoch, logs):
            good[epoch] = model.get_weights()

    with pytest.raises(DivergenceError) as info:
        model.fit(x, y, epochs=4, batch_size=32, seed=7, checkpoint=path,
                  callbacks=[Remember(), PoisonAt(2, 3)], **options)  # fmt: skip
    message = str(info.value)
    assert "loss became nan at epoch 3, batch 5" in message
    assert "weights restored to the end of epoch 2. Lower the learning rate" in message
    assert [e["epoch"] for e in info.value.history.epochs] == [1, 2]
    assert [e["epoch"] for e in model.meta["history"]["epochs"]] == [1, 2]
    assert all(
        np.array_equal(good[1][i][k], w[k]) for i, w in enumerate(model.get_weights()) for k in w
    )
    assert load_checkpoint(path).epoch == 2


def test_non_finite_weights_after_an_epochs_last_step_are_divergence(blobs):
    layers, options = CASES["sgd"]  # 240 training samples: batches 0..7
    model = Model(layers())
    with pytest.raises(DivergenceError, match=r"weights became non-finite in the last batch of "
                       r"epoch 2 \(lr .*\); weights restored to the end of epoch 1\."):  # fmt: skip
        model.fit(*blobs, epochs=4, batch_size=32, seed=7, callbacks=[PoisonAt(1, 7)], **options)
    assert all(np.isfinite(p).all() for _, _, p in model.parameters())
    assert len(model.meta["history"]["epochs"]) == 1


def test_cli_train_resumes_to_the_same_model(tmp_path, monkeypatch):
    from deepnet import cli

    args = ["train", "--layers", "16:relu,10:softmax", "--epochs", "3", "--limit", "2000",
            "--optimizer", "adam", "--lr", "0.01", "--seed", "1"]  # fmt: skip
    runner = CliRunner()
    whole = runner.invoke(main, [*args, "--out", str(tmp_path / "whole.npz")])
    assert whole.exit_code == 0, whole.output

    ckpt = str(tmp_path / "c.npz")
    real = cli.Progress.on_epoch_end

    def crash_after_first(self, model, epoch, logs):
        real(self, model, epoch, logs)
        if epoch == 1:  # in the second epoch's end: its checkpoint is not written yet
            raise Interrupted

    with monkeypatch.context() as mp:
        mp.setattr(cli.Progress, "on_epoch_end", crash_after_first)
        crashed = runner.invoke(main, [*args, "--checkpoint", ckpt])
    assert isinstance(crashed.exception, Interrupted)
    assert load_checkpoint(ckpt).epoch == 1
    info = runner.invoke(main, ["info", ckpt])
    assert "checkpoint: 1 of 3 epochs done" in info.stdout and "total 12,730 param" in info.stdout

    again = runner.invoke(main, [*args, "--checkpoint", ckpt])
    assert again.exit_code == 2 and "c.npz already exists; resume from it" in again.stderr

    out = str(tmp_path / "resumed.npz")
    resumed = runner.invoke(main, [*args, "--checkpoint", ckpt, "--resume", "--out", out])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming from {ckpt}: 1 of 3 epochs done" in resumed.stdout
    assert "epoch 1/3" not in resumed.stdout and "epoch 3/3" in resumed.stdout
    assert same_weights(deepnet.load(out), deepnet.load(tmp_path / "whole.npz"))
    # The last line, the test accuracy, is the uninterrupted run's too.
    assert resumed.stdout.splitlines()[-1] == whole.stdout.splitlines()[-1]


# -- callback state: early stopping resumes where it was -------------------------------------
# The loss falls, so "max" mode keeps epoch 0 as the best and stops after 2 epochs without
# improvement, at epoch 2 of 4: the run is interrupted in that epoch, its best weights and
# patience count are from before.
EARLY = {"name": "early_stopping", "monitor": "loss", "mode": "max", "patience": 2}


def interrupted_early_stopping(blobs, path, early=EARLY) -> None:
    layers, options = CASES["sgd"]
    with pytest.raises(Interrupted):  # the checkpoint holds 2 epochs
        fit(layers, *blobs, checkpoint=path, callbacks=[early, CrashAt(2, 3)], **options)


def test_early_stopping_resumes_its_patience_and_best_weights(blobs, tmp_path):
    layers, options = CASES["sgd"]
    whole, whole_history = fit(layers, *blobs, callbacks=[EARLY], **options)
    assert whole_history.stopped_early and len(whole_history.epochs) == 3

    path = tmp_path / "c.npz"
    interrupted_early_stopping(blobs, path)
    saved = load_checkpoint(path).callback_states
    assert [{k: v for k, v in s.items() if "." not in k} for s in saved] == [
        {"best": whole_history.epochs[0]["loss"], "best_epoch": 0, "wait": 1, "stopped_epoch": None}
    ]
    with np.load(path, allow_pickle=False) as npz:  # the best weights, as plain arrays
        assert npz["callback.0.weights.0.params.W"].shape == (4, 8)

    resumed, history = fit(
        layers, *blobs, checkpoint=path, resume=True, callbacks=[EARLY], **options
    )
    assert history.stopped_early and len(history.epochs) == 3
    assert metrics(history.epochs) == metrics(whole_history.epochs)
    assert same_weights(resumed, whole)  # epoch 0's, restored at the end
    assert same_weights(deepnet.load(path), whole)


def test_resume_refuses_other_stateful_callbacks(blobs, tmp_path):
    layers, options = CASES["sgd"]
    path = tmp_path / "c.npz"
    interrupted_early_stopping(blobs, path)
    saved = path.read_bytes()
    for callbacks, message in [
        ([{**EARLY, "patience": 3}], r"made with early_stopping patience 2, this run has 3;"),
        ([], r"made with callbacks early_stopping, this run has none;"),
        ([EARLY, EARLY], r"made with callbacks early_stopping, this run has early_stopping, early"),
    ]:
        with pytest.raises(DeepnetError, match=rf"c\.npz: cannot resume: it was {message}"):
            fit(layers, *blobs, checkpoint=path, resume=True, callbacks=callbacks, **options)
    # Callbacks without state (progress printers) are not recorded: they may differ.
    assert path.read_bytes() == saved
    _, history = fit(layers, *blobs, checkpoint=path, resume=True,
                     callbacks=[CrashAt(9, 0), EARLY], **options)  # fmt: skip
    assert history.stopped_early and len(history.epochs) == 3


def damage_callback_state(path, change) -> None:
    from deepnet.core.serialization import read_header, write_npz

    header, arrays = read_header(path)
    change(header["checkpoint"], arrays)
    write_npz(path, header, arrays)


def nan_weights(section, arrays):
    arrays["callback.0.weights.1.params.b"] = np.full_like(
        arrays["callback.0.weights.1.params.b"], np.nan
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, a: c["callbacks"][0].update(wait=-1), r"\(state of callback 0, early_stopping: "
         r"ValueError: best .*, wait -1, stopped_epoch None are not an early stopping state\)"),
        (lambda c, a: c["callbacks"][0].pop("best"), r"are not an early stopping state"),
        (lambda c, a: c["callbacks"][0].update(best=[1]), r"\(callback states\)"),
        (lambda c, a: c.pop("callbacks"), r"\(callback states\)"),
        (lambda c, a: c["settings"]["callbacks"].append(3), r"\(callback states\)"),
        (lambda c, a: a.pop("callback.0.weights.1.params.b"), r"best weights are missing"),
        (nan_weights, r"weights\.1\.params\.b is not a finite float32 array of shape \(3,\)"),
        (lambda c, a: a.update({"callback.1.x": np.ones(1)}), r"unexpected array 'callback\.1\.x'"),
    ],
)  # fmt: skip
def test_damaged_callback_state_is_refused(blobs, tmp_path, change, message):
    layers, options = CASES["sgd"]
    path = tmp_path / "c.npz"
    interrupted_early_stopping(blobs, path)
    damage_callback_state(path, change)
    saved = path.read_bytes()
    with pytest.raises(ModelFormatError, match=rf"c\.npz: damaged checkpoint.*{message}"):
        fit(layers, *blobs, checkpoint=path, resume=True, callbacks=[EARLY], **options)
    assert path.read_bytes() == saved


def test_callback_state_must_be_numbers_strings_none_or_arrays(blobs, tmp_path):
    class Remembers(Callback):
        def state(self):
            return {"seen": [1, 2]}

    layers, options = CASES["sgd"]
    with pytest.raises(
        DeepnetError,
        match=r"cannot checkpoint the state 'seen' of callback "
        r"Remembers: it is a list, not a number, string, None or numpy array",
    ):
        fit(layers, *blobs, checkpoint=tmp_path / "c.npz", callbacks=[Remembers()], **options)


class RecordsAccuracy(Callback):
    """A script's own stateful callback, not registered by any plugin: an array as its state."""

    def on_train_begin(self, model):
        self.accuracy = np.zeros(0)

    def on_epoch_end(self, model, epoch, logs):
        self.accuracy = np.append(self.accuracy, logs["train_accuracy"])
        return False

    def state(self):
        return {"accuracy": self.accuracy}

    def load_state(self, model, state):
        self.accuracy = state["accuracy"]


def test_an_unregistered_callback_is_recorded_by_its_class(blobs, tmp_path):
    layers, options = CASES["sgd"]
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        fit(layers, *blobs, checkpoint=path, callbacks=[RecordsAccuracy(), CrashAt(2, 0)],
            **options)  # fmt: skip
    ckpt = load_checkpoint(path)
    assert ckpt.settings["callbacks"] == [{"name": "test_checkpoint.RecordsAccuracy"}]
    assert ckpt.callback_states[0]["accuracy"].shape == (2,)
    recorder = RecordsAccuracy()
    _, history = fit(layers, *blobs, checkpoint=path, resume=True, callbacks=[recorder], **options)
    assert recorder.accuracy.tolist() == history["train_accuracy"]


def test_a_checkpoint_from_before_callback_states_resumes_without_stateful_callbacks(
    blobs, tmp_path
):
    layers, options = CASES["sgd"]
    whole, _ = fit(layers, *blobs, **options)
    path = tmp_path / "c.npz"
    with pytest.raises(Interrupted):
        fit(layers, *blobs, checkpoint=path, callbacks=[CrashAt(2, 3)], **options)

    def older(header):
        del header["checkpoint"]["callbacks"], header["checkpoint"]["settings"]["callbacks"]

    damage_header(path, older)
    resumed, _ = fit(layers, *blobs, checkpoint=path, resume=True, **options)
    assert same_weights(resumed, whole)
