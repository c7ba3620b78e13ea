"""The package version: one leaf module that :mod:`skfwp` and the model files read."""

__version__ = "0.1.0"
