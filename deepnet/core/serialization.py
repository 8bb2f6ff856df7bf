"""Models on disk: one ``.npz`` holding the arrays and a JSON header; no pickle, atomic writes.

The header (stored as the uint8 array ``__header__``) records the architecture as component
names and configs, the distribution and version that provided each component, the dtype and
input shape, and the training settings and metrics (``model.meta``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from deepnet.core.errors import AmbiguousComponentError, ModelFormatError, UnknownComponentError
from deepnet.core.plugins import get_registry

FORMAT = "deepnet-model"
FORMAT_VERSION = 1
HEADER = "__header__"


def _component(registry, obj: Any) -> dict[str, Any]:
    prov = registry.provenance_of(obj)
    return {
        "kind": obj.kind,
        "config": registry.config_of(obj),
        "distribution": prov.distribution,
        "version": prov.version,
        "plugin": prov.plugin,
    }


def model_header(model) -> dict[str, Any]:
    """The JSON-ready description of ``model`` that :func:`save_model` writes."""
    registry = get_registry()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": model.dtype.name,
        "input_shape": list(model.input_shape),
        "output_shape": list(model.output_shape),
        "seed": model.seed,
        "layers": [_component(registry, layer) for layer in model.layers],
        "loss": _component(registry, model.loss),
        "regularizers": [_component(registry, r) for r in model.regularizers],
        # Everything the model was made from, nested components included, so that loading
        # without a plugin can name the distribution to install.
        "requires": [
            {
                "kind": e.kind,
                "name": e.name,
                "distribution": e.provenance.distribution,
                "version": e.provenance.version,
                "plugin": e.provenance.plugin,
            }
            for e in model.requirements()
        ],
        "meta": model.meta,
    }


def save_model(model, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place)."""
    if not model.built:
        raise ModelFormatError("cannot save a model that is not built; fit or build it first")
    path = Path(path)
    header = json.dumps(model_header(model), allow_nan=True).encode()
    arrays = {HEADER: np.frombuffer(header, dtype=np.uint8)}
    for i, layer in enumerate(model.layers):
        for group in ("params", "state"):
            for name, value in getattr(layer, group).items():
                arrays[f"layers.{i}.{group}.{name}"] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; a saved model gets the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a model file; :class:`ModelFormatError` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(f"{path}: not a deepnet model file (not an .npz archive)")
    try:
        # Our own handle: np.load leaves its file open when the zip turns out damaged.
        with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ModelFormatError(f"{path}: not a deepnet model file ({exc})") from None
    raw = arrays.pop(HEADER, None)
    try:
        header = json.loads(raw.tobytes()) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not a deepnet model file (no deepnet header)")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format {header['format_version']} is newer than this deepnet "
            f"reads ({FORMAT_VERSION}); upgrade deepnet"
        )
    return header, arrays


def _missing(path: Path, header: dict[str, Any], exc: Exception) -> ModelFormatError:
    """The error for a component that no installed plugin provides, naming its distribution."""
    bare = getattr(exc, "name", "").rpartition("/")[2]
    for req in header.get("requires", []):
        same = (req.get("kind"), req.get("name")) == (getattr(exc, "kind", None), bare)
        if same and req.get("distribution") and isinstance(exc, UnknownComponentError):
            return ModelFormatError(
                f"{path}: the model needs {req['kind']} {bare!r} from the distribution "
                f"{req['distribution']} {req.get('version') or ''}, which is not installed "
                f"or is disabled; install it with: pip install {req['distribution']}"
            )
    return ModelFormatError(f"{path}: {exc}")


def load_model(path: str | Path):
    """Read a model written by :func:`save_model`."""
    from deepnet.core.model import Model

    path = Path(path)
    header, arrays = read_header(path)
    try:
        model = Model(
            [item["config"] for item in header["layers"]],
            loss=header["loss"]["config"],
            regularizers=[item["config"] for item in header["regularizers"]],
            dtype=header["dtype"],
        )
        model.build(header["input_shape"], seed=header.get("seed"))
    except (UnknownComponentError, AmbiguousComponentError) as exc:
        raise _missing(path, header, exc) from None
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{path}: damaged model header (missing {exc})") from None
    weights: list[dict[str, np.ndarray]] = [{} for _ in model.layers]
    for key, value in arrays.items():
        _, i, rest = key.split(".", 2)
        weights[int(i)][rest] = value
    for i, layer in enumerate(model.layers):
        expected = {f"{g}.{n}" for g in ("params", "state") for n in getattr(layer, g)}
        if missing := sorted(expected - set(weights[i])):
            raise ModelFormatError(f"{path}: damaged model: layer {i} lacks {', '.join(missing)}")
    try:
        model.set_weights(weights)
    except Exception as exc:
        raise ModelFormatError(f"{path}: weights do not fit the architecture ({exc})") from None
    model.meta = header.get("meta", {})
    return model
