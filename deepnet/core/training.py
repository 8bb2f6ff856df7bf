"""Mini-batch training: shuffling, a dev set, schedules, callbacks, history, divergence checks."""

from __future__ import annotations

import copy
import csv
import json
import math
import numbers
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from deepnet.core.checkpoint import (
    callback_configs,
    fingerprint,
    open_checkpoint,
    save_checkpoint,
    stateful,
)
from deepnet.core.components import Callback
from deepnet.core.data import train_dev_split
from deepnet.core.errors import DeepnetError, DivergenceError, ShapeError
from deepnet.core.plugins import get_registry


@attrs.define
class History:
    """Per-epoch metrics: ``history.epochs[i]`` is a dict; ``history["loss"]`` a column."""

    epochs: list[dict[str, float]] = attrs.Factory(list)
    seed: int | None = None
    stopped_early: bool = False

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "stopped_early": self.stopped_early, "epochs": self.epochs}

    def write(self, path: str | Path) -> Path:
        """Write as JSON, or CSV when the file name ends in ``.csv``."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            keys = sorted({k for e in self.epochs for k in e}, key=_column_order)
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.epochs)
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _column_order(key: str) -> tuple[int, str]:
    order = ["epoch", "loss", "train_accuracy", "dev_loss", "dev_accuracy", "lr", "seconds"]
    return (order.index(key) if key in order else len(order), key)


def fit(
    model,
    x: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    optimizer: Any = "sgd",
    lr: float | None = None,
    schedule: Any = "constant",
    dev: tuple[Any, Any] | None = None,
    dev_fraction: float = 0.0,
    shuffle: bool = True,
    seed: int | None = None,
    callbacks: Sequence[Any] = (),
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> History:
    """Train ``model`` on ``x`` ``(N, *input_shape)`` and labels ``y`` ``(N,)`` or ``(N, K)``.

    ``optimizer``, ``schedule`` and ``callbacks`` are components or registry names; ``lr``
    overrides the optimizer's rate. The dev set is ``dev`` if given, else ``dev_fraction`` of
    the training data held out at random (seeded). ``shuffle=False`` keeps the data's order
    (as the course notebook did). Gradients are batch means unless the loss has
    ``reduction="sum"``. The epoch's ``loss`` and ``train_accuracy`` are running means over its
    batches (in training mode); dev metrics are computed in evaluation mode after each epoch.

    A non-finite loss raises :class:`DivergenceError` with the weights of the last complete
    epoch restored and the history so far (``exc.history``, and ``model.meta["history"]``).
    The same seed gives bit-identical results. Integer ``x`` (uint8 pixels) is cast batch by
    batch, never copied whole; a model's first fit (it builds the model, or finds it built but
    never trained) adapts its leading data-dependent layers (``normalize``) to the training part
    (dev set excluded). Later fits keep them, so continued training sees the same inputs.

    ``checkpoint=PATH`` saves the training state there after every epoch (atomically; see
    :mod:`deepnet.core.checkpoint`); ``resume=True`` continues from it, with the same settings,
    data and stateful callbacks, to the same final weights as an uninterrupted run: callbacks'
    ``state()`` (early stopping's patience count and best weights) is saved and restored too.
    Without ``resume`` an existing file at ``PATH`` is an error, never overwritten.
    """
    registry = get_registry()
    if not (isinstance(epochs, int) and epochs >= 1):
        raise DeepnetError(f"epochs must be a positive integer, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise DeepnetError(f"batch_size must be a positive integer, got {batch_size!r}")
    if lr is not None and not (isinstance(lr, numbers.Real) and 0 < lr < math.inf):
        raise DeepnetError(f"lr must be a positive number, got {lr!r}")
    resumed = open_checkpoint(checkpoint, resume)
    if resumed is not None and seed is None:  # the checkpoint's run drew its seed
        seed = resumed.settings.get("seed")
    x = np.asarray(x)
    if len(x) != len(y):
        raise ShapeError(f"x has {len(x)} samples but y has {len(y)}")
    seq = np.random.SeedSequence(seed)
    seed = int(seq.entropy) if seed is None else seed  # type: ignore[arg-type]
    build_seq, split_seq, shuffle_seq = seq.spawn(3)
    building = not model.built
    first_fit = building or "history" not in model.meta
    if building:
        model.build(x.shape[1:], seed=int(build_seq.generate_state(1)[0]))
    x = model.check_input(x)  # integer pixels stay integers: batches are cast one by one
    y_all = model.one_hot(y)
    if dev is not None:
        x_dev, y_dev = model.check_input(dev[0]), model.one_hot(dev[1])
    elif dev_fraction:
        split_seed = int(split_seq.generate_state(1)[0])
        x, y_all, x_dev, y_dev = train_dev_split(x, y_all, dev_fraction, split_seed)
    else:
        x_dev = y_dev = None
    if len(x) == 0:
        raise DeepnetError("no training samples left")
    if first_fit:  # statistics of the training part only, so the dev set stays unseen
        model.adapt(x)

    opt = registry.create("optimizer", optimizer)
    if lr is not None:  # a copy, so that the recorded config shows the rate really used
        if attrs.has(type(opt)):
            opt = attrs.evolve(opt, lr=lr)
        else:
            opt = copy.copy(opt)
            opt.lr = lr
    base_lr = float(opt.lr)
    sched = registry.create("schedule", schedule)
    cbs: list[Callback] = [registry.create("callback", c) for c in callbacks]
    params = [p for _, _, p in model.parameters()]
    keys = [(i, name) for i, name, _ in model.parameters()]
    state = opt.init(params)
    rng = np.random.default_rng(shuffle_seq)
    labels = y_all.argmax(axis=1)  # for the running accuracy, once rather than per batch
    n = len(x)
    n_batches = math.ceil(n / batch_size)
    history = History(seed=seed)
    model.meta["training"] = {
        "epochs": epochs, "batch_size": batch_size, "lr": base_lr, "shuffle": shuffle,
        "seed": seed, "dev_fraction": dev_fraction, "samples": n,
        "optimizer": registry.config_of(opt), "schedule": registry.config_of(sched),
        "loss": registry.config_of(model.loss),
    }  # fmt: skip
    if checkpoint is not None:
        dev_data = () if x_dev is None else (x_dev, y_dev)
        kept = stateful(cbs)
        settings = {
            **model.meta["training"], "callbacks": callback_configs(registry, kept),
            "data_crc32": fingerprint(x, y_all, *dev_data),
        }  # fmt: skip
        training_state = dict(settings=settings, rng=rng, optimizer_state=state, callbacks=kept)
    if resumed is not None:
        resumed.restore(model, settings, rng, state)
        history.epochs = list(resumed.history["epochs"])
        history.stopped_early = bool(resumed.history.get("stopped_early"))
    start_epoch = 0 if resumed is None else epochs if history.stopped_early else resumed.epoch

    def diverged(what: str) -> DivergenceError:
        """Restore the weights of the epoch's start; say what happened and what to try."""
        model.set_weights(snapshot)
        model.meta["history"] = history.to_dict()
        restored = f"the end of epoch {epoch}" if epoch else "their initial values"
        hint = "Lower the learning rate, use a scaled initializer or check the data"
        if resumed is not None and epoch == start_epoch:
            hint += f" (or {checkpoint}, resumed from, is damaged)"
        return DivergenceError(
            f"{what} (lr {lr_now:g}); weights restored to {restored}. {hint}", history=history
        )

    for cb in cbs:
        cb.on_train_begin(model)
    if resumed is not None:  # after on_train_begin, which starts the callbacks afresh
        resumed.restore_callbacks(model, kept)
    for epoch in range(start_epoch, epochs):
        start = time.perf_counter()
        snapshot = model.get_weights()
        # Batches are gathered one by one: a shuffled copy of the whole set at every epoch
        # costs more than small nets spend computing (fresh pages for ~190 MB on MNIST).
        order = rng.permutation(n) if shuffle else None
        loss_sum = correct = 0.0
        lr_now = base_lr
        for b in range(n_batches):
            batch = slice(b * batch_size, (b + 1) * batch_size)
            idx = batch if order is None else order[batch]
            xb, yb = x[idx], y_all[idx]
            # A diverging run overflows somewhere before its loss turns non-finite; the loss
            # check reports that once, clearly, instead of a stream of warnings. A bad step (or
            # a damaged optimizer state) shows as the next batch's loss.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                a, caches = model.forward(xb, training=True)
                loss = model.loss.forward(a, yb)
                grads = model.backward(caches, yb)
                loss += model.regularize(grads)
                if not math.isfinite(loss):
                    raise diverged(f"loss became {loss} at epoch {epoch + 1}, batch {b + 1}")
                lr_now = sched(base_lr, epoch + b / n_batches, epochs)
                opt.step(params, [grads[i][name] for i, name in keys], state, lr_now)
                model.constrain()
            per_sample = loss / len(xb) if model.loss.reduction == "sum" else loss
            loss_sum += per_sample * len(xb)
            correct += int((a.argmax(axis=1) == labels[idx]).sum())
            for cb in cbs:
                cb.on_batch_end(model, epoch, b, n_batches, per_sample)
        if not all(np.isfinite(p).all() for p in params):  # the last step has no next loss
            raise diverged(f"weights became non-finite in the last batch of epoch {epoch + 1}")
        logs: dict[str, float] = {
            "epoch": epoch + 1, "loss": loss_sum / n, "train_accuracy": correct / n, "lr": lr_now,
        }  # fmt: skip
        if x_dev is not None and len(x_dev):
            dev_metrics = model.evaluate(x_dev, y_dev)
            logs["dev_loss"], logs["dev_accuracy"] = dev_metrics["loss"], dev_metrics["accuracy"]
        logs["seconds"] = time.perf_counter() - start
        history.epochs.append(logs)
        stop = False
        for cb in cbs:
            stop = bool(cb.on_epoch_end(model, epoch, logs)) or stop
        history.stopped_early = stop
        if stop:
            break
        if checkpoint is not None and epoch + 1 < epochs:  # the last one is saved below
            model.meta["history"] = history.to_dict()
            save_checkpoint(checkpoint, model, epoch=epoch + 1, **training_state)
    for cb in cbs:
        cb.on_train_end(model)
    model.meta["history"] = history.to_dict()
    if checkpoint is not None and len(history.epochs) > start_epoch:
        # on_train_end may change the weights (early stopping restores the best ones): the
        # finished checkpoint holds the model that fit returns.
        save_checkpoint(checkpoint, model, epoch=len(history.epochs), **training_state)
    return history
