"""deepnet: a small, plugin-based deep-learning framework in numpy.

Quick start::

    from deepnet import Model, Dense, load_mnist
    data = load_mnist()
    model = Model([Dense(128, "relu", init="he_normal"), Dense(10, "softmax")])
    model.fit(data.x_train, data.y_train, epochs=5, optimizer="sgd", lr=0.1)
    model.evaluate(data.x_test, data.y_test)
    model.save("digits.npz"); model = deepnet.load("digits.npz")
"""

__version__ = "0.1.0"

from deepnet.core.components import (  # noqa: E402
    Activation,
    Callback,
    Initializer,
    Layer,
    Loss,
    Optimizer,
    Regularizer,
    Schedule,
)
from deepnet.core.errors import (  # noqa: E402
    AmbiguousComponentError,
    DataFormatError,
    DeepnetError,
    DivergenceError,
    ModelFormatError,
    PluginError,
    ShapeError,
    UnknownComponentError,
)
from deepnet.core.hookspecs import hookimpl  # noqa: E402
from deepnet.core.model import Model  # noqa: E402
from deepnet.core.plugins import create, get_registry, load_plugins  # noqa: E402
from deepnet.core.serialization import load_model as load  # noqa: E402
from deepnet.core.training import History  # noqa: E402
from deepnet.plugins.layers import Dense, Flatten  # noqa: E402


def load_mnist(**kwargs):
    """The bundled MNIST (offline); see :func:`deepnet.datasets.load_mnist`."""
    from deepnet.datasets import load_mnist as _load

    return _load(**kwargs)


__all__ = [
    "Activation",
    "AmbiguousComponentError",
    "Callback",
    "DataFormatError",
    "DeepnetError",
    "Dense",
    "DivergenceError",
    "Flatten",
    "History",
    "Initializer",
    "Layer",
    "Loss",
    "Model",
    "ModelFormatError",
    "Optimizer",
    "PluginError",
    "Regularizer",
    "Schedule",
    "ShapeError",
    "UnknownComponentError",
    "create",
    "get_registry",
    "hookimpl",
    "load",
    "load_mnist",
    "load_plugins",
    "__version__",
]
