"""Custom Keras layers and functions: found in a ``.keras`` file's config, loaded from the user's own code.

A ``.keras`` file names each object it holds by module and class; Keras rebuilds the ones of its own
packages and, for anything else, needs the Python code. ``needed`` reads ``config.json`` as data (no code
runs) and lists those objects, so that convert refuses a model with custom objects up front, naming them
and the flag, unless ``deploykit convert --custom-objects FILE.py`` is given. Only then is the file imported
(``load_file``: it is the user's code, run because they asked), and only the objects the model names are
handed to Keras, which keeps ``safe_mode`` on (Lambda layers stay refused). The manifest's provenance names
the file, its sha256 and the objects taken from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import re
import sys
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from convert.errors import DeployKitError

FLAG = "--custom-objects"
# the packages Keras itself imports objects from when it deserializes (keras.saving's own rule)
KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp"})
_BUILTIN_MODULES = ("activations", "constraints", "initializers", "losses", "metrics", "optimizers", "regularizers")


@dataclass(frozen=True)
class Needed:
    """One object of a model's config that Keras cannot rebuild from its own packages."""

    key: str     # what Keras looks up: the registered name (classes) or the function's name
    kind: str    # "class" or "function"
    module: str  # the module the object was defined in when the model was saved

    def describe(self) -> str:
        return f"{self.kind} {self.key!r}" + (f" (module {self.module})" if self.module not in ("", "builtins") else "")


def _keras_has_function(name: str) -> bool:
    import keras

    return any(hasattr(getattr(keras, module, None), name) for module in _BUILTIN_MODULES)


def needed(config: Any) -> list[Needed]:
    """The objects of a ``.keras`` config (parsed ``config.json``) that need user code, in first-seen order."""
    found: dict[str, Needed] = {}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        module, class_name = item.get("module"), item.get("class_name")
        if isinstance(module, str) and isinstance(class_name, str):
            package = module.split(".", 1)[0]
            if class_name == "function" and isinstance(item.get("config"), str):
                name = item["config"]
                if package not in KERAS_PACKAGES and not (module == "builtins" and _keras_has_function(name)):
                    found.setdefault(name, Needed(name, "function", module))
            elif package not in KERAS_PACKAGES and module != "builtins":
                key = item.get("registered_name") or class_name
                found.setdefault(str(key), Needed(str(key), "class", module))
        stack.extend(reversed(list(item.values())))
    return list(found.values())


def read_config(path: Path) -> Any:
    """``config.json`` of a ``.keras`` archive (whose sizes ``model_safety.check_keras_archive`` bounded).

    Raises:
        DeployKitError: the member cannot be read or is not JSON.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (KeyError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DeployKitError(f"model {path.name} is a corrupt .keras file (config.json: {str(exc)[:120]}); re-save it") from None


def _names(items: list[Needed]) -> str:
    described = [n.describe() for n in items]
    return described[0] if len(described) == 1 else ", ".join(described[:-1]) + " and " + described[-1]


def missing_message(model: Path, items: list[Needed]) -> str:
    """The refusal for a model with custom objects and no ``--custom-objects``."""
    them = "it" if len(items) == 1 else "them"
    return (f"model {model.name} uses the custom {_names(items)}, which Keras cannot load without {'its' if them == 'it' else 'their'} "
            f"code; pass the Python file that defines {them} with {FLAG} FILE.py")


def load_file(path: Path) -> dict[str, Any]:
    """Import the user's ``--custom-objects`` file (its folder on ``sys.path`` while it runs, so it may import
    its neighbours) and return its public classes and functions by name.

    Raises:
        DeployKitError: the file does not exist, is not a .py file, or raises while it is imported (the
        message gives the exception and the file's line).
    """
    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"{FLAG} {str(path)!r} does not exist; pass the Python file that defines the model's custom layers")
    if path.suffix != ".py":
        raise DeployKitError(f"{FLAG} {path.name} is not a Python file (.py); pass the module that defines the model's custom layers")
    name = "deploykit_custom_objects_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise DeployKitError(f"{FLAG} {path.name} cannot be imported; pass a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined there must be findable by their __module__ (pickling, Keras)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything: one line naming it
        del sys.modules[name]
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        where = f" (line {frames[-1].lineno})" if frames else ""
        text = " ".join(str(exc).split())[:160]
        raise DeployKitError(f"{FLAG} {path.name} failed to import{where}: {type(exc).__name__}: {text}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return {key: value for key, value in vars(module).items()
            if not key.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))}


def prepare(model: Path, custom_file: Path | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What ``keras.models.load_model`` needs for ``model``: ``(custom_objects, provenance)``, both None when
    the model holds no custom object and no file was given.

    Raises:
        DeployKitError: the model holds custom objects and no file was given (naming them and the flag); the
            file cannot be imported (``load_file``); or it does not define an object the model uses.
    """
    items = needed(read_config(model))
    if custom_file is None:
        if items:
            raise DeployKitError(missing_message(model, items))
        return None, None
    defined = load_file(Path(custom_file))
    import keras

    registered = keras.saving.get_custom_objects()  # what the file registered with register_keras_serializable
    objects: dict[str, Any] = {}
    absent: list[Needed] = []
    for item in items:
        short = item.key.split(">")[-1]
        obj = registered.get(item.key) or defined.get(item.key) or defined.get(short)
        if obj is None:
            absent.append(item)
        else:
            objects[item.key] = obj
    if absent:
        raise DeployKitError(f"{FLAG} {Path(custom_file).name} does not define the {_names(absent)} that model "
                             f"{model.name} uses; define or import {'it' if len(absent) == 1 else 'them'} there")
    provenance = {"file": Path(custom_file).name, "sha256": hashlib.sha256(Path(custom_file).read_bytes()).hexdigest(),
                  "objects": sorted(objects)}
    return objects, provenance


@contextlib.contextmanager
def scope(objects: dict[str, Any] | None) -> Iterator[None]:
    """Keras's custom object scope for ``objects`` (nothing when None): the copies convert makes of the model
    (folding, unrolling) rebuild layers from their configs, which name these objects."""
    if not objects:
        yield
        return
    import keras

    with keras.saving.custom_object_scope(objects):
        yield
