"""TFJS layers-model writers for the core layers: Dense, Embedding, Dropout, Flatten, Reshape, Rescaling, the
merges and the activation layers (Activation, Softmax, ReLU, LeakyReLU, PReLU, ELU)."""

from __future__ import annotations

from typing import Any

from convert.tfjs_layer_config import (
    LayerOut, Translator, activation, base, initializer, kernel_weights, no_regularizers, require, to_numpy,
    units_config,
)


def _dense(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"Dense {cfg['name']!r}"
    require(getattr(layer, "quantization_mode", None) is None, f"{where} is quantized")
    no_regularizers(cfg, notes)
    out = units_config(cfg, where, notes, "linear")
    weights = kernel_weights(layer, out["use_bias"])
    return "Dense", out, weights


def _embedding(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"Embedding {cfg['name']!r}"
    require(getattr(layer, "quantization_mode", None) is None, f"{where} is quantized")
    no_regularizers(cfg, notes)
    out = base(cfg) | {
        "input_dim": int(cfg["input_dim"]), "output_dim": int(cfg["output_dim"]),
        "embeddings_initializer": initializer(cfg.get("embeddings_initializer"), notes),
        "mask_zero": bool(cfg.get("mask_zero", False)),
    }
    return "Embedding", out, [("embeddings", to_numpy(layer.embeddings))]


def _dropout(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    out = base(cfg) | {"rate": float(cfg.get("rate", 0.0)), "noise_shape": cfg.get("noise_shape"),
                        "seed": cfg.get("seed")}
    return "Dropout", out, []


def _flatten(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    return "Flatten", base(cfg) | {"data_format": cfg.get("data_format") or "channels_last"}, []


def _reshape(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    return "Reshape", base(cfg) | {"target_shape": list(cfg["target_shape"])}, []


def _rescaling(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Rescaling: x·scale + offset in float32 (TFJS casts its input to float32 first, as Keras does)."""
    where = f"Rescaling {cfg['name']!r}"
    scale, offset = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
    require(all(isinstance(v, (int, float)) for v in (scale, offset)),
             f"{where} has a per-channel scale or offset; the kit's writer handles scalars only")
    return "Rescaling", base(cfg) | {"scale": float(scale), "offset": float(offset)}, []


def _merge(class_name: str) -> Translator:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        out = base(cfg)
        if class_name == "Concatenate":
            out["axis"] = int(cfg.get("axis", -1))
        return class_name, out, []

    return translate


def _activation_layer(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"Activation {cfg['name']!r}"
    return "Activation", base(cfg) | {"activation": activation(cfg.get("activation"), where)}, []


def _softmax(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        require(len(axis) == 1, f"Softmax {cfg['name']!r} over several axes")
        axis = axis[0]
    rank = _input_rank(layer)
    if rank is not None:  # TFJS 4.22 refuses it at run time: "Softmax along a non-last dimension is not yet supported"
        require(int(axis) % rank == rank - 1, f"Softmax {cfg['name']!r} over axis {axis} of a rank-{rank} input "
                                             "(TFJS runs softmax over the last axis only)")
    return "Softmax", base(cfg) | {"axis": int(axis)}, []


def _input_rank(layer: Any) -> int | None:
    """The rank of a layer's (one) input, batch included; None when it has several or none is known."""
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):
        return None
    return len(shape) if isinstance(shape, (tuple, list)) else None


def _relu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"ReLU {cfg['name']!r}"
    require(not cfg.get("negative_slope") and not cfg.get("threshold"),
             f"{where} uses negative_slope/threshold, which TFJS ReLU lacks")
    return "ReLU", base(cfg) | {"max_value": cfg.get("max_value")}, []


def _leaky_relu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    alpha = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return "LeakyReLU", base(cfg) | {"alpha": float(alpha)}, []


def _prelu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    no_regularizers(cfg, notes)
    shared = cfg.get("shared_axes")
    out = base(cfg) | {"alpha_initializer": initializer(cfg.get("alpha_initializer"), notes),
                        "shared_axes": None if shared is None else [int(a) for a in
                                                                    (shared if isinstance(shared, (list, tuple)) else [shared])]}
    return "PReLU", out, [("alpha", to_numpy(layer.alpha))]


def _elu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    alpha = float(cfg.get("alpha", 1.0))
    require(alpha == 1.0, f"ELU {cfg['name']!r} uses alpha={alpha}: TFJS 4.22's ELU layer throws "
                           "NotImplementedError for any alpha but 1")
    return "ELU", base(cfg) | {"alpha": 1.0}, []


CORE: dict[str, Translator] = {
    "Dense": _dense,
    "Embedding": _embedding,
    "Dropout": _dropout,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Rescaling": _rescaling,
    **{name: _merge(name) for name in ("Concatenate", "Add", "Multiply", "Average", "Maximum", "Minimum")},
    "Activation": _activation_layer,
    "Softmax": _softmax,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "PReLU": _prelu,
    "ELU": _elu,
}
