"""The vocabulary each model input declares: the ``input_dim`` of the Embedding its values index.

An input whose values reach an ``Embedding`` unchanged (directly, or through layers that only move values
around: Reshape, Flatten, Permute, RepeatVector, Cropping, Identity, nested models) takes integers from 0 to
``input_dim - 1``; any other value is a gather out of bounds (TFLite: an error; TFJS: a silent zero row)
or a silently truncated fraction. The manifest records ``{"size": input_dim, "layer": name}`` on such an
input, and the edge runner (``edge.inputs.check_vocabulary``) and the page (``web/src/validate.js``)
refuse values outside it. When an input reaches several Embeddings, the smallest ``input_dim`` is kept.
"""

from __future__ import annotations

from typing import Any


def _pass_through() -> tuple[type, ...]:
    """Layers whose outputs are some of their input values, unchanged (so a token id stays a token id)."""
    import keras

    names = ("Reshape", "Flatten", "Permute", "RepeatVector", "Cropping1D", "Cropping2D", "Cropping3D",
             "Identity", "InputLayer")
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


def _consumers(model: Any) -> dict[int, list[tuple[Any, Any]]]:
    """``{id(tensor): [(layer, node), ...]}``: the layer calls of ``model`` that take each tensor."""
    consumers: dict[int, list[tuple[Any, Any]]] = {}
    for layer in getattr(model, "layers", []):
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in getattr(node, "input_tensors", []) or []:
                consumers.setdefault(id(tensor), []).append((layer, node))
    return consumers


def _walk(model: Any, start: Any, depth: int = 0) -> dict[str, Any] | None:
    """The smallest Embedding vocabulary that ``start``'s values reach unchanged inside ``model``, or None."""
    import keras

    through = _pass_through()
    consumers = _consumers(model)
    found: dict[str, Any] | None = None
    seen: set[int] = set()
    todo = [start]
    while todo:
        tensor = todo.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        for layer, node in consumers.get(id(tensor), []):
            here: dict[str, Any] | None = None
            if isinstance(layer, keras.layers.Embedding):
                here = {"size": int(layer.input_dim), "layer": str(layer.name)}
            elif isinstance(layer, through):
                todo.extend(getattr(node, "output_tensors", []) or [])
            elif isinstance(layer, keras.Model) and depth < 8:
                position = [id(t) for t in node.input_tensors].index(id(tensor))
                inner = list(getattr(layer, "inputs", None) or [])
                if position < len(inner):
                    here = _walk(layer, inner[position], depth + 1)
            if here is not None and (found is None or here["size"] < found["size"]):
                found = here
    return found


def vocabularies(model: Any) -> list[dict[str, Any] | None]:
    """One entry per ``model.inputs``: ``{"size": input_dim, "layer": name}`` of the Embedding it indexes, or
    None. Never raises: a model whose graph cannot be walked records no vocabulary."""
    try:
        return [_walk(model, tensor) for tensor in model.inputs]
    except Exception:  # noqa: BLE001 - a private Keras structure changed: record nothing rather than fail convert
        return [None for _ in model.inputs]
