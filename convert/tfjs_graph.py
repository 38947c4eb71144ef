"""The TFJS graph model, converted from the SavedModel: the route that loads in TFJS 4.22."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

from convert import interrupt
from convert.errors import DeployKitError


def write_graph_model(saved_model_dir: Path, out_dir: Path, input_names: Sequence[str] = ()) -> dict[str, Any]:
    """Convert the SavedModel's ``serving_default`` signature to ``out_dir/model.json`` + shards.

    Ops TFJS lacks are first rewritten into ops it has, exactly, in a copy (``convert.tfjs_rewrite``).
    ``input_names`` are the manifest's names of the inputs (the Keras input names); the io map says which
    graph node each one feeds, also when the graph renamed it (``age-years`` is the SavedModel argument
    ``age_years`` and the graph node ``age_years``, ``Zip.Code`` the argument ``Zip_Code`` and the node
    ``zip_code``).

    Returns ``{"files": [...], "io": {"inputs": {name: node}, "outputs": {key: node}}, "notes": [...]}``.

    Raises:
        DeployKitError: the converter fails (an op TFJS lacks, say), with its reason.
        KeyboardInterrupt: a Ctrl+C came during the conversion, also when tensorflowjs swallowed it.
    """
    import tensorflowjs as tfjs

    from convert.tfjs_rewrite import for_tfjs

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with for_tfjs(saved_model_dir) as (source, notes):
            tfjs.converters.convert_tf_saved_model(
                str(source), str(out_dir), signature_def="serving_default", saved_model_tags="serve"
            )
    except DeployKitError:
        raise
    except Exception as exc:
        # tensorflowjs freezes the graph inside `except BaseException` and falls back to the TF1 route, which
        # then fails ("Identity is not in graph"): a Ctrl+C there is a Ctrl+C, not a converter error
        interrupt.check()
        text = " ".join(str(exc).split())[:300]
        raise DeployKitError(f"tensorflowjs cannot convert this model to a graph model: {text}") from None
    interrupt.check()  # the fallback route may also have worked: the user still asked to stop
    topology = json.loads((out_dir / "model.json").read_text(encoding="utf-8"))
    signature = topology.get("signature", {})
    serving = functools.cache(lambda: _serving_function(saved_model_dir))  # loaded once, and only when needed
    outputs = {name: spec["name"] for name, spec in signature.get("outputs", {}).items()}
    if any(":" in name for name in outputs):
        # tensorflowjs names an output by its key only when no other output has the same dtype and shape,
        # else by its tensor name: the serving function's outputs, in key order, say which is which
        by_tensor = dict(_output_keys(serving()).values())
        outputs = {by_tensor.get(node, name): node for name, node in outputs.items()}
    inputs = {name: spec["name"] for name, spec in signature.get("inputs", {}).items()}
    if any(name not in inputs for name in input_names):
        nodes = set(inputs.values())
        by_name = _input_nodes(serving())
        inputs = {name: by_name[name] for name in input_names if by_name.get(name) in nodes} or inputs
    io = {"inputs": inputs, "outputs": outputs}
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return {"files": files, "io": io, "notes": notes}


def _serving_function(saved_model_dir: Path) -> Any:
    """The SavedModel's ``serving_default`` concrete function."""
    import tensorflow as tf

    return tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]


def _input_nodes(function: Any) -> dict[str, str]:
    """``{name: tensor name}`` of the serving function's inputs, by argument key and by the name of the
    argument's TensorSpec (a Keras export keeps the input's own name there; the key is sanitised)."""
    _, kwargs = function.structured_input_signature
    out: dict[str, str] = {}
    for key, tensor in zip(sorted(kwargs), function.inputs):  # tf.nest flattens a dict in sorted key order
        out[key] = tensor.name
        if kwargs[key].name:
            out.setdefault(kwargs[key].name, tensor.name)
    return out


def _output_keys(function: Any) -> dict[str, tuple[str, str]]:
    """``{key: (tensor name, key)}`` of the serving function's outputs (tensor names as a frozen graph keeps them)."""
    keys = sorted(function.structured_outputs)  # the order tf.nest flattens a dict in: the outputs' order
    return {key: (tensor.name, key) for key, tensor in zip(keys, function.outputs)}
