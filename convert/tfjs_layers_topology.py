"""The TFJS ``model_config`` of a Sequential or Functional Keras 3 model: each layer through its writer (the table
:data:`TRANSLATORS`, gathered from the per-family modules), the Keras 3 ``inbound_nodes`` rewritten in the
Keras 2 form tfjs-layers reads, and masks checked by simulating TFJS's implicit propagation.

Keras 3 records masks explicitly: Embedding(mask_zero=True) adds a ``NotEqual(tokens, 0)`` op node
and each layer whose call takes ``mask`` gets ``mask=<that tensor>``. TFJS has no op nodes and
propagates masks implicitly (Layer.computeMask). The writer drops the NotEqual nodes and checks,
by simulating TFJS's propagation, that every layer sees the mask Keras gave it.
"""

from __future__ import annotations

from typing import Any

from convert.tfjs_layer_config import RNNS, Skip, Translator, UnsupportedLayers, input_layer, require
from convert.tfjs_layers_conv import CONV
from convert.tfjs_layers_core import CORE
from convert.tfjs_layers_norm import NORM
from convert.tfjs_layers_rnn import RNN
from convert.tfjs_layers_wrappers import wrappers
from convert.tfjs_registry import missing_layer_reason

_PLAIN: dict[str, Translator] = {**CORE, **NORM, **CONV, **RNN}
TRANSLATORS: dict[str, Translator] = {**_PLAIN, **wrappers(_PLAIN)}
SUPPORTED_LAYERS: tuple[str, ...] = ("InputLayer", *sorted(TRANSLATORS))


def _keras_tensors(obj: Any) -> list[tuple[str, int, int]]:
    """Every ``__keras_tensor__`` reference in a Keras 3 node's args, in order, as (layer, node, tensor)."""
    found: list[tuple[str, int, int]] = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            name, node, index = obj["config"]["keras_history"]
            return [(name, int(node), int(index))]
        for value in obj.values():
            found += _keras_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            found += _keras_tensors(value)
    return found


_MASK_PASS = {"Dense", "Dropout", "Activation", "ReLU", "BatchNormalization", "Normalization", "PReLU",
              "LayerNormalization"}


_MASK_IGNORED_AT_INFERENCE = {"Dropout", "BatchNormalization"}


_MERGES = {"Concatenate", "Add", "Multiply", "Average", "Maximum", "Minimum"}


def _mask_node_source(entry: dict[str, Any]) -> tuple[str, int, int] | None:
    """The tensor a Keras 3 ``NotEqual(x, 0)`` mask node compares, or None if ``entry`` is not one."""
    if entry.get("class_name") != "NotEqual" or not str(entry.get("module", "")).startswith("keras"):
        return None
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) != 1 or not isinstance(nodes[0], dict):
        return None
    args, kwargs = nodes[0].get("args", []), nodes[0].get("kwargs", {})
    if len(args) != 2 or args[1] != 0 or kwargs or len(_keras_tensors(args[0])) != 1:
        return None
    return _keras_tensors(args[0])[0]


def _mask_step(class_name: str, cfg: dict[str, Any], in_refs: list[tuple[str, int, int]],
               in_masks: list[Any], keras_mask: Any, n_outputs: int) -> list[Any]:
    """TFJS's output masks for one call of a layer. Raises Skip where TFJS and Keras would differ."""
    where = f"{class_name} {cfg.get('name')!r}"
    masked = [m for m in in_masks if m is not None]
    if class_name == "Embedding":
        require(not masked, f"{where} receives a mask")
        return [in_refs[0] if cfg.get("mask_zero") else None]
    if class_name in RNNS:
        require(keras_mask == in_masks[0], f"{where} is given a mask TFJS would not give it")
        seq_mask = in_masks[0] if cfg.get("return_sequences") else None
        return [seq_mask] + [None] * (n_outputs - 1)
    if class_name in _MASK_PASS:
        require(keras_mask is None or class_name in _MASK_IGNORED_AT_INFERENCE,
                 f"{where} uses a mask, which TFJS {class_name} ignores")
        return [in_masks[0]] if in_masks else [None]
    require(not masked and keras_mask is None,
             f"{where} receives a mask (Embedding mask_zero=True), which TFJS {class_name} "
             + ("merges differently" if class_name in _MERGES else "does not support"))
    return [None] * n_outputs


def _inbound_nodes(entry: dict[str, Any], mask_nodes: dict[str, tuple[str, int, int]],
                   masks: dict[tuple[str, int, int], Any]) -> list[list[list[Any]]]:
    """Keras 3 ``inbound_nodes`` -> the Keras 2 ``[[["layer", 0, 0, {}], ...], ...]`` form.

    Also records in ``masks`` the TFJS mask of every output tensor of the layer.
    Raises Skip for calls the layers format cannot express or masks TFJS would treat differently.
    """
    class_name, cfg = entry.get("class_name"), entry.get("config", {})
    name = entry.get("name") or cfg.get("name")
    n_outputs = 1
    if class_name in RNNS and cfg.get("return_state"):
        n_outputs = 3 if class_name == "LSTM" else 2  # output, h (, c)
    out = []
    for node_index, node in enumerate(entry.get("inbound_nodes", [])):
        if isinstance(node, dict) and "args" in node:
            kwargs = dict(node.get("kwargs", {}))
            mask_refs = _keras_tensors(kwargs.pop("mask", None))
            if _keras_tensors(kwargs):
                raise Skip(f"layer {name!r} is called with tensor keyword arguments "
                            f"({', '.join(sorted(kwargs))}), which the layers format cannot express")
            refs = _keras_tensors(node["args"])
        else:  # already Keras 2 style
            mask_refs, refs = [], [tuple(r[:3]) for r in node]
        for ref in refs:
            require(ref[0] not in mask_nodes, f"NotEqual ({ref[0]!r}) is used as a value, not a mask")
        keras_mask = None
        if mask_refs:
            require(len(mask_refs) == 1 and mask_refs[0][0] in mask_nodes,
                     f"layer {name!r} is given a mask that is not an Embedding's mask_zero mask")
            keras_mask = mask_nodes[mask_refs[0][0]]
        in_masks = [masks.get(ref) for ref in refs]
        for index, mask in enumerate(_mask_step(class_name, cfg, refs, in_masks, keras_mask, n_outputs)):
            masks[(name, node_index, index)] = mask
        out.append([[ref[0], ref[1], ref[2], {}] for ref in refs])
    return out


def _flat_refs(struct: Any) -> list[list[Any]]:
    """Flatten Keras 3 ``input_layers``/``output_layers`` (single ref, list, nested, dict) to refs."""
    if isinstance(struct, (list, tuple)) and len(struct) == 3 and isinstance(struct[0], str) \
            and isinstance(struct[1], int):
        return [[struct[0], struct[1], struct[2]]]
    if isinstance(struct, dict):
        return [ref for key in sorted(struct) for ref in _flat_refs(struct[key])]
    if isinstance(struct, (list, tuple)):
        return [ref for item in struct for ref in _flat_refs(item)]
    raise Skip(f"unreadable model inputs/outputs {struct!r}")


def _translate(model: Any, entry: dict[str, Any], notes: list[str],
               weights: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """One Keras 3 layer entry -> (TFJS class name, TFJS config); appends its weights."""
    class_name = entry.get("class_name")
    cfg = entry.get("config", {})
    if class_name == "InputLayer":
        return "InputLayer", input_layer(cfg, notes)
    module = entry.get("module")
    if module is not None and not module.startswith("keras.layers") and class_name not in (
            "Functional", "Sequential", "Model"):
        raise Skip(f"Keras op {cfg.get('name', '?')!r} ({class_name}); TFJS layers models hold "
                    "layers only")
    if entry.get("registered_name") not in (None, class_name):
        raise Skip(f"custom layer {entry['registered_name']} ({cfg.get('name', '?')!r})")
    if class_name in ("Functional", "Sequential", "Model"):
        raise Skip(f"nested model {cfg.get('name', '?')!r} ({class_name}): the kit's writer does not "
                    "flatten nested models yet")
    if class_name not in TRANSLATORS:
        raise Skip(missing_layer_reason(str(class_name), cfg.get("name", "?")))
    layer = model.get_layer(cfg["name"])
    policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    require(policy == "float32", f"{class_name} {cfg['name']!r} uses dtype policy {policy}; "
                                  "TFJS layers models are float32")
    tfjs_class, tfjs_cfg, layer_weights = TRANSLATORS[class_name](layer, cfg, notes)
    for suffix, value in layer_weights:
        weights.append({"name": f"{cfg['name']}/{suffix}", "data": value})
    return tfjs_class, tfjs_cfg


def topology(model: Any, notes: list[str], weights: list[dict[str, Any]]) -> dict[str, Any]:
    """The TFJS ``model_config`` for a Sequential or Functional Keras 3 model.

    Raises UnsupportedLayers listing every layer (or use of one) TFJS cannot load.
    """
    import keras

    config = model.get_config()
    problems: list[str] = []
    if isinstance(model, keras.Sequential):
        entries = list(config.get("layers", []))
        if not entries or entries[0].get("class_name") != "InputLayer":
            shape = config.get("build_input_shape")
            if shape is None:
                raise UnsupportedLayers("TFJS layers model not written: the Sequential model is not "
                                        "built (no input shape); the graph model is still written")
            entries.insert(0, {"class_name": "InputLayer",
                               "config": {"batch_shape": list(shape), "dtype": "float32",
                                          "name": f"{model.name}_input"}})
        layers, mask = [], None
        for entry in entries:
            try:
                tfjs_class, tfjs_cfg = _translate(model, entry, notes, weights)
                layers.append({"class_name": tfjs_class, "config": tfjs_cfg})
                if entry.get("class_name") != "InputLayer":
                    # Keras 3 hands each layer the propagated mask, as TFJS does.
                    keras_mask = mask if entry.get("class_name") in RNNS else None
                    mask = _mask_step(entry["class_name"], entry.get("config", {}), [("seq", 0, 0)],
                                      [mask], keras_mask, 1)[0]
            except Skip as skip:
                problems.append(str(skip))
        _raise_if(problems)
        return {"class_name": "Sequential", "config": {"name": model.name, "layers": layers}}

    if "layers" not in config or "input_layers" not in config:
        raise UnsupportedLayers(f"TFJS layers model not written: {type(model).__name__} is a "
                                "subclassed model with no layer graph; the graph model is still written")
    mask_nodes = {entry["name"]: src for entry in config["layers"]
                  if (src := _mask_node_source(entry)) is not None}
    masks: dict[tuple[str, int, int], Any] = {}
    layers = []
    for entry in config["layers"]:
        name = entry.get("name") or entry.get("config", {}).get("name")
        if name in mask_nodes:
            continue
        try:
            tfjs_class, tfjs_cfg = _translate(model, entry, notes, weights)
            nodes = _inbound_nodes(entry, mask_nodes, masks)
            layers.append({"class_name": tfjs_class, "config": tfjs_cfg, "name": name,
                           "inbound_nodes": nodes})
        except Skip as skip:
            problems.append(str(skip))
    try:
        inputs, outputs = _flat_refs(config["input_layers"]), _flat_refs(config["output_layers"])
        for ref in outputs:
            require(ref[0] not in mask_nodes, f"NotEqual ({ref[0]!r}) is a model output")
    except Skip as skip:
        problems.append(str(skip))
    _raise_if(problems)
    if isinstance(config["output_layers"], dict):
        notes.append("outputs are a dict; the layers model returns them as a list in sorted key order")
    return {"class_name": "Model",
            "config": {"name": model.name, "layers": layers,
                       "input_layers": inputs, "output_layers": outputs}}


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise UnsupportedLayers("TFJS layers model not written: " + "; ".join(problems)
                                + "; the graph model is still written")
