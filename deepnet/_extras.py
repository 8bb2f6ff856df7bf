"""Optional dependencies: import them on demand, or fail with one line saying what to install."""

from __future__ import annotations

import importlib
import sys
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
    # Already imported: two dict look-ups instead of two import_module calls (reading a postal
    # code calls this thousands of times). A module set to None in sys.modules (an import
    # blocked, as tests do) falls through to the import, which fails as it should.
    loaded = sys.modules.get(module)
    if loaded is not None and sys.modules.get(top) is not None:
        return loaded
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
