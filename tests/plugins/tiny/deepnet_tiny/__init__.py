"""A test plugin: one activation, registered through a real entry point."""

import attrs

from deepnet import Activation, hookimpl


@attrs.define
class Cube(Activation):
    """z ** 3."""

    def forward(self, z):
        return z * z * z

    def derivative(self, z, a):
        return 3 * z * z


@hookimpl
def deepnet_register_activations(register):
    register(Cube, name="tiny_cube")
