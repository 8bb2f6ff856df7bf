"""Built-in recipes: the default digit recognizer and the course notebook's two presets."""

from __future__ import annotations

from deepnet.core.hookspecs import hookimpl
from deepnet.recipes import RECIPES


@hookimpl
def deepnet_register_recipes(register):
    for recipe in RECIPES.values():
        register(recipe)
