"""Model inputs from files: pictures of digits prepared the way MNIST's were, and ``.npy`` arrays.

MNIST digits are light ink on a dark background, cropped to their bounding box, scaled to fit
20×20 keeping the aspect ratio (anti-aliased), and pasted into 28×28 with their center of mass
at the center. :func:`mnist_digit` does the same to any grayscale picture, so photos and
drawings (either polarity, any size) look like what the model was trained on. Pixel values stay
in 0..255 here; :func:`deepnet.core.data.normalize_pixels` then applies the model's training
normalization.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepnet._extras import MissingExtraError, require
from deepnet.core.errors import DataFormatError, DeepnetError

SIDE = 28  # the canvas
BOX = 20  # the digit's bounding box is scaled to fit this
#: Ink below this fraction of the darkest stroke does not count for the bounding box: it keeps
#: paper texture and JPEG noise from widening the crop.
INK_THRESHOLD = 0.1
#: A picture whose ink is fainter than this (out of 255) has no digit on it.
MIN_CONTRAST = 16.0


def mnist_digit(gray: Any) -> np.ndarray:
    """A grayscale picture ``(H, W)`` (0..255, any polarity) as a 28×28 MNIST-style digit.

    Returns float32 in 0..255, light on dark. Raises :class:`DeepnetError` for a blank picture.
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2 or g.size == 0:
        raise DeepnetError(f"expected a 2-D grayscale picture, got shape {g.shape}")
    # The border is mostly background even when the digit touches an edge.
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    background = float(np.median(border))
    if background > 127.5:  # dark on light: invert to MNIST's light on dark
        g, background = 255.0 - g, 255.0 - background
    return ink_digit(np.clip(g - background, 0.0, None))


def ink_digit(ink: np.ndarray) -> np.ndarray:
    """Ink ``(H, W)`` (light on a background of 0, float64) as a 28×28 MNIST-style digit.

    :func:`mnist_digit` after the background is found; for callers that already hold ink, as
    :func:`deepnet.postal.piece_digit` does for every candidate digit. Returns float32 in
    0..255. Raises :class:`DeepnetError` for ink fainter than :data:`MIN_CONTRAST`.
    """
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DeepnetError("no digit found: the picture is blank or has almost no contrast")
    ink = ink * (255.0 / peak)  # a grey pencil stroke on grey paper becomes full-contrast
    inked = ink > INK_THRESHOLD * 255
    rows = np.flatnonzero(inked.any(axis=1))
    cols = np.flatnonzero(inked.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    digit = _fit_box(crop)
    return _center_of_mass_paste(digit)


def _fit_box(crop: np.ndarray) -> np.ndarray:
    pil = require("PIL.Image")
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resampling = getattr(pil, "Resampling", pil)  # Pillow < 9.1 has the constants on Image
    # Raw bytes in and out: Image.fromarray and np.asarray(image) go through the array
    # interface, which costs more than the resize of a digit-sized crop.
    image = pil.frombytes("F", (w, h), crop.astype(np.float32).tobytes())
    resized = image.resize(size, resampling.LANCZOS)
    out = np.frombuffer(resized.tobytes(), dtype=np.float32).reshape(size[1], size[0])
    # Lanczos over- and undershoots at edges. np.clip's overhead is most of the time of a
    # clip this small; maximum and minimum give the same values.
    return np.minimum(np.maximum(out, 0.0), 255.0).astype(np.float64)


def _center_of_mass_paste(digit: np.ndarray) -> np.ndarray:
    h, w = digit.shape
    total = digit.sum()
    cy = (digit.sum(axis=1) @ np.arange(h)) / total
    cx = (digit.sum(axis=0) @ np.arange(w)) / total
    # MNIST's centers of mass sit at index 14.0 (measured on the training set), not 13.5.
    top = min(max(round(SIDE / 2 - cy), 0), SIDE - h)
    left = min(max(round(SIDE / 2 - cx), 0), SIDE - w)
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    canvas[top : top + h, left : left + w] = digit
    return canvas


def read_grayscale(path: str | Path) -> np.ndarray:
    """The picture at ``path`` as a ``(H, W)`` float array in 0..255 (transparency on white)."""
    pil = require("PIL.Image")
    ops = require("PIL.ImageOps")
    try:
        with pil.open(path) as im:
            im = ops.exif_transpose(im)  # phone photos are often stored sideways
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                im = pil.new("RGBA", rgba.size, "white")
                im.alpha_composite(rgba)
            return np.asarray(im.convert("L"), dtype=np.float64)
    except pil.UnidentifiedImageError:
        raise DataFormatError(
            f"{path}: not a picture Pillow can read; use PNG, JPEG, ... or a .npy array"
        ) from None
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot read the picture ({exc})") from None


def load_image(path: str | Path) -> np.ndarray:
    """The digit in the picture at ``path``, as a 28×28 MNIST-style float32 array (0..255)."""
    try:
        return mnist_digit(read_grayscale(path))
    except (DataFormatError, MissingExtraError):
        raise
    except DeepnetError as exc:
        raise DataFormatError(f"{path}: {exc}") from None


def load_npy(path: str | Path, n_features: int = SIDE * SIDE) -> np.ndarray:
    """A ``.npy`` array of shape ``(H, W)``, ``(N, H, W)`` or ``(N, n_features)`` as rows.

    Values are pixels as in the MNIST files (0..255, light on dark, already centred); a float
    array whose maximum is at most 1 is taken to be in 0..1 and scaled to 0..255.
    """
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: not a .npy array ({exc})") from None
    if not isinstance(a, np.ndarray):  # an .npz archive
        a.close()
        raise DataFormatError(f"{path}: an .npz archive, not a .npy array; save with np.save")
    if a.dtype.kind not in "iuf":
        raise DataFormatError(f"{path}: expected numbers, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[0] * a.shape[1] == n_features and a.shape[1] != n_features:
        a = a.reshape(1, n_features)  # one (28, 28) picture
    elif a.ndim == 1 and a.size == n_features:
        a = a.reshape(1, n_features)
    elif a.ndim == 3 and a.shape[1] * a.shape[2] == n_features:
        a = a.reshape(len(a), n_features)
    if a.ndim != 2 or a.shape[1] != n_features:
        side = round(n_features**0.5)
        raise DataFormatError(
            f"{path}: expected an array of shape ({side}, {side}) or (N, {n_features}), "
            f"got {a.shape}"
        )
    was_float = a.dtype.kind == "f"
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise DataFormatError(f"{path}: the array contains NaN or infinite values")
    if was_float and a.size and a.max() <= 1.0:
        a *= 255.0
    return a


# -- inputs normalized as in a model's training ----------------------------------------------


def model_normalization(model: Any, override: str | None = None) -> str:
    """How the model's training inputs were normalized: ``override``, else recorded, else its
    preset's, else scale."""
    from deepnet.core.data import NORMALIZATIONS
    from deepnet.recipes import get_recipe

    if override:
        return override
    data = model.meta.get("data") or {}
    if data.get("normalize") in NORMALIZATIONS:
        return data["normalize"]
    try:
        return get_recipe(str(model.meta.get("recipe") or "")).normalize
    except DeepnetError:  # no recipe recorded, or its plugin is gone
        return "scale"


def recorded_data_dir(model: Any) -> str | None:
    """The IDX directory the model was trained on (None: the bundled MNIST), if still there."""
    recorded = (model.meta.get("data") or {}).get("data_dir")
    if recorded and not Path(recorded).is_dir():
        raise DeepnetError(
            f"the model was trained on {recorded}, which no longer exists; "
            "give the data again with --data-dir DIR"
        )
    return recorded


def model_normalizer(model: Any, override: str | None = None) -> Callable[[Any], np.ndarray]:
    """Raw pixel rows ``(N, features)`` (0..255) -> the model's inputs, as in its training.

    A model with a ``normalize`` layer takes the raw pixels as they are; for an older one the
    recorded method is applied, with statistics of its training images for "standardize".
    """
    from deepnet.core.data import load_idx_dir, normalize_pixels, pixel_stats
    from deepnet.datasets import MNIST_DIR

    # Augmentation layers take pixels too, but pass them on unchanged at inference.
    first = next((ly for ly in model.layers if not getattr(ly, "inference_identity", 0)), None)
    if first is not None and first.accepts_integers:
        return lambda x: x
    method = model_normalization(model, override)
    stats = None
    if method == "standardize":
        directory = recorded_data_dir(model) or MNIST_DIR
        stats = pixel_stats(load_idx_dir(directory, normalize="none", dtype="uint8").x_train)
    return lambda x: normalize_pixels(x, method, stats, dtype=model.dtype)
