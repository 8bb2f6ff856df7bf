"""Optional dependencies: import them on demand, or fail with one line saying what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from deepnet.core.errors import DeepnetError

# Top-level module -> (extra of deepnet that installs it, its distribution, what needs it).
EXTRAS = {
    "PIL": ("image", "Pillow", "reading images"),
    "matplotlib": ("plot", "matplotlib", "drawing pictures"),
    "distributed": ("sweep", "dask[distributed]", "running sweeps"),
    "scipy": ("image", "scipy", "reading postal codes"),
    "threadpoolctl": ("image", "threadpoolctl", "reading postal codes"),
}


class MissingExtraError(DeepnetError, ImportError):
    """An optional dependency that a requested feature needs is not installed."""


def require(module: str) -> ModuleType:
    """``import module`` (one of :data:`EXTRAS` or a submodule) or raise one line on failure."""
    top = module.partition(".")[0]
    try:
        # The top level first: a submodule already imported says nothing about the package.
        importlib.import_module(top)
        return importlib.import_module(module)
    except ImportError:
        extra, dist, purpose = EXTRAS[top]
        raise MissingExtraError(
            f"{purpose} needs {dist}, which is not installed; "
            f"install it with: pip install 'deepnet[{extra}]'"
        ) from None
