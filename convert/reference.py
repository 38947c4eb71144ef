"""Load the source model safely and give one interface to it: specs, predict, SavedModel export.

A ``.keras`` file is loaded with Keras ``safe_mode=True`` (Lambda layers and other arbitrary code are
refused). A SavedModel directory (Keras 3 ``model.export``, or Keras 2 / TF 2.x ``model.export`` as the
course did) is loaded with ``tf.saved_model.load`` and run through its ``serving_default`` signature.
Legacy ``.h5`` files are refused: they cannot be loaded safely. Before anything is inflated or run,
``convert.model_safety`` bounds a ``.keras`` archive's member sizes and refuses a SavedModel whose graph
holds an op outside its allowlist (file, network, process, Python-callback ops).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert import interrupt
from convert.errors import DeployKitError
from convert.model_safety import check_keras_archive, check_saved_model_ops
from convert.refusals import check_signature

SIGNATURE = "serving_default"


@dataclass
class TensorSpec:
    """One model input or output as the manifest records it."""

    name: str
    dtype: str
    shape: list[int | None]
    key: str = ""  # the signature key of an output (``output_0``); equals name for inputs
    vocabulary: dict[str, Any] | None = None  # an input that indexes an Embedding: {"size": n, "layer": name}

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": self.shape}
        if self.vocabulary is not None:
            spec["vocabulary"] = dict(self.vocabulary)
        return spec


@dataclass
class Reference:
    """The reference model: Keras (when the source is ``.keras``) or the SavedModel's signature."""

    source: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    keras_model: Any = None
    _signature: Any = None
    _saved_model_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    custom_objects: dict[str, Any] | None = None  # the user's classes/functions (``--custom-objects``)
    custom_provenance: dict[str, Any] | None = None  # the manifest's provenance.custom_objects

    def objects_scope(self) -> Any:
        """A context in which Keras finds the model's custom objects (for the copies convert makes)."""
        from convert.custom_objects import scope

        return scope(self.custom_objects)

    @property
    def name(self) -> str:
        if self.keras_model is not None:
            return str(self.keras_model.name)
        return self.source.stem if self.source.is_file() else self.source.name

    def predict(self, inputs: dict[str, np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
        """Run the reference model; return ``{output key: float32/float64 array}``."""
        if self.keras_model is not None:
            ordered = [inputs[spec.name] for spec in self.inputs]
            result = self.keras_model.predict(ordered if len(ordered) > 1 else ordered[0], batch_size=batch_size, verbose=0)
            return by_key(result, self.outputs)
        import tensorflow as tf

        feed = {spec.name: tf.constant(inputs[spec.name], dtype=spec.dtype) for spec in self.inputs}
        out = self._signature(**feed)
        return {spec.key: out[spec.key].numpy() for spec in self.outputs}

    def export_saved_model(self, directory: Path) -> Path:
        """A SavedModel of the reference (exported once for Keras; the source dir for SavedModels)."""
        if self.keras_model is None:
            return self.source
        if self._saved_model_dir is None:
            export(self.keras_model, directory)
            self._saved_model_dir = directory
        return self._saved_model_dir


def by_key(result: Any, outputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """A Keras ``predict`` result as ``{output key: array}``: a dict (a model with dict outputs) by its keys,
    which are the outputs' keys; a list or tuple in the order of ``outputs``; a single array as the one output."""
    if isinstance(result, dict):
        return {spec.key: np.asarray(result[spec.key]) for spec in outputs}
    if not isinstance(result, (list, tuple)):
        result = [result]
    return {spec.key: np.asarray(value) for spec, value in zip(outputs, result)}


def export(model: Any, directory: Path) -> Path:
    """Export a Keras model as a SavedModel with a ``serving_default`` signature."""
    model.export(str(directory), format="tf_saved_model", verbose=False)
    return directory


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    return name.replace("tf.", "")


def load(path: Path, custom_objects: Path | None = None) -> Reference:
    """Load MODEL safely; ``custom_objects`` is the user's Python file that defines its custom layers
    (``--custom-objects``, imported only when given: ``convert.custom_objects``).

    Raises:
        DeployKitError: missing path, legacy/unsafe format, corrupt file, Lambda layer, a custom class or
        function without ``--custom-objects`` (naming it), a custom objects file that fails, or a directory
        that is not a SavedModel.
    """
    path = Path(path)
    if not path.exists():
        raise DeployKitError(f"model {str(path)!r} does not exist; pass a .keras file or a SavedModel folder")
    if path.is_dir():
        if custom_objects is not None:
            raise DeployKitError("--custom-objects applies to .keras models only; a SavedModel holds its graph and "
                                 "needs no Python code: drop the flag")
        return _load_saved_model(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        raise DeployKitError(
            f"model {path.name} is a legacy HDF5 file, which cannot be loaded safely; "
            "re-save it in Keras 3 as .keras (model.save('model.keras')) or export a SavedModel"
        )
    if suffix != ".keras":
        raise DeployKitError(
            f"model {path.name} is not a .keras file or a SavedModel folder; deploykit reads only those (for safety)"
        )
    return _load_keras(path, custom_objects)


def _short(text: str, limit: int = 200) -> str:
    """The first line of ``text``, cut at a word boundary when longer than ``limit`` (with an ellipsis)."""
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"


def _load_keras(path: Path, custom_file: Path | None = None) -> Reference:
    check_keras_archive(path)  # sizes from the zip directory, before anything is inflated
    from convert.custom_objects import prepare

    objects, provenance = prepare(path, custom_file)  # custom classes: refused, or taken from the user's file
    import keras

    try:
        with keras.saving.custom_object_scope(objects or {}):
            model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError with long texts
        interrupt.check()  # a Ctrl+C Keras turned into an error is a Ctrl+C
        text = str(exc)
        if isinstance(exc, zipfile.BadZipFile):  # a damaged member (bad CRC), found while Keras reads it
            raise DeployKitError(f"model {path.name} is a corrupt .keras file ({text[:200]}); re-save it") from None
        if "Lambda" in text or "safe_mode" in text or "unsafe" in text.lower():
            raise DeployKitError(
                f"model {path.name} has a Lambda layer (or other embedded code), which Keras refuses under "
                "safe_mode because loading it would run arbitrary code; replace it with built-in or registered "
                "layers and re-save"
            ) from None
        first = _short(text) or type(exc).__name__
        raise DeployKitError(f"model {path.name} could not be loaded by Keras {keras.__version__} ({first})") from None
    inputs = [
        TensorSpec(name=t.name.split(":")[0], dtype=_dtype_name(t.dtype), shape=[None if d is None else int(d) for d in t.shape])
        for t in model.inputs
    ]
    from convert.vocabulary import vocabularies

    for spec, found in zip(inputs, vocabularies(model)):
        spec.vocabulary = found
    names = list(getattr(model, "output_names", None) or [_output_layer_name(t) for t in model.outputs])
    keys = _dict_output_keys(path.name, model)
    outputs = [
        TensorSpec(
            name=keys[i] if keys else str(names[i]).split(":")[0].split("/")[0],
            dtype=_dtype_name(t.dtype),
            shape=[None if d is None else int(d) for d in t.shape],
            key=keys[i] if keys else f"output_{i}",
        )
        for i, t in enumerate(model.outputs)
    ]
    check_signature(path.name, inputs, outputs)  # before anything is exported
    return Reference(source=path, inputs=inputs, outputs=outputs, keras_model=model, custom_objects=objects,
                     custom_provenance=provenance)


def _dict_output_keys(source: str, model: Any) -> list[str] | None:
    """The keys of a model whose outputs are a dict, in the order of ``model.outputs`` (None for a tensor or a
    list). The SavedModel signature keeps them as its output keys (a list's are ``output_0`` ...), and
    ``predict`` returns a dict by them, so they are both the manifest's output names and its keys.

    Raises:
        DeployKitError: the outputs are nested (a dict or list inside the dict or list), which no SavedModel
        signature can hold.
    """
    try:
        structure = model.output
    except Exception:  # noqa: BLE001 - a model Keras cannot say the structure of: treat as a list
        return None
    items = list(structure.items()) if isinstance(structure, dict) else \
        list(enumerate(structure)) if isinstance(structure, (list, tuple)) else []
    for key, value in items:
        if isinstance(value, (dict, list, tuple)):
            raise DeployKitError(f"model {source}: its outputs are nested (output {str(key)!r} is a "
                                 f"{type(value).__name__}), which a SavedModel signature cannot hold; return a flat "
                                 "dict or list of tensors and re-save")
    if not isinstance(structure, dict):
        return None
    by_tensor = {id(tensor): str(key) for key, tensor in structure.items()}
    keys = [by_tensor.get(id(tensor)) for tensor in model.outputs]
    return keys if all(keys) else sorted(by_tensor.values())  # Keras flattens a dict in sorted key order


def _output_layer_name(tensor: Any) -> str:
    """The name of the layer that makes an output (Sequential models have no ``output_names``; their
    tensors are called ``keras_tensor_N``)."""
    history = getattr(tensor, "_keras_history", None)
    layer = history[0] if history else None
    return str(getattr(layer, "name", None) or tensor.name)


def _load_saved_model(path: Path) -> Reference:
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise DeployKitError(
            f"folder {str(path)!r} is not a SavedModel (no saved_model.pb); pass a .keras file or the folder model.export() wrote"
        )
    check_saved_model_ops(path)  # the graph is read as data: nothing in it has run yet
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        interrupt.check()
        first = _short(str(exc)) or type(exc).__name__
        raise DeployKitError(f"SavedModel {str(path)!r} could not be loaded ({first}); re-export it") from None
    signature = loaded.signatures.get(SIGNATURE)
    if signature is None:
        raise DeployKitError(
            f"SavedModel {str(path)!r} has no '{SIGNATURE}' signature; export it with model.export(), which writes one"
        )
    _, kwargs = signature.structured_input_signature
    inputs = [
        TensorSpec(name=name, dtype=spec.dtype.name, shape=[None if d is None else int(d) for d in spec.shape])
        for name, spec in sorted(kwargs.items())
    ]
    outs = signature.structured_outputs
    outputs = [
        TensorSpec(name=key, dtype=spec.dtype.name, shape=[None if d is None else int(d) for d in spec.shape], key=key)
        for key, spec in sorted(outs.items())
    ]
    check_signature(path.name, inputs, outputs)
    ref = Reference(source=path, inputs=inputs, outputs=outputs, _signature=signature)
    ref._keepalive = loaded  # the signature needs its object graph alive
    ref.notes.append("source is a SavedModel: no Keras layers, so no TFJS layers model; the int8 input fold works on "
                     "its graph (convert.fold.fold_saved_model)")
    return ref
