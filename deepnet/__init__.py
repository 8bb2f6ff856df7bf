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

from deepnet.core.components import (
    Activation,
    Callback,
    Initializer,
    Layer,
    Loss,
    Optimizer,
    Regularizer,
    Schedule,
)
from deepnet.core.errors import (
    AmbiguousComponentError,
    DataFormatError,
    DeepnetError,
    DivergenceError,
    ModelFormatError,
    PluginError,
    ShapeError,
    UnknownComponentError,
)
from deepnet.core.hookspecs import hookimpl
from deepnet.core.model import Model
from deepnet.core.plugins import create, get_registry, load_plugins
from deepnet.core.serialization import load_model as load
from deepnet.core.training import History
from deepnet.plugins.layers import Dense, Flatten
from deepnet.sweeps import sweep


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
    "__version__",
    "create",
    "get_registry",
    "hookimpl",
    "load",
    "load_mnist",
    "load_plugins",
    "sweep",
]
