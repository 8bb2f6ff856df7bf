"""The pluggy hook specifications of deepnet: one ``register`` hook per component kind.

Each hook receives ``register(factory, name=None)``; the core, not the plugin, owns naming,
collisions and provenance. ``factory`` is usually an attrs class whose fields are its
hyperparameters (a recipe is registered as an instance); ``name`` defaults to the factory's
``name`` attribute or its snake-cased name.
"""

import pluggy

hookspec = pluggy.HookspecMarker("deepnet")
hookimpl = pluggy.HookimplMarker("deepnet")


@hookspec
def deepnet_register_layers(register):
    """Register layer factories: ``register(Dense)``."""


@hookspec
def deepnet_register_activations(register):
    """Register activation factories: ``register(Sigmoid, name="sigmoid")``."""


@hookspec
def deepnet_register_losses(register):
    """Register loss factories."""


@hookspec
def deepnet_register_optimizers(register):
    """Register optimizer factories."""


@hookspec
def deepnet_register_regularizers(register):
    """Register regularizer (and constraint) factories."""


@hookspec
def deepnet_register_initializers(register):
    """Register weight initializer factories."""


@hookspec
def deepnet_register_schedules(register):
    """Register learning-rate schedule factories."""


@hookspec
def deepnet_register_callbacks(register):
    """Register training callback factories (early stopping, checkpoints, logging)."""


@hookspec
def deepnet_register_recipes(register):
    """Register training recipes, as instances: ``register(recipe)`` (named by ``recipe.name``)."""
