"""Reading and copying a Keras model's own graph: the helpers the fold, the GPTQ rounding and the
unrolled copy share (``convert.fold``, ``convert.calibration``, the export stage).

Nothing here changes a model in place; :func:`unrolled` returns a copy.
"""

from __future__ import annotations

from typing import Any

MAX_UNROLL_STEPS = 256


def graph_nodes(model: Any) -> list[Any] | None:
    """The nodes of the model's own graph, inputs first (a loaded Sequential's layers also hold nodes
    of older builds, so ``layer._inbound_nodes`` is not the graph); None for a model without one."""
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if not isinstance(by_depth, dict):
        return None
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def readers(nodes: list[Any], tensor: Any) -> list[Any]:
    """The nodes of ``nodes`` that take ``tensor`` as an input."""
    return [node for node in nodes if any(t is tensor for t in node.input_tensors)]


def sole_reader(nodes: list[Any], tensor: Any) -> Any | None:
    """The one node reading ``tensor``, when it reads nothing else and its layer is called once in the graph."""
    found = readers(nodes, tensor)
    if len(found) != 1:
        return None
    node = found[0]
    layer = node.operation
    if len(node.input_tensors) != 1 or sum(1 for n in nodes if n.operation is layer) != 1:
        return None
    return node


def call_counts(nodes: list[Any]) -> dict[int, int]:
    """How many times each layer (by ``id``) is called in the graph."""
    calls: dict[int, int] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
    return calls


def unrolled(model: Any) -> Any | None:
    """A copy of a Keras model with its recurrent layers unrolled, or None (none, or not unrollable).

    Keras 3 runs an RNN as a ``tf.while_loop`` over TensorLists. The TFLite converter lowers those
    to builtins only for a batch of one (``TensorListReserve`` needs a static element shape), and
    TFJS graph models cannot run the loop (``executeAsync``: "Cannot compute the outputs"). With a
    fixed number of time steps, ``unroll=True`` writes the steps out as plain ops: builtins only,
    any batch size, same values. Not done past ``MAX_UNROLL_STEPS`` steps (the graph grows per step).
    """
    import keras

    found = [layer for layer in model.layers
             if "unroll" in layer.get_config() or isinstance(layer, keras.layers.Bidirectional)]
    if not found:
        return None
    nodes = graph_nodes(model) or []
    for layer in found:
        shapes = [tuple(t.shape) for n in nodes if n.operation is layer for t in n.input_tensors[:1]]
        if not shapes or any(len(s) < 3 or s[1] is None or s[1] > MAX_UNROLL_STEPS for s in shapes):
            return None

    def unroll(config: dict[str, Any]) -> dict[str, Any]:
        config = dict(config)
        if "unroll" in config:
            config["unroll"] = True
        for key in ("layer", "backward_layer"):
            if isinstance(config.get(key), dict) and isinstance(config[key].get("config"), dict):
                config[key] = {**config[key], "config": unroll(config[key]["config"])}
        return config

    def clone(layer: Any) -> Any:
        if any(layer is f for f in found):
            return layer.__class__.from_config(unroll(layer.get_config()))
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
