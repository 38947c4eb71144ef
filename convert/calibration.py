"""Data-aware int8 weight rounding (GPTQ) for the quantized variants.

The TFLite converter rounds each weight to the nearest point of its int8 grid (per output channel,
symmetric, scale ``max|w| / 127``). Rounding to nearest is optimal weight by weight, not for the
layer's output: the errors of one output channel add up over its inputs. GPTQ (Frantar et al.,
2022; OBQ) rounds the weights of a channel one at a time and moves the error of each onto the
weights not rounded yet, weighted by the layer's input statistics ``X^T X`` on calibration data, so
the channel's output error on that data is what shrinks.

:func:`round_weights` (called by the rounding stage, ``convert.rounding``) writes the rounded weights (float32 values on the int8 grid, each channel's
largest weight kept so the converter derives the same scale) into the model the quantized variants
are converted from. The converter's own rounding then reproduces them exactly; batch normalization
folded into a layer scales whole output channels, which keeps the grid.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

INT8_MAX = 127
ROUNDING_ROWS = 1000  # DATA rows (spread over the file) whose layer inputs drive the rounding
MAX_HESSIAN_ROWS = 200_000  # layer-input rows (conv patches) used per layer; a seeded sample beyond that
MAX_PROBE_VALUES = 50_000_000  # float32 values of one layer's input held at once (200 MB)
DAMPING = 0.01  # of the mean diagonal of X^T X, as in GPTQ


def gptq_round(weights: np.ndarray, inputs: np.ndarray, damping: float = DAMPING) -> np.ndarray:
    """Round ``weights`` (d_in, d_out) onto the per-column symmetric int8 grid for inputs (n, d_in).

    Returns float64 weights on the grid ``q * max|w_col| / 127`` with integer ``|q| <= 127``; each
    column keeps its largest weight at ``±127`` so the grid's scale is unchanged.
    """
    w = np.array(weights, dtype=np.float64)
    d_in, d_out = w.shape
    scale = np.abs(w).max(axis=0) / INT8_MAX
    scale = np.where(scale > 0, scale, 1.0)
    x = np.asarray(inputs, dtype=np.float64).reshape(-1, d_in)
    h = x.T @ x / max(len(x), 1)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h += damping * float(np.mean(np.diag(h))) * np.eye(d_in)
    order = np.argsort(-np.diag(h), kind="stable")  # the most active inputs first ("act-order")
    w_perm = w[order]
    h_inv = np.linalg.cholesky(np.linalg.inv(h[np.ix_(order, order)])).T  # upper Cholesky factor of H^-1
    q = np.zeros_like(w_perm)
    for i in range(d_in):
        q[i] = np.clip(np.round(w_perm[i] / scale), -INT8_MAX, INT8_MAX)
        err = (w_perm[i] - q[i] * scale) / h_inv[i, i]
        w_perm[i + 1:] -= np.outer(h_inv[i, i + 1:], err)
    out = np.empty_like(q)
    out[order] = q
    # keep each column's scale: its largest original weight stays at +-127
    for j in np.nonzero(np.abs(out).max(axis=0) < INT8_MAX)[0]:
        i = int(np.argmax(np.abs(w[:, j])))
        out[i, j] = np.sign(w[i, j]) * INT8_MAX
    return out * scale


def _roundable(layer: Any) -> str | None:
    import keras

    if getattr(layer, "quantization_mode", None) is not None or getattr(layer, "lora_enabled", False):
        return None
    if type(layer) is keras.layers.Dense:
        return "dense"
    if type(layer) is keras.layers.Conv2D and layer.groups == 1 and layer.data_format == "channels_last":
        return "conv2d"
    return None


def _patches(x: np.ndarray, layer: Any) -> np.ndarray:
    """im2col of a channels_last Conv2D input: (rows, kh*kw*cin) in the kernel's (kh, kw, cin) order."""
    import tensorflow as tf

    kh, kw, cin, _ = layer.kernel.shape
    patches = tf.image.extract_patches(
        tf.constant(x, dtype=tf.float32), sizes=[1, kh, kw, 1], strides=[1, *layer.strides, 1],
        rates=[1, *layer.dilation_rate, 1], padding=layer.padding.upper())
    return patches.numpy().reshape(-1, kh * kw * cin)


def round_weights(model: Any, inputs: Sequence[np.ndarray], seed: int = 0) -> list[str]:
    """GPTQ-round the kernels of ``model``'s Dense and Conv2D layers in place, first layer first.

    ``inputs`` are the model's inputs (in ``model.inputs`` order) on calibration rows; each layer's
    input statistics come from the model with the earlier layers already rounded. A layer called
    more than once (shared) is left as it is. Returns the names of the rounded layers.
    """
    import keras

    from convert.keras_graph import call_counts, graph_nodes

    nodes = graph_nodes(model) or []
    calls = call_counts(nodes)
    targets = [node for node in nodes
               if _roundable(node.operation) and calls[id(node.operation)] == 1 and len(node.input_tensors) == 1]
    rng = np.random.default_rng(seed)
    total = len(inputs[0])
    rounded = []
    for node in targets:
        layer = node.operation
        tensor = node.input_tensors[0]
        per_row = int(np.prod([d or 1 for d in tensor.shape[1:]]))
        rows = np.arange(total)
        if total * per_row > MAX_PROBE_VALUES:  # big feature maps: a seeded subset of the rows
            rows = np.sort(rng.choice(total, max(1, MAX_PROBE_VALUES // per_row), replace=False))
        feed = [np.asarray(a)[rows] for a in inputs]
        try:
            probe = keras.Model(model.inputs, tensor)
            x = np.asarray(probe.predict(feed if len(feed) > 1 else feed[0], batch_size=256, verbose=0),
                           dtype=np.float32)
            if _roundable(layer) == "conv2d":
                x = _patches(x, layer)
            x = x.reshape(-1, x.shape[-1])
            if len(x) > MAX_HESSIAN_ROWS:
                x = x[rng.choice(len(x), MAX_HESSIAN_ROWS, replace=False)]
            kernel = np.asarray(layer.kernel, dtype=np.float64)
            flat = gptq_round(kernel.reshape(-1, kernel.shape[-1]), x)
        except (ValueError, np.linalg.LinAlgError):  # no probe for this tensor, or singular statistics
            continue  # the converter then rounds this layer to nearest, as it always did
        layer.kernel.assign(flat.reshape(kernel.shape).astype(np.float32))
        rounded.append(layer.name)
    return rounded
