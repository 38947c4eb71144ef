"""deploykit's edge runner: serves TFLite artifacts of a deploykit bundle without TensorFlow."""

from importlib.metadata import PackageNotFoundError, version as _version

try:  # the one version of the kit, as installed (pyproject.toml's); convert takes it from here
    __version__ = _version("deploykit")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
