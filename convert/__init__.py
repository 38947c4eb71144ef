"""deploykit's converter: Keras model -> TFJS + TFLite bundle with a manifest and golden data."""

from edge import __version__

__all__ = ["__version__"]
