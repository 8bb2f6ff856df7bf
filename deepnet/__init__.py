"""deepnet: a small, plugin-based deep-learning framework in numpy."""

__version__ = "0.1.0"
