"""deploykit's converter: Keras model -> TFJS + TFLite bundle with a manifest and golden data."""

__version__ = "0.1.0"
