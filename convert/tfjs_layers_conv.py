"""TFJS layers-model writers for convolutions, padding and pooling: Conv1D (causal rewritten as an exact 'same'),
Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, ZeroPadding2D,
UpSampling2D (nearest) and the (global) poolings."""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.tfjs_layer_config import (
    LayerOut, Translator, activation, base, initializer, kernel_weights, no_regularizers, require, to_numpy,
)


def _conv_common(class_name: str, cfg: dict[str, Any], layer: Any, notes: list[str], rank: int) -> dict[str, Any]:
    """The config keys every TFJS convolution reads (BaseConv): kernel size, strides, padding, activation, bias."""
    where = f"{class_name} {cfg['name']!r}"
    require(int(cfg.get("groups", 1)) == 1, f"{where} uses groups != 1, which TFJS 4.22 convolutions lack")
    require(getattr(layer, "quantization_mode", None) is None, f"{where} is quantized")
    require(cfg.get("padding", "valid") in ("valid", "same"),
             f"{where} uses padding {cfg.get('padding')!r}: TFJS 4.22 reads it but throws "
             "NotImplementedError when the convolution runs")
    no_regularizers(cfg, notes)
    return base(cfg) | {
        "kernel_size": list(cfg["kernel_size"]),
        "strides": list(cfg.get("strides", [1] * rank)),
        "padding": cfg.get("padding", "valid"),
        "data_format": cfg.get("data_format") or "channels_last",
        "dilation_rate": list(cfg.get("dilation_rate", [1] * rank)),
        "activation": activation(cfg.get("activation", "linear"), where),
        "use_bias": bool(cfg.get("use_bias", True)),
        "bias_initializer": initializer(cfg.get("bias_initializer"), notes),
    }


def _causal_as_same(layer: Any, cfg: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """A causal Conv1D as a 'same' Conv1D of kernel 2k-1 whose last k-1 taps are zero.

    'same' pads (2k-2)·d zeros, half on each side; with the right half of the kernel zero, output t sums
    w[j]·x[t - (k-1-j)·d] for j < k, which is exactly the causal convolution (the zero taps add exact zeros).
    Only for stride 1 (with a stride, 'same' pads unevenly). Raises Skip otherwise.
    """
    where = f"Conv1D {cfg['name']!r}"
    require(list(cfg.get("strides", [1])) == [1], f"{where} uses padding 'causal' with strides "
             f"{list(cfg.get('strides'))}: TFJS 4.22 throws NotImplementedError on causal padding, and the "
             "kit's rewrite as 'same' padding is exact only for stride 1")
    kernel = to_numpy(layer.kernel)
    k = kernel.shape[0]
    widened = np.concatenate([kernel, np.zeros((k - 1, *kernel.shape[1:]), np.float32)], axis=0)
    notes.append(f"{where} (padding 'causal') written as padding 'same' with kernel {2 * k - 1} whose last "
                 f"{k - 1} taps are zero (TFJS 4.22 cannot run causal padding; same function)")
    return {**cfg, "padding": "same", "kernel_size": [2 * k - 1]}, widened


def _conv(class_name: str, rank: int) -> Translator:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        kernel = None
        if class_name == "Conv1D" and cfg.get("padding") == "causal":
            cfg, kernel = _causal_as_same(layer, cfg, notes)
        out = _conv_common(class_name, cfg, layer, notes, rank) | {
            "filters": int(cfg["filters"]),
            "kernel_initializer": initializer(cfg.get("kernel_initializer"), notes),
        }
        weights = kernel_weights(layer, out["use_bias"])
        if kernel is not None:
            weights[0] = ("kernel", kernel)
        return class_name, out, weights

    return translate


def _conv_transpose(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Conv2DTranspose: same kernel layout (kh, kw, filters, in); TFJS has no output_padding and no dilation."""
    where = f"Conv2DTranspose {cfg['name']!r}"
    require(cfg.get("output_padding") is None, f"{where} sets output_padding, which TFJS 4.22's "
                                                "Conv2DTranspose lacks")
    require(list(cfg.get("dilation_rate", [1, 1])) == [1, 1],
             f"{where} uses dilation_rate {list(cfg['dilation_rate'])}, which TFJS 4.22's Conv2DTranspose lacks")
    out = _conv_common("Conv2DTranspose", cfg, layer, notes, 2) | {
        "filters": int(cfg["filters"]),
        "kernel_initializer": initializer(cfg.get("kernel_initializer"), notes),
    }
    del out["dilation_rate"]
    return "Conv2DTranspose", out, kernel_weights(layer, out["use_bias"])


def _depthwise(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """DepthwiseConv2D: kernel (kh, kw, in, multiplier) as TFJS's ``depthwise_kernel``."""
    where = f"DepthwiseConv2D {cfg['name']!r}"
    # TFJS 4.22's DepthwiseConv2D.call passes dilations=null to tf.depthwiseConv2d: a dilation is ignored.
    require(list(cfg.get("dilation_rate", [1, 1])) == [1, 1],
             f"{where} uses dilation_rate {list(cfg['dilation_rate'])}, which TFJS 4.22's DepthwiseConv2D "
             "ignores (it runs undilated)")
    out = _conv_common("DepthwiseConv2D", cfg, layer, notes, 2) | {
        "depth_multiplier": int(cfg.get("depth_multiplier", 1)),
        "depthwise_initializer": initializer(cfg.get("depthwise_initializer"), notes),
    }
    weights = [("depthwise_kernel", to_numpy(layer.kernel))]
    if out["use_bias"]:
        weights.append(("bias", to_numpy(layer.bias)))
    return "DepthwiseConv2D", out, weights


def _separable(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """SeparableConv2D: depthwise (kh, kw, in, m) and pointwise (1, 1, in·m, filters) kernels, then bias."""
    out = _conv_common("SeparableConv2D", cfg, layer, notes, 2) | {
        "filters": int(cfg["filters"]),
        "depth_multiplier": int(cfg.get("depth_multiplier", 1)),
        "depthwise_initializer": initializer(cfg.get("depthwise_initializer"), notes),
        "pointwise_initializer": initializer(cfg.get("pointwise_initializer"), notes),
    }
    weights = [("depthwise_kernel", to_numpy(layer.depthwise_kernel)), ("pointwise_kernel", to_numpy(layer.pointwise_kernel))]
    if out["use_bias"]:
        weights.append(("bias", to_numpy(layer.bias)))
    return "SeparableConv2D", out, weights


def _zero_padding(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    padding = cfg.get("padding", 1)
    if isinstance(padding, int):
        padding = [[padding, padding], [padding, padding]]
    padding = [[int(p), int(p)] if isinstance(p, int) else [int(v) for v in p] for p in padding]
    return "ZeroPadding2D", base(cfg) | {"padding": padding,
                                          "data_format": cfg.get("data_format") or "channels_last"}, []


def _pool(class_name: str) -> Translator:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        out = base(cfg) | {
            "pool_size": list(cfg["pool_size"]),
            "strides": list(cfg["strides"]) if cfg.get("strides") is not None else None,
            "padding": cfg.get("padding", "valid"),
            "data_format": cfg.get("data_format") or "channels_last",
        }
        return class_name, out, []

    return translate


def _global_pool(class_name: str) -> Translator:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        require(not cfg.get("keepdims"), f"{class_name} {cfg['name']!r} uses keepdims=True, "
                                          f"which TFJS 4.22's {class_name} lacks")
        return class_name, base(cfg) | {"data_format": cfg.get("data_format") or "channels_last"}, []

    return translate


def _upsampling(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """UpSampling2D, nearest only: each pixel repeated ``size`` times, in Keras 3 (``ops.repeat``) and in TFJS
    (``resizeNearestNeighbor`` by a whole factor samples input pixel floor(i / s), the same pixels)."""
    where = f"UpSampling2D {cfg['name']!r}"
    interpolation = cfg.get("interpolation", "nearest")
    require(interpolation == "nearest", f"{where} uses interpolation {interpolation!r}: "
            + _UPSAMPLING_DIFFERS.get(interpolation, "TFJS 4.22's UpSampling2D has nearest and bilinear only"))
    size = cfg.get("size", (2, 2))
    size = [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]
    return "UpSampling2D", base(cfg) | {"size": size, "interpolation": "nearest",
                                        "data_format": cfg.get("data_format") or "channels_last"}, []


# Keras 3 resizes bilinearly with tf.image.resize (half-pixel centers); TFJS 4.22's UpSampling2D calls
# tf.image.resizeBilinear(x, size) with its defaults (alignCorners=false, halfPixelCenters=false).
_UPSAMPLING_DIFFERS = {
    "bilinear": "TFJS 4.22's UpSampling2D resizes without half-pixel centers (output pixel i samples input "
                "i / s; Keras 3 samples (i + 0.5) / s - 0.5), a different function",
}


CONV: dict[str, Translator] = {
    "Conv1D": _conv("Conv1D", 1),
    "Conv2D": _conv("Conv2D", 2),
    "Conv2DTranspose": _conv_transpose,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "ZeroPadding2D": _zero_padding,
    "UpSampling2D": _upsampling,
    **{name: _pool(name) for name in ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")},
    **{name: _global_pool(name) for name in ("GlobalAveragePooling1D", "GlobalAveragePooling2D",
                                             "GlobalMaxPooling1D", "GlobalMaxPooling2D")},
}
