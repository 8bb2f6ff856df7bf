"""Training checkpoints: a model file that also holds what resuming needs.

``fit(..., checkpoint=PATH)`` writes one at the end of every epoch, atomically, so the previous
checkpoint stays in place until the new one is complete. Besides the model's arrays and header
it holds the optimizer state (arrays ``optimizer.<j>.<name>``, one dict per trainable array in
``model.parameters()`` order) and, in the header's ``checkpoint`` entry, the number of finished
epochs, the fit settings (checked on resume, the configs of stateful callbacks among them),
the state of the shuffling RNG and of every stochastic layer's ``layer.rng``, and each stateful
callback's ``state()``: its numbers and strings there, its arrays as ``callback.<i>.<name>``.
The history is the model's ``meta["history"]``. No pickle: RNG states are JSON. A checkpoint is
a model file too: ``deepnet.load`` reads it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from deepnet.core.components import Callback
from deepnet.core.errors import DeepnetError, ModelFormatError
from deepnet.core.serialization import (
    model_arrays,
    model_from_file,
    model_header,
    read_header,
    write_npz,
)

OPTIMIZER = "optimizer."
CALLBACK = "callback."
SCALARS = (str, int, float, bool, type(None))  # what a callback state holds besides arrays


def _kept(entry: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One parameter's optimizer state without its per-step temporary (``"scratch"``)."""
    return {name: value for name, value in entry.items() if name != "scratch"}


def _architecture(header: dict[str, Any]) -> dict[str, Any]:
    """What must match to resume: the components' configs (not their versions), dtype, shape."""
    return {
        "dtype": header["dtype"],
        "input_shape": header["input_shape"],
        "layers": [item["config"] for item in header["layers"]],
        "loss": header["loss"]["config"],
        "regularizers": [item["config"] for item in header["regularizers"]],
    }


def fingerprint(*arrays: np.ndarray) -> int:
    """A CRC-32 of the arrays' bytes, to tell on resume that the data is the same."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).data, crc)
    return crc


def _stochastic_layers(model) -> dict[str, np.random.Generator]:
    # Stochastic layers (dropout, random shifts) keep their generator in ``layer.rng``.
    return {
        str(i): layer.rng
        for i, layer in enumerate(model.layers)
        if isinstance(getattr(layer, "rng", None), np.random.Generator)
    }


def stateful(callbacks: list[Any]) -> list[Any]:
    """The callbacks whose state a checkpoint records: those that override ``state``.

    Stateless ones (progress printers) are left out, so that they may differ on resume."""
    return [
        cb for cb in callbacks if getattr(type(cb), "state", Callback.state) is not Callback.state
    ]


def callback_configs(registry, callbacks: list[Any]) -> list[dict[str, Any]]:
    """The configs of ``callbacks``, which resuming must match; a script's own unregistered
    callback is named by its class (it has no config to look it up by)."""
    registered = {e.factory for e in registry.entries("callback")}
    return [
        registry.config_of(cb)
        if type(cb) in registered
        else {"name": f"{type(cb).__module__}.{type(cb).__qualname__}"}
        for cb in callbacks
    ]


def split_state(cb: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``cb.state()`` split into its JSON part and its arrays."""
    scalars, arrays = {}, {}
    for name, value in cb.state().items():
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif isinstance(value, (*SCALARS, np.generic)):
            scalars[name] = value.item() if isinstance(value, np.generic) else value
        else:
            raise DeepnetError(
                f"cannot checkpoint the state {name!r} of callback {type(cb).__name__}: it is a "
                f"{type(value).__name__}, not a number, string, None or numpy array"
            )
    return scalars, arrays


def save_checkpoint(
    path: str | Path,
    model,
    *,
    epoch: int,
    settings: dict[str, Any],
    rng: np.random.Generator,
    optimizer_state: list[dict[str, np.ndarray]],
    callbacks: Sequence[Any] = (),
) -> Path:
    """Write the training state after ``epoch`` finished epochs to ``path``, atomically.

    ``callbacks`` are the :func:`stateful` ones, whose configs are ``settings["callbacks"]``."""
    header = model_header(model)
    arrays = model_arrays(model)
    states = []
    for i, cb in enumerate(callbacks):
        scalars, cb_arrays = split_state(cb)
        states.append(scalars)
        arrays.update({f"{CALLBACK}{i}.{name}": value for name, value in cb_arrays.items()})
    header["checkpoint"] = {
        "epoch": epoch,
        "settings": settings,
        "rng": rng.bit_generator.state,
        "layer_rngs": {i: g.bit_generator.state for i, g in _stochastic_layers(model).items()},
        "callbacks": states,
    }
    for j, entry in enumerate(optimizer_state):
        for name, value in _kept(entry).items():
            if not isinstance(value, np.ndarray):
                raise DeepnetError(
                    f"cannot checkpoint the optimizer state {name!r}: it is a "
                    f"{type(value).__name__}, not a numpy array"
                )
            arrays[f"{OPTIMIZER}{j}.{name}"] = value
    return write_npz(path, header, arrays)


@attrs.define
class Checkpoint:
    """What :func:`load_checkpoint` read; :meth:`restore` puts it into a training run."""

    path: Path
    header: dict[str, Any]
    model: Any
    optimizer_state: dict[tuple[int, str], np.ndarray]
    #: Each stateful callback's ``state()``, arrays included, in ``settings["callbacks"]`` order.
    callback_states: list[dict[str, Any]]

    @property
    def epoch(self) -> int:
        return self.header["checkpoint"]["epoch"]

    @property
    def settings(self) -> dict[str, Any]:
        return self.header["checkpoint"]["settings"]

    @property
    def history(self) -> dict[str, Any]:
        return self.model.meta["history"]

    def restore(
        self,
        model,
        settings: dict[str, Any],
        rng: np.random.Generator,
        optimizer_state: list[dict[str, np.ndarray]],
    ) -> None:
        """Check that this run matches the checkpoint's, then load its state into it in place.

        Raises :class:`DeepnetError` naming the first setting that differs; nothing is
        changed then.
        """
        self._check_same_run(model, settings)
        saved = self.optimizer_state
        for j, entry in enumerate(optimizer_state):
            for name, value in _kept(entry).items():
                old = saved.get((j, name))
                # The dtype first: isfinite raises TypeError on a damaged one (strings).
                if old is None or old.shape != value.shape or old.dtype != value.dtype:
                    raise ModelFormatError(
                        f"{self.path}: the checkpoint's optimizer state does not fit: "
                        f"{OPTIMIZER}{j}.{name} is "
                        f"{'missing' if old is None else f'{old.dtype} {old.shape}'}, "
                        f"expected {value.dtype} {value.shape}"
                    )
                if not np.isfinite(old).all():
                    raise ModelFormatError(
                        f"{self.path}: damaged checkpoint: {OPTIMIZER}{j}.{name} has NaN or "
                        "infinite values"
                    )
        if len(saved) != sum(len(_kept(entry)) for entry in optimizer_state):
            raise ModelFormatError(f"{self.path}: the checkpoint's optimizer state does not fit")
        layer_rngs = _stochastic_layers(model)
        states = self.header["checkpoint"]
        saved_layer_rngs = states.get("layer_rngs")
        if not isinstance(saved_layer_rngs, dict) or set(saved_layer_rngs) != set(layer_rngs):
            raise ModelFormatError(f"{self.path}: damaged checkpoint (layer random states)")
        # Apply the RNG states to scratch generators first, so that a bad one changes nothing.
        for name, state in [("shuffling", states.get("rng")), *saved_layer_rngs.items()]:
            target = rng if name == "shuffling" else layer_rngs[name]
            try:
                type(target.bit_generator)().state = state
            except Exception as exc:  # numpy's checks raise several kinds (OverflowError too)
                raise ModelFormatError(
                    f"{self.path}: damaged checkpoint (random state {name}: {exc})"
                ) from None
        model.set_weights(self.model.get_weights())
        for j, entry in enumerate(optimizer_state):
            for name, value in _kept(entry).items():
                value[...] = saved[(j, name)]
        rng.bit_generator.state = states["rng"]
        for i, state in saved_layer_rngs.items():
            layer_rngs[i].bit_generator.state = state

    def restore_callbacks(self, model, callbacks: list[Any]) -> None:
        """Load the saved states into the :func:`stateful` ``callbacks`` (after on_train_begin,
        which starts them afresh); :meth:`restore` checked that their configs match."""
        for i, (cb, state) in enumerate(zip(callbacks, self.callback_states, strict=True)):
            try:
                cb.load_state(model, state)
            except Exception as exc:  # a plugin's check of damaged input may raise any kind
                text = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise ModelFormatError(
                    f"{self.path}: damaged checkpoint (state of callback {i}, "
                    f"{self.settings['callbacks'][i]['name']}: {text})"
                ) from None

    def _check_same_run(self, model, settings: dict[str, Any]) -> None:
        ours = _architecture(json.loads(json.dumps(model_header(model))))
        theirs = _architecture(self.header)
        for key, value in ours.items():
            if theirs[key] != value:
                raise DeepnetError(
                    f"{self.path}: the checkpoint holds a different model ({key} differs); "
                    "resume with the same architecture, or give a new checkpoint path"
                )
        ours = json.loads(json.dumps(settings))  # as it reads back from JSON: tuples as lists
        for key, value in ours.items():
            if self.settings.get(key) != value:
                what = (
                    "the training data differs" if key == "data_crc32"
                    else _callbacks_difference(self.settings[key], value) if key == "callbacks"
                    else f"it was made with {key} {self.settings.get(key)!r}, "
                         f"this run has {value!r}"
                )  # fmt: skip
                raise DeepnetError(
                    f"{self.path}: cannot resume: {what}; use the same settings and data, or "
                    "give a new checkpoint path"
                )


def _callbacks_difference(theirs: list[dict], ours: list[dict]) -> str:
    """The first difference between two runs' stateful callbacks, as the refusal says it."""
    names = [", ".join(c["name"] for c in configs) or "none" for configs in (theirs, ours)]
    if names[0] != names[1]:
        return f"it was made with callbacks {names[0]}, this run has {names[1]}"
    for a, b in zip(theirs, ours, strict=True):
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                return (
                    f"it was made with {a['name']} {key} {a.get(key)!r}, "
                    f"this run has {b.get(key)!r}"
                )
    return "its callbacks differ"  # not reached: the lists differ somewhere


def _natural(value: Any) -> bool:
    """A non-negative int, and not a bool (JSON's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _metrics(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values())


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`ModelFormatError` if
    the file is damaged or is a plain model file."""
    path = Path(path)
    header, arrays = read_header(path)
    section = header.get("checkpoint")
    if section is None:
        raise ModelFormatError(f"{path}: a model file, not a checkpoint (no training state)")
    epoch = section.get("epoch") if isinstance(section, dict) else None
    settings = section.get("settings") if isinstance(section, dict) else None
    # fit seeds its run with the saved seed when resumed without one.
    if not (_natural(epoch) and isinstance(settings, dict) and _natural(settings.get("seed"))):
        raise ModelFormatError(f"{path}: damaged checkpoint (training state)")
    model = model_from_file(path, header, arrays)
    history = model.meta.get("history")
    epochs = history.get("epochs") if isinstance(history, dict) else None
    # Each epoch's metrics, numbers by name: train_recipe sums their seconds on resume.
    if not (isinstance(epochs, list) and len(epochs) == epoch and all(map(_metrics, epochs))):
        raise ModelFormatError(f"{path}: damaged checkpoint (history of {epoch} epochs)")
    optimizer_state = {}
    for key, value in arrays.items():
        if key.startswith(OPTIMIZER):
            optimizer_state[_numbered(path, key, OPTIMIZER)] = value
    return Checkpoint(path, header, model, optimizer_state, _callback_states(path, section, arrays))


def _numbered(path: Path, key: str, prefix: str) -> tuple[int, str]:
    """``(j, name)`` from an array name ``<prefix><j>.<name>``."""
    j, _, name = key[len(prefix) :].partition(".")
    if not (j.isascii() and j.isdigit() and name):
        raise ModelFormatError(f"{path}: damaged checkpoint: unexpected array {key!r}")
    return int(j), name


def _callback_states(
    path: Path, section: dict[str, Any], arrays: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Each stateful callback's saved state, its JSON part and its arrays merged."""
    configs, states = section["settings"].get("callbacks"), section.get("callbacks")
    if configs is None and states is None:  # written before callbacks had state: none had
        section["settings"]["callbacks"] = section["callbacks"] = configs = states = []
    # Resuming compares the configs and names them: dicts with a name, one per saved state.
    if not (
        isinstance(configs, list)
        and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in configs)
        and isinstance(states, list)
        and len(states) == len(configs)
        and all(
            isinstance(s, dict) and all(isinstance(v, SCALARS) for v in s.values()) for s in states
        )
    ):
        raise ModelFormatError(f"{path}: damaged checkpoint (callback states)")
    states = [dict(s) for s in states]
    for key, value in arrays.items():
        if key.startswith(CALLBACK):
            i, name = _numbered(path, key, CALLBACK)
            if i >= len(states) or name in states[i]:
                raise ModelFormatError(f"{path}: damaged checkpoint: unexpected array {key!r}")
            states[i][name] = value
    return states


def open_checkpoint(path: str | Path | None, resume: bool) -> Checkpoint | None:
    """The checkpoint to resume from, or None to start afresh; refuses to overwrite one.

    An existing file at ``path`` without ``resume`` is an error, so that a run started by
    mistake never replaces the training a checkpoint holds.
    """
    if path is None:
        if resume:
            raise DeepnetError("resume needs a checkpoint path (checkpoint=PATH, --checkpoint)")
        return None
    path = Path(path)
    if not resume:
        if path.exists():
            raise DeepnetError(
                f"{path} already exists; resume from it (resume=True, --resume), remove it, or "
                "give another checkpoint path"
            )
        return None
    if not path.exists():
        raise DeepnetError(f"{path}: no checkpoint to resume from; start without resume")
    return load_checkpoint(path)
