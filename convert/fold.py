"""The int8 fix: fold per-feature standardisation into the model's first layer.

A tabular input holds features whose ranges differ ~100x; full-integer quantization gives that tensor
one scale, so the small-range features are lost. For the quantized variants the kit builds a model that
takes standardised inputs ``z = (x - mean) / std`` and folds the inverse affine into the first layer's
weights, so no quantized tensor ever holds raw, mixed-range features. The runner applies the
standardisation (``edge.transform``) before inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Fold:
    """A folded model and the input transforms the runner must apply to feed it."""

    model: Any
    transforms: list[dict[str, Any]]
    note: str


def standardization(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (float64) of a 2-D array; a zero std becomes 1."""
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def _consumers(model: Any, tensor: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            if any(t is tensor for t in node.input_tensors):
                found.append(layer)
    return found


def fold_inputs(model: Any, data: dict[str, np.ndarray]) -> Fold | None:
    """Build the folded model for every rank-2 float input consumed by one Normalization or Dense layer.

    Returns None when no input can be folded (the quantized variants then take raw inputs).
    """
    import keras

    plans = []
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        if len(tensor.shape) != 2 or "float" not in str(tensor.dtype) or name not in data:
            continue
        consumers = _consumers(model, tensor)
        if len(consumers) != 1 or not isinstance(consumers[0], (keras.layers.Normalization, keras.layers.Dense)):
            continue
        layer = consumers[0]
        if isinstance(layer, keras.layers.Dense) and not layer.use_bias:
            continue
        if isinstance(layer, keras.layers.Normalization) and getattr(layer, "input_mean", None) is not None:
            continue  # constants from the constructor, not variables: nothing to fold into
        mean, std = standardization(np.asarray(data[name], dtype=np.float64))
        plans.append((name, layer.name, mean, std))
    if not plans:
        return None

    folded = keras.models.clone_model(model)
    folded.set_weights(model.get_weights())
    transforms = []
    for input_name, layer_name, mean, std in plans:
        layer = folded.get_layer(layer_name)
        if isinstance(layer, keras.layers.Normalization):
            # (x - m) / sqrt(v) with x = z*std + mean  ==  (z - (m - mean)/std) / (sqrt(v)/std)
            m = np.asarray(layer.adapt_mean, dtype=np.float64).reshape(-1)
            v = np.asarray(layer.adapt_variance, dtype=np.float64).reshape(-1)
            layer.adapt_mean.assign(((m - mean) / std).reshape(layer.adapt_mean.shape).astype(np.float32))
            layer.adapt_variance.assign((v / std**2).reshape(layer.adapt_variance.shape).astype(np.float32))
            layer.finalize_state()
        else:
            # z*std + mean through W, b  ==  z through diag(std) W, b + mean W
            w = np.asarray(layer.kernel, dtype=np.float64)
            b = np.asarray(layer.bias, dtype=np.float64)
            layer.kernel.assign((w * std[:, None]).astype(np.float32))
            layer.bias.assign((b + mean @ w).astype(np.float32))
        transforms.append({
            "kind": "standardize", "input": input_name,
            "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        })
    folded_layers = ", ".join(p[1] for p in plans)
    return Fold(model=folded, transforms=transforms,
                note=f"per-feature input scaling (folded into {folded_layers})")
