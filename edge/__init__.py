"""deploykit's edge runner: serves TFLite artifacts of a deploykit bundle without TensorFlow."""

__version__ = "0.1.0"
