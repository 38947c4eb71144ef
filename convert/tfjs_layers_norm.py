"""TFJS layers-model writers for the normalizations: Normalization (as an exact BatchNormalization),
BatchNormalization and LayerNormalization.

``Normalization`` becomes a ``BatchNormalization`` with ``moving_mean=mean``,
``moving_variance=max(variance, 1e-14)`` and ``epsilon=1e-30``; that computes
``(x - mean) / max(sqrt(variance), 1e-7)``, exactly what Keras 3 computes in float32 (the inverse,
``invert=True``, uses ``gamma``/``beta`` instead). The epsilon is not 0 because of the webgl backend
(see ``convert.tfjs_layer_config.PAD_EPSILON``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.tfjs_layer_config import (
    KERAS_EPSILON, LayerOut, PAD_EPSILON, PAD_EPSILON_EXACT_ABOVE, Skip, Translator, base, initializer, no_regularizers, require, to_numpy,
)


def _normalization(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Normalization -> BatchNormalization(epsilon=PAD_EPSILON) computing the same affine map."""
    where = f"Normalization {cfg['name']!r}"
    require(getattr(layer, "mean", None) is not None, f"{where} was never adapted")
    axis = tuple(layer.axis) if layer.axis is not None else ()
    mean = to_numpy(layer.mean).astype(np.float64)
    var = to_numpy(layer.variance).astype(np.float64)
    if len(axis) == 1:
        bn_axis = int(axis[0])
        mean, var = mean.reshape(-1), var.reshape(-1)
    elif len(axis) == 0 and mean.size == 1:
        # One mean for everything: per-channel on the last axis, tiled.
        try:
            last = layer.input.shape[-1]
        except (AttributeError, ValueError):
            last = None
        require(last is not None, f"{where} with axis=None needs a known last dimension")
        bn_axis = -1
        mean, var = np.full(last, mean.item()), np.full(last, var.item())
    else:
        raise Skip(f"{where} normalizes over several axes {axis}; TFJS BatchNormalization takes one")
    std = np.maximum(np.sqrt(var.astype(np.float32)), np.float32(KERAS_EPSILON)).astype(np.float32)
    out = base(cfg) | {
        "axis": bn_axis, "momentum": 0.99, "epsilon": PAD_EPSILON,
        "moving_mean_initializer": {"class_name": "Zeros", "config": {}},
        "moving_variance_initializer": {"class_name": "Ones", "config": {}},
    }
    if cfg.get("invert"):
        # y = mean + x * std  ==  (x - 0) / sqrt(1 + 1e-30) * gamma + beta  (1 + 1e-30 == 1)
        out |= {"center": True, "scale": True,
                "beta_initializer": {"class_name": "Zeros", "config": {}},
                "gamma_initializer": {"class_name": "Ones", "config": {}}}
        weights = [("gamma", std), ("beta", mean.astype(np.float32)),
                   ("moving_mean", np.zeros_like(std)), ("moving_variance", np.ones_like(std))]
        notes.append(f"Normalization {cfg['name']!r} (invert=True) written as BatchNormalization "
                     "(gamma=std, beta=mean)")
    else:
        out |= {"center": False, "scale": False}
        floored = np.maximum(var.astype(np.float32), np.float32(KERAS_EPSILON) ** 2)
        weights = [("moving_mean", mean.astype(np.float32)), ("moving_variance", floored)]
        notes.append(f"Normalization {cfg['name']!r} written as BatchNormalization "
                     "(moving_mean=mean, moving_variance=max(variance, 1e-14), epsilon=1e-30)")
    return "BatchNormalization", out, weights


def _batch_norm(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"BatchNormalization {cfg['name']!r}"
    require(not cfg.get("renorm"), f"{where} uses renorm")
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        require(len(axis) == 1, f"{where} normalizes over several axes")
        axis = axis[0]
    no_regularizers(cfg, notes)
    epsilon = float(cfg.get("epsilon", 1e-3))
    moving_variance = to_numpy(layer.moving_variance)
    if epsilon == 0.0 and float(np.min(moving_variance, initial=np.inf)) >= PAD_EPSILON_EXACT_ABOVE:
        epsilon = PAD_EPSILON  # same result in float32; 0 makes the webgl backend compute NaN
        notes.append(f"{where} has epsilon=0; written as {PAD_EPSILON} (same float32 result; "
                     "TFJS webgl computes NaN with 0)")
    out = base(cfg) | {
        "axis": int(axis), "momentum": float(cfg.get("momentum", 0.99)), "epsilon": epsilon,
        "center": bool(cfg.get("center", True)), "scale": bool(cfg.get("scale", True)),
    }
    for key in ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                "moving_variance_initializer"):
        out[key] = initializer(cfg.get(key), notes)
    weights = []
    if out["scale"]:
        weights.append(("gamma", to_numpy(layer.gamma)))
    if out["center"]:
        weights.append(("beta", to_numpy(layer.beta)))
    weights += [("moving_mean", to_numpy(layer.moving_mean)), ("moving_variance", moving_variance)]
    return "BatchNormalization", out, weights


def _layer_norm(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"LayerNormalization {cfg['name']!r}"
    require(not cfg.get("rms_scaling"), f"{where} uses rms_scaling=True, which TFJS 4.22's LayerNormalization lacks")
    no_regularizers(cfg, notes)
    axis = cfg.get("axis", -1)
    out = base(cfg) | {
        "axis": [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis),
        "epsilon": float(cfg.get("epsilon", 1e-3)),
        "center": bool(cfg.get("center", True)), "scale": bool(cfg.get("scale", True)),
        "beta_initializer": initializer(cfg.get("beta_initializer"), notes),
        "gamma_initializer": initializer(cfg.get("gamma_initializer"), notes),
    }
    weights = []
    if out["scale"]:
        weights.append(("gamma", to_numpy(layer.gamma)))
    if out["center"]:
        weights.append(("beta", to_numpy(layer.beta)))
    return "LayerNormalization", out, weights


NORM: dict[str, Translator] = {
    "Normalization": _normalization,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
}
