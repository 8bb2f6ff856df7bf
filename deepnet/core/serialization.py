"""Models on disk: one ``.npz`` holding the arrays and a JSON header; no pickle, atomic writes.

The header (stored as the uint8 array ``__header__``) records the architecture as component
names and configs, the distribution and version that provided each component, the deepnet
version that wrote the file, the dtype and input shape, and the training settings and metrics
(``model.meta``). Layer arrays are named ``layers.<i>.<params|state>.<name>``; a checkpoint
(:mod:`deepnet.core.checkpoint`) is a model file with more arrays and a ``checkpoint`` entry.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from deepnet.core.errors import (
    AmbiguousComponentError,
    DeepnetError,
    ModelFormatError,
    UnknownComponentError,
)
from deepnet.core.plugins import get_registry

FORMAT = "deepnet-model"
FORMAT_VERSION = 1
#: The oldest format this deepnet still reads; older files get an error saying so.
OLDEST_FORMAT_VERSION = 1
HEADER = "__header__"
LAYERS = "layers."


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
    from deepnet import __version__

    registry = get_registry()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepnet_version": __version__,
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


def model_arrays(model) -> dict[str, np.ndarray]:
    """Every layer's params and state, keyed ``layers.<i>.<params|state>.<name>``."""
    return {
        f"{LAYERS}{i}.{group}.{name}": value
        for i, layer in enumerate(model.layers)
        for group in ("params", "state")
        for name, value in getattr(layer, group).items()
    }


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; not every system can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_npz(path: str | Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``header`` and ``arrays`` to ``path`` atomically: a temporary file in the same
    directory, flushed to disk, then renamed over ``path``. A crash at any moment leaves the
    old file or the new one, never a mixture."""
    path = Path(path)
    data = json.dumps(header, allow_nan=True).encode()
    arrays = {HEADER: np.frombuffer(data, dtype=np.uint8), **arrays}
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
    _fsync_dir(path.parent)
    return path


def save_model(model, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (see :func:`write_npz`)."""
    if not model.built:
        raise ModelFormatError("cannot save a model that is not built; fit or build it first")
    return write_npz(path, model_header(model), model_arrays(model))


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, checking its size claim before allocating anything."""
    with zf.open(info) as f:
        readers = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise ValueError(f"{info.filename} has unsupported .npy version {version}")
        shape, fortran, dtype = readers[version](f)
        if dtype.hasobject:  # would need pickle
            raise ValueError(f"{info.filename} holds Python objects")
        size = math.prod(shape) * dtype.itemsize
        if size > info.file_size:
            raise ValueError(f"{info.filename} claims {size} bytes but holds {info.file_size}")
        data = bytearray(f.read(size))  # bytearray: the array is writable without a copy
        if len(data) != size or f.read(1):  # reading to the end also checks the CRC
            raise ValueError(f"{info.filename} does not hold the {size} bytes it claims")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name, dot, ext = info.filename.rpartition(".")
            if not dot or ext != "npy":
                raise ValueError(f"unexpected member {info.filename!r}")
            arrays[name] = _read_member(zf, info)
    return arrays


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a model file; :class:`ModelFormatError` if it is not one.

    Arrays are read without pickle, and each one's size claim is checked against the archive
    before it is allocated.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(f"{path}: not a deepnet model file (not an .npz archive)")
    try:
        arrays = _read_arrays(path)
    except Exception as exc:  # whatever a damaged archive raises is the file's fault
        raise ModelFormatError(
            f"{path}: not a deepnet model file or damaged ({type(exc).__name__}: {exc})"
        ) from None
    raw = arrays.pop(HEADER, None)
    try:
        header = json.loads(raw.tobytes()) if raw is not None and raw.dtype == np.uint8 else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not a deepnet model file (no deepnet header)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{path}: damaged model header (format_version {version!r})")
    written_by = f" (written by deepnet {header.get('deepnet_version', '?')})"
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format {version}{written_by} is newer than this deepnet reads "
            f"({OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); upgrade deepnet"
        )
    if version < OLDEST_FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format {version}{written_by} is older than this deepnet reads "
            f"({OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); load and save it again with an "
            "older deepnet"
        )
    return header, arrays


def _missing(path: Path, header: dict[str, Any], exc: Exception) -> ModelFormatError:
    """The error for a component that no installed plugin provides, naming its distribution."""
    bare = str(getattr(exc, "name", "")).rpartition("/")[2]
    requires = header.get("requires")
    for req in requires if isinstance(requires, list) else []:
        if not isinstance(req, dict):
            continue
        same = (req.get("kind"), req.get("name")) == (getattr(exc, "kind", None), bare)
        if same and req.get("distribution") and isinstance(exc, UnknownComponentError):
            return ModelFormatError(
                f"{path}: the model needs {req['kind']} {bare!r} from the distribution "
                f"{req['distribution']} {req.get('version') or ''}, which is not installed "
                f"or is disabled; install it with: pip install {req['distribution']}"
            )
    return ModelFormatError(f"{path}: {exc}")


def _layer_weights(path: Path, model, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The file's ``layers.*`` arrays per layer, checked against the built model."""
    weights: list[dict[str, np.ndarray]] = [{} for _ in model.layers]
    for key, value in arrays.items():
        if not key.startswith(LAYERS):
            continue  # a checkpoint's optimizer and callback state, read by the checkpoint module
        i, _, rest = key[len(LAYERS) :].partition(".")
        if not (i.isascii() and i.isdigit() and int(i) < len(model.layers)):
            raise ModelFormatError(f"{path}: damaged model: unexpected array {key!r}")
        weights[int(i)][rest] = value
    for i, layer in enumerate(model.layers):
        expected = {
            f"{group}.{name}": array
            for group in ("params", "state")
            for name, array in getattr(layer, group).items()
        }
        if missing := sorted(expected.keys() - weights[i].keys()):
            raise ModelFormatError(f"{path}: damaged model: layer {i} lacks {', '.join(missing)}")
        if extra := sorted(weights[i].keys() - expected.keys()):
            raise ModelFormatError(f"{path}: damaged model: layer {i} has no {', '.join(extra)}")
        for key, value in weights[i].items():
            want = expected[key]
            if value.shape != want.shape or value.dtype != want.dtype:
                raise ModelFormatError(
                    f"{path}: weights do not fit the architecture: layer {i} {key} is "
                    f"{value.dtype} {value.shape}, expected {want.dtype} {want.shape}"
                )
            # State too: a NaN running statistic or normalization scale predicts NaN silently.
            if value.dtype.kind in "fc" and not np.isfinite(value).all():
                raise ModelFormatError(
                    f"{path}: damaged model: layer {i} {key} has NaN or infinite values"
                )
    return weights


def model_from_file(path: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]):
    """The model described by a header (from :func:`read_header`) with the file's weights."""
    from deepnet.core.model import Model

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
    except DeepnetError as exc:
        raise ModelFormatError(f"{path}: damaged model header: {exc}") from None
    except Exception as exc:  # a component given values it cannot take; named with its type
        raise ModelFormatError(
            f"{path}: damaged model header ({type(exc).__name__}: {exc})"
        ) from None
    model.set_weights(_layer_weights(path, model, arrays))
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{path}: damaged model header (meta is not an object)")
    model.meta = meta
    return model


def load_model(path: str | Path):
    """Read a model written by :func:`save_model` (a checkpoint loads as its model too).

    Every problem with the file is a :class:`ModelFormatError` naming it; a component whose
    plugin is missing is named with the distribution to install.
    """
    path = Path(path)
    header, arrays = read_header(path)
    return model_from_file(path, header, arrays)
