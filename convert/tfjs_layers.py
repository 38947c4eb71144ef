"""Write a Keras 3 model as a TFJS *layers* model that TFJS 4.22 ``tf.loadLayersModel`` loads.

``tensorflowjs.converters.save_keras_model`` writes Keras 3 configs verbatim, and TFJS 4.22 cannot
read them (``InputLayer`` has ``batch_shape`` instead of ``batch_input_shape``, dtype policies are
dicts, Functional ``inbound_nodes`` use the new ``{"args": ..., "kwargs": ...}`` form, and there
is no ``Normalization`` layer in tfjs-layers). This module rebuilds the topology layer by layer in
the Keras-2 form tfjs-layers reads, from a whitelist of layers whose TFJS implementation computes
the same function, and writes the weights under the names TFJS matches (``<layer>/<weight>``).

``Normalization`` becomes a ``BatchNormalization`` with ``moving_mean=mean``,
``moving_variance=max(variance, 1e-14)`` and ``epsilon=1e-30``; that computes
``(x - mean) / max(sqrt(variance), 1e-7)``, exactly what Keras 3 computes in float32 (the inverse,
``invert=True``, uses ``gamma``/``beta`` instead). The epsilon is not 0 because of the webgl backend
(see ``_PAD_EPSILON``).

Anything outside the whitelist (or a supported class used with an option TFJS lacks, such as
``GRU(reset_after=True)``) raises :class:`UnsupportedLayers`; the caller still writes the graph
model. Nothing happens on import besides defining things; TensorFlow/tensorflowjs are imported by
the caller's model or lazily.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable

import numpy as np

from convert.tfjs_registry import missing_layer_reason

__all__ = ["UnsupportedLayers", "write_layers_model", "SUPPORTED_LAYERS"]

MODEL_FILE = "model.json"

# Keras 3 activation names -> tfjs-layers activation identifiers (python spelling; TFJS camel-cases).
# Left out on purpose: hard_sigmoid (Keras 3: relu6(x+3)/6, TFJS: 0.2x+0.5); gelu (TFJS's erf is
# an approximation: 1.2e-5 relative error measured, over the 1e-5 float32 tolerance); leaky_relu,
# exponential, hard_silu and the rest, which TFJS lacks.
_ACTIVATIONS: dict[str, str] = {
    "linear": "linear",
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "elu": "elu",
    "selu": "selu",
    "softplus": "softplus",
    "softsign": "softsign",
    "silu": "swish",
    "swish": "swish",
    "mish": "mish",
}

# Initializers tfjs-layers knows, with the config keys it reads. Weights are always loaded over
# them, so they only matter if someone trains the model further in the browser.
_INITIALIZERS: dict[str, tuple[str, ...]] = {
    "Zeros": (),
    "Ones": (),
    "Constant": ("value",),
    "RandomUniform": ("minval", "maxval", "seed"),
    "RandomNormal": ("mean", "stddev", "seed"),
    "TruncatedNormal": ("mean", "stddev", "seed"),
    "Identity": ("gain",),
    "VarianceScaling": ("scale", "mode", "distribution", "seed"),
    "GlorotUniform": ("seed",),
    "GlorotNormal": ("seed",),
    "HeNormal": ("seed",),
    "HeUniform": ("seed",),
    "LecunNormal": ("seed",),
    "LecunUniform": ("seed",),
    "Orthogonal": ("gain", "seed"),
}
_INITIALIZER_RENAME = {"LecunNormal": "LeCunNormal", "LecunUniform": "LeCunUniform"}

# Normalization's divisor is max(sqrt(variance), keras.backend.epsilon()); this floor on the
# variance reproduces it inside BatchNormalization (whose epsilon, _PAD_EPSILON, cannot move it).
_KERAS_EPSILON = 1e-7

# The epsilon written where Keras adds none. Not 0: TFJS's webgl backend runs BatchNormalization as
# a packed shader over 2x2 texel blocks, and computes ``inversesqrt(variance + epsilon)`` on the
# padding lanes too, where the variance texture reads 0. With epsilon=0 those lanes hold
# (0 - 0) * inf = NaN, and the next packed MatMul multiplies them by its zero padding (NaN * 0 =
# NaN): every output of the model is NaN whenever the channel count is not even (the Boston MLP's
# 3 features). 1e-30 keeps the padding lanes at 0 and cannot change a real lane: for every
# variance v >= _PAD_EPSILON_EXACT_ABOVE it is under half a float32 ulp of v, so v + 1e-30 == v.
_PAD_EPSILON = 1e-30
_PAD_EPSILON_EXACT_ABOVE = 1e-22  # 1e-30 < v * 2**-25 for every v above this


class UnsupportedLayers(Exception):
    """Raised with a one-line reason naming each layer not written and why (TFJS's limit or the writer's)."""


class _Skip(Exception):
    """One layer cannot be expressed; the message says why (collected into UnsupportedLayers)."""


# --------------------------------------------------------------------------- config helpers


# Activations TFJS 4.22 has under the same name but computes differently (measured or read in its source).
_ACTIVATION_DIFFERS: dict[str, str] = {
    "hard_sigmoid": "TFJS 4.22 computes hardSigmoid as 0.2x + 0.5, Keras 3 as relu6(x + 3) / 6",
    "gelu": "TFJS 4.22's gelu uses its erf approximation (1.2e-5 relative error measured, over the float32 "
            "bound of 1e-5)",
}


def _activation(name: Any, where: str) -> str:
    """Map a Keras 3 activation to TFJS's. Raises _Skip for activations TFJS lacks or computes differently."""
    if isinstance(name, str) and name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    shown = name if isinstance(name, str) else json.dumps(name)
    if isinstance(name, str) and name in _ACTIVATION_DIFFERS:
        raise _Skip(f"{where} uses activation {shown!r}: {_ACTIVATION_DIFFERS[name]}")
    raise _Skip(f"{where} uses activation {shown!r}, which TFJS 4.22 does not have")


def _initializer(cfg: Any, notes: list[str]) -> dict[str, Any]:
    """Translate a Keras 3 initializer dict to the TFJS form (no module/registered_name)."""
    if isinstance(cfg, str):
        cfg = {"class_name": "".join(p.capitalize() for p in cfg.split("_")), "config": {}}
    if not isinstance(cfg, dict) or cfg.get("class_name") not in _INITIALIZERS:
        shown = cfg.get("class_name") if isinstance(cfg, dict) else cfg
        note = f"initializer {shown!r} written as Zeros (weights are loaded over it)"
        if note not in notes:
            notes.append(note)
        return {"class_name": "Zeros", "config": {}}
    name = cfg["class_name"]
    inner = cfg.get("config") or {}
    kept = {k: inner[k] for k in _INITIALIZERS[name] if k in inner}
    return {"class_name": _INITIALIZER_RENAME.get(name, name), "config": kept}


def _base(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"name": cfg["name"], "trainable": bool(cfg.get("trainable", True)), "dtype": "float32"}


def _np(variable: Any) -> np.ndarray:
    """A Keras variable or backend tensor as a float32 numpy array."""
    if hasattr(variable, "numpy"):
        return np.asarray(variable.numpy(), dtype=np.float32)
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise _Skip(reason)


def _no_regularizers(cfg: dict[str, Any], notes: list[str]) -> None:
    keys = [k for k in cfg if k.endswith(("_regularizer", "_constraint")) and cfg[k] is not None]
    if keys:
        note = "regularizers and constraints are dropped (inference only)"
        if note not in notes:
            notes.append(note)


LayerOut = tuple[str, dict[str, Any], list[tuple[str, np.ndarray]]]


# --------------------------------------------------------------------------- per-layer translators


def _input_layer(cfg: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """InputLayer config -> TFJS InputLayer config (``batch_input_shape``)."""
    where = f"InputLayer {cfg['name']!r}"
    _require(not cfg.get("sparse") and not cfg.get("ragged"), f"{where} is sparse or ragged")
    _require(not cfg.get("optional"), f"{where} is optional")
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    _require(shape is not None, f"{where} has no batch shape")
    dtype = str(cfg.get("dtype") or "float32")
    if dtype.startswith(("float", "bfloat")):
        out = "float32"
    elif dtype.startswith(("int", "uint")):
        out = "int32"
    elif dtype == "bool":
        out = "bool"
    else:
        raise _Skip(f"{where} has dtype {dtype}, which TFJS lacks")
    if out != dtype:
        notes.append(f"input {cfg['name']!r} is {out} in TFJS (Keras: {dtype})")
    return {"batch_input_shape": list(shape), "dtype": out, "sparse": False, "name": cfg["name"]}


def _kernel_weights(holder: Any, use_bias: bool, *more: str) -> list[tuple[str, np.ndarray]]:
    """``kernel``, then the named extra weights, then ``bias`` when used: the order TFJS reads them in."""
    names = ["kernel", *more] + (["bias"] if use_bias else [])
    return [(name, _np(getattr(holder, name))) for name in names]


def _dense(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"Dense {cfg['name']!r}"
    _require(getattr(layer, "quantization_mode", None) is None, f"{where} is quantized")
    _no_regularizers(cfg, notes)
    out = _base(cfg) | {
        "units": int(cfg["units"]),
        "activation": _activation(cfg.get("activation", "linear"), where),
        "use_bias": bool(cfg.get("use_bias", True)),
        "kernel_initializer": _initializer(cfg.get("kernel_initializer"), notes),
        "bias_initializer": _initializer(cfg.get("bias_initializer"), notes),
    }
    weights = _kernel_weights(layer, out["use_bias"])
    return "Dense", out, weights


def _normalization(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Normalization -> BatchNormalization(epsilon=_PAD_EPSILON) computing the same affine map."""
    where = f"Normalization {cfg['name']!r}"
    _require(getattr(layer, "mean", None) is not None, f"{where} was never adapted")
    axis = tuple(layer.axis) if layer.axis is not None else ()
    mean = _np(layer.mean).astype(np.float64)
    var = _np(layer.variance).astype(np.float64)
    if len(axis) == 1:
        bn_axis = int(axis[0])
        mean, var = mean.reshape(-1), var.reshape(-1)
    elif len(axis) == 0 and mean.size == 1:
        # One mean for everything: per-channel on the last axis, tiled.
        try:
            last = layer.input.shape[-1]
        except (AttributeError, ValueError):
            last = None
        _require(last is not None, f"{where} with axis=None needs a known last dimension")
        bn_axis = -1
        mean, var = np.full(last, mean.item()), np.full(last, var.item())
    else:
        raise _Skip(f"{where} normalizes over several axes {axis}; TFJS BatchNormalization takes one")
    std = np.maximum(np.sqrt(var.astype(np.float32)), np.float32(_KERAS_EPSILON)).astype(np.float32)
    out = _base(cfg) | {
        "axis": bn_axis, "momentum": 0.99, "epsilon": _PAD_EPSILON,
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
        floored = np.maximum(var.astype(np.float32), np.float32(_KERAS_EPSILON) ** 2)
        weights = [("moving_mean", mean.astype(np.float32)), ("moving_variance", floored)]
        notes.append(f"Normalization {cfg['name']!r} written as BatchNormalization "
                     "(moving_mean=mean, moving_variance=max(variance, 1e-14), epsilon=1e-30)")
    return "BatchNormalization", out, weights


def _batch_norm(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"BatchNormalization {cfg['name']!r}"
    _require(not cfg.get("renorm"), f"{where} uses renorm")
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        _require(len(axis) == 1, f"{where} normalizes over several axes")
        axis = axis[0]
    _no_regularizers(cfg, notes)
    epsilon = float(cfg.get("epsilon", 1e-3))
    moving_variance = _np(layer.moving_variance)
    if epsilon == 0.0 and float(np.min(moving_variance, initial=np.inf)) >= _PAD_EPSILON_EXACT_ABOVE:
        epsilon = _PAD_EPSILON  # same result in float32; 0 makes the webgl backend compute NaN
        notes.append(f"{where} has epsilon=0; written as {_PAD_EPSILON} (same float32 result; "
                     "TFJS webgl computes NaN with 0)")
    out = _base(cfg) | {
        "axis": int(axis), "momentum": float(cfg.get("momentum", 0.99)), "epsilon": epsilon,
        "center": bool(cfg.get("center", True)), "scale": bool(cfg.get("scale", True)),
    }
    for key in ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                "moving_variance_initializer"):
        out[key] = _initializer(cfg.get(key), notes)
    weights = []
    if out["scale"]:
        weights.append(("gamma", _np(layer.gamma)))
    if out["center"]:
        weights.append(("beta", _np(layer.beta)))
    weights += [("moving_mean", _np(layer.moving_mean)), ("moving_variance", moving_variance)]
    return "BatchNormalization", out, weights


def _dropout(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    out = _base(cfg) | {"rate": float(cfg.get("rate", 0.0)), "noise_shape": cfg.get("noise_shape"),
                        "seed": cfg.get("seed")}
    return "Dropout", out, []


def _flatten(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    return "Flatten", _base(cfg) | {"data_format": cfg.get("data_format") or "channels_last"}, []


def _reshape(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    return "Reshape", _base(cfg) | {"target_shape": list(cfg["target_shape"])}, []


def _conv_common(class_name: str, cfg: dict[str, Any], layer: Any, notes: list[str], rank: int) -> dict[str, Any]:
    """The config keys every TFJS convolution reads (BaseConv): kernel size, strides, padding, activation, bias."""
    where = f"{class_name} {cfg['name']!r}"
    _require(int(cfg.get("groups", 1)) == 1, f"{where} uses groups != 1, which TFJS 4.22 convolutions lack")
    _require(getattr(layer, "quantization_mode", None) is None, f"{where} is quantized")
    _require(cfg.get("padding", "valid") in ("valid", "same"),
             f"{where} uses padding {cfg.get('padding')!r}: TFJS 4.22 reads it but throws "
             "NotImplementedError when the convolution runs")
    _no_regularizers(cfg, notes)
    return _base(cfg) | {
        "kernel_size": list(cfg["kernel_size"]),
        "strides": list(cfg.get("strides", [1] * rank)),
        "padding": cfg.get("padding", "valid"),
        "data_format": cfg.get("data_format") or "channels_last",
        "dilation_rate": list(cfg.get("dilation_rate", [1] * rank)),
        "activation": _activation(cfg.get("activation", "linear"), where),
        "use_bias": bool(cfg.get("use_bias", True)),
        "bias_initializer": _initializer(cfg.get("bias_initializer"), notes),
    }


def _causal_as_same(layer: Any, cfg: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """A causal Conv1D as a 'same' Conv1D of kernel 2k-1 whose last k-1 taps are zero.

    'same' pads (2k-2)·d zeros, half on each side; with the right half of the kernel zero, output t sums
    w[j]·x[t - (k-1-j)·d] for j < k, which is exactly the causal convolution (the zero taps add exact zeros).
    Only for stride 1 (with a stride, 'same' pads unevenly). Raises _Skip otherwise.
    """
    where = f"Conv1D {cfg['name']!r}"
    _require(list(cfg.get("strides", [1])) == [1], f"{where} uses padding 'causal' with strides "
             f"{list(cfg.get('strides'))}: TFJS 4.22 throws NotImplementedError on causal padding, and the "
             "kit's rewrite as 'same' padding is exact only for stride 1")
    kernel = _np(layer.kernel)
    k = kernel.shape[0]
    widened = np.concatenate([kernel, np.zeros((k - 1, *kernel.shape[1:]), np.float32)], axis=0)
    notes.append(f"{where} (padding 'causal') written as padding 'same' with kernel {2 * k - 1} whose last "
                 f"{k - 1} taps are zero (TFJS 4.22 cannot run causal padding; same function)")
    return {**cfg, "padding": "same", "kernel_size": [2 * k - 1]}, widened


def _conv(class_name: str, rank: int) -> Callable[[Any, dict[str, Any], list[str]], LayerOut]:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        kernel = None
        if class_name == "Conv1D" and cfg.get("padding") == "causal":
            cfg, kernel = _causal_as_same(layer, cfg, notes)
        out = _conv_common(class_name, cfg, layer, notes, rank) | {
            "filters": int(cfg["filters"]),
            "kernel_initializer": _initializer(cfg.get("kernel_initializer"), notes),
        }
        weights = _kernel_weights(layer, out["use_bias"])
        if kernel is not None:
            weights[0] = ("kernel", kernel)
        return class_name, out, weights

    return translate


def _conv_transpose(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Conv2DTranspose: same kernel layout (kh, kw, filters, in); TFJS has no output_padding and no dilation."""
    where = f"Conv2DTranspose {cfg['name']!r}"
    _require(cfg.get("output_padding") is None, f"{where} sets output_padding, which TFJS 4.22's "
                                                "Conv2DTranspose lacks")
    _require(list(cfg.get("dilation_rate", [1, 1])) == [1, 1],
             f"{where} uses dilation_rate {list(cfg['dilation_rate'])}, which TFJS 4.22's Conv2DTranspose lacks")
    out = _conv_common("Conv2DTranspose", cfg, layer, notes, 2) | {
        "filters": int(cfg["filters"]),
        "kernel_initializer": _initializer(cfg.get("kernel_initializer"), notes),
    }
    del out["dilation_rate"]
    return "Conv2DTranspose", out, _kernel_weights(layer, out["use_bias"])


def _depthwise(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """DepthwiseConv2D: kernel (kh, kw, in, multiplier) as TFJS's ``depthwise_kernel``."""
    where = f"DepthwiseConv2D {cfg['name']!r}"
    # TFJS 4.22's DepthwiseConv2D.call passes dilations=null to tf.depthwiseConv2d: a dilation is ignored.
    _require(list(cfg.get("dilation_rate", [1, 1])) == [1, 1],
             f"{where} uses dilation_rate {list(cfg['dilation_rate'])}, which TFJS 4.22's DepthwiseConv2D "
             "ignores (it runs undilated)")
    out = _conv_common("DepthwiseConv2D", cfg, layer, notes, 2) | {
        "depth_multiplier": int(cfg.get("depth_multiplier", 1)),
        "depthwise_initializer": _initializer(cfg.get("depthwise_initializer"), notes),
    }
    weights = [("depthwise_kernel", _np(layer.kernel))]
    if out["use_bias"]:
        weights.append(("bias", _np(layer.bias)))
    return "DepthwiseConv2D", out, weights


def _separable(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """SeparableConv2D: depthwise (kh, kw, in, m) and pointwise (1, 1, in·m, filters) kernels, then bias."""
    out = _conv_common("SeparableConv2D", cfg, layer, notes, 2) | {
        "filters": int(cfg["filters"]),
        "depth_multiplier": int(cfg.get("depth_multiplier", 1)),
        "depthwise_initializer": _initializer(cfg.get("depthwise_initializer"), notes),
        "pointwise_initializer": _initializer(cfg.get("pointwise_initializer"), notes),
    }
    weights = [("depthwise_kernel", _np(layer.depthwise_kernel)), ("pointwise_kernel", _np(layer.pointwise_kernel))]
    if out["use_bias"]:
        weights.append(("bias", _np(layer.bias)))
    return "SeparableConv2D", out, weights


def _zero_padding(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    padding = cfg.get("padding", 1)
    if isinstance(padding, int):
        padding = [[padding, padding], [padding, padding]]
    padding = [[int(p), int(p)] if isinstance(p, int) else [int(v) for v in p] for p in padding]
    return "ZeroPadding2D", _base(cfg) | {"padding": padding,
                                          "data_format": cfg.get("data_format") or "channels_last"}, []


def _rescaling(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Rescaling: x·scale + offset in float32 (TFJS casts its input to float32 first, as Keras does)."""
    where = f"Rescaling {cfg['name']!r}"
    scale, offset = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
    _require(all(isinstance(v, (int, float)) for v in (scale, offset)),
             f"{where} has a per-channel scale or offset; the kit's writer handles scalars only")
    return "Rescaling", _base(cfg) | {"scale": float(scale), "offset": float(offset)}, []


def _prelu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    _no_regularizers(cfg, notes)
    shared = cfg.get("shared_axes")
    out = _base(cfg) | {"alpha_initializer": _initializer(cfg.get("alpha_initializer"), notes),
                        "shared_axes": None if shared is None else [int(a) for a in
                                                                    (shared if isinstance(shared, (list, tuple)) else [shared])]}
    return "PReLU", out, [("alpha", _np(layer.alpha))]


def _elu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    alpha = float(cfg.get("alpha", 1.0))
    _require(alpha == 1.0, f"ELU {cfg['name']!r} uses alpha={alpha}: TFJS 4.22's ELU layer throws "
                           "NotImplementedError for any alpha but 1")
    return "ELU", _base(cfg) | {"alpha": 1.0}, []


def _layer_norm(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"LayerNormalization {cfg['name']!r}"
    _require(not cfg.get("rms_scaling"), f"{where} uses rms_scaling=True, which TFJS 4.22's LayerNormalization lacks")
    _no_regularizers(cfg, notes)
    axis = cfg.get("axis", -1)
    out = _base(cfg) | {
        "axis": [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis),
        "epsilon": float(cfg.get("epsilon", 1e-3)),
        "center": bool(cfg.get("center", True)), "scale": bool(cfg.get("scale", True)),
        "beta_initializer": _initializer(cfg.get("beta_initializer"), notes),
        "gamma_initializer": _initializer(cfg.get("gamma_initializer"), notes),
    }
    weights = []
    if out["scale"]:
        weights.append(("gamma", _np(layer.gamma)))
    if out["center"]:
        weights.append(("beta", _np(layer.beta)))
    return "LayerNormalization", out, weights


def _inner(layer: Any, cfg: dict[str, Any], notes: list[str], where: str) -> LayerOut:
    """The layer a wrapper holds, translated like a top-level layer. Raises _Skip for what cannot be."""
    class_name = cfg.get("class_name")
    inner_cfg = cfg.get("config", {})
    if class_name not in _TRANSLATORS or class_name in _WRAPPERS:
        raise _Skip(f"{where} wraps " + missing_layer_reason(str(class_name), inner_cfg.get("name", "?")))
    policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    _require(policy == "float32", f"{where} wraps a layer with dtype policy {policy}; TFJS layers models are float32")
    return _TRANSLATORS[class_name](layer, inner_cfg, notes)


def _time_distributed(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """TimeDistributed(layer): TFJS builds the inner layer in the wrapper's name scope (``<wrapper>/kernel``)."""
    where = f"TimeDistributed {cfg['name']!r}"
    class_name, inner, weights = _inner(layer.layer, cfg["layer"], notes, where)
    return "TimeDistributed", _base(cfg) | {"layer": {"class_name": class_name, "config": inner}}, weights


def _bidirectional(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Bidirectional(rnn): TFJS clones the forward layer with go_backwards flipped for the backward one,
    names them ``forward_<name>`` and ``backward_<name>`` and scopes their weights under the wrapper."""
    where = f"Bidirectional {cfg['name']!r}"
    _require(cfg["layer"].get("class_name") in _RNNS, f"{where} wraps {cfg['layer'].get('class_name')}, "
                                                      "the kit's writer handles SimpleRNN, LSTM and GRU only")
    _require(not cfg["layer"].get("config", {}).get("return_state"),
             f"{where} returns states; the kit's writer does not route a Bidirectional's state outputs yet")
    f_class, forward, f_weights = _inner(layer.forward_layer, cfg["layer"], notes, where)
    back_cfg = layer.backward_layer.get_config()
    b_class, backward, b_weights = _inner(layer.backward_layer, {"class_name": type(layer.backward_layer).__name__,
                                                                 "config": back_cfg}, notes, where)
    same = ({k: v for k, v in forward.items() if k not in ("name", "go_backwards")}
            == {k: v for k, v in backward.items() if k not in ("name", "go_backwards")})
    _require(f_class == b_class and same and backward["go_backwards"] != forward["go_backwards"],
             f"{where} has a backward layer that is not the forward one reversed, which TFJS 4.22's "
             "Bidirectional cannot hold (it clones the forward layer)")
    _require(cfg.get("merge_mode", "concat") in ("concat", "sum", "mul", "ave", None),
             f"{where} uses merge_mode {cfg.get('merge_mode')!r}, which TFJS 4.22 lacks")
    base = str(forward["name"])
    base = base[len("forward_"):] if base.startswith("forward_") else base
    inner = {**forward, "name": base}
    weights = [(f"forward_{base}/{suffix}", value) for suffix, value in f_weights]
    weights += [(f"backward_{base}/{suffix}", value) for suffix, value in b_weights]
    out = _base(cfg) | {"layer": {"class_name": f_class, "config": inner}, "merge_mode": cfg.get("merge_mode", "concat")}
    return "Bidirectional", out, weights


def _pool(class_name: str) -> Callable[[Any, dict[str, Any], list[str]], LayerOut]:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        out = _base(cfg) | {
            "pool_size": list(cfg["pool_size"]),
            "strides": list(cfg["strides"]) if cfg.get("strides") is not None else None,
            "padding": cfg.get("padding", "valid"),
            "data_format": cfg.get("data_format") or "channels_last",
        }
        return class_name, out, []

    return translate


def _global_pool(class_name: str) -> Callable[[Any, dict[str, Any], list[str]], LayerOut]:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        _require(not cfg.get("keepdims"), f"{class_name} {cfg['name']!r} uses keepdims=True, "
                                          f"which TFJS 4.22's {class_name} lacks")
        return class_name, _base(cfg) | {"data_format": cfg.get("data_format") or "channels_last"}, []

    return translate


def _embedding(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"Embedding {cfg['name']!r}"
    _require(getattr(layer, "quantization_mode", None) is None, f"{where} is quantized")
    _no_regularizers(cfg, notes)
    out = _base(cfg) | {
        "input_dim": int(cfg["input_dim"]), "output_dim": int(cfg["output_dim"]),
        "embeddings_initializer": _initializer(cfg.get("embeddings_initializer"), notes),
        "mask_zero": bool(cfg.get("mask_zero", False)),
    }
    return "Embedding", out, [("embeddings", _np(layer.embeddings))]


def _rnn(class_name: str) -> Callable[[Any, dict[str, Any], list[str]], LayerOut]:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        where = f"{class_name} {cfg['name']!r}"
        _require(not cfg.get("stateful"), f"{where} is stateful")
        if class_name == "GRU":
            _require(not cfg.get("reset_after", True), f"{where} uses reset_after=True (the Keras 3 default): "
                     "TFJS 4.22's GRUCell refuses it, and its reset_after=False form computes the candidate "
                     "from U·(r∘h) where Keras computes r∘(U·h + b), which no choice of weights makes equal; "
                     "build the GRU with reset_after=False for a layers model")
        _no_regularizers(cfg, notes)
        out = _base(cfg) | {
            "units": int(cfg["units"]),
            "activation": _activation(cfg.get("activation", "tanh"), where),
            "use_bias": bool(cfg.get("use_bias", True)),
            "kernel_initializer": _initializer(cfg.get("kernel_initializer"), notes),
            "recurrent_initializer": _initializer(cfg.get("recurrent_initializer"), notes),
            "bias_initializer": _initializer(cfg.get("bias_initializer"), notes),
            "dropout": float(cfg.get("dropout", 0.0)),
            "recurrent_dropout": float(cfg.get("recurrent_dropout", 0.0)),
            "return_sequences": bool(cfg.get("return_sequences", False)),
            "return_state": bool(cfg.get("return_state", False)),
            "go_backwards": bool(cfg.get("go_backwards", False)),
            "stateful": False,
            "unroll": bool(cfg.get("unroll", False)),
        }
        if class_name in ("LSTM", "GRU"):
            out["recurrent_activation"] = _activation(cfg.get("recurrent_activation", "sigmoid"), where)
            out["implementation"] = 2
        if class_name == "LSTM":
            out["unit_forget_bias"] = bool(cfg.get("unit_forget_bias", True))
        if class_name == "GRU":
            out["reset_after"] = False
        cell = layer.cell
        weights = _kernel_weights(cell, out["use_bias"], "recurrent_kernel")
        return class_name, out, weights

    return translate


def _merge(class_name: str) -> Callable[[Any, dict[str, Any], list[str]], LayerOut]:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        out = _base(cfg)
        if class_name == "Concatenate":
            out["axis"] = int(cfg.get("axis", -1))
        return class_name, out, []

    return translate


def _activation_layer(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"Activation {cfg['name']!r}"
    return "Activation", _base(cfg) | {"activation": _activation(cfg.get("activation"), where)}, []


def _softmax(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        _require(len(axis) == 1, f"Softmax {cfg['name']!r} over several axes")
        axis = axis[0]
    return "Softmax", _base(cfg) | {"axis": int(axis)}, []


def _relu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    where = f"ReLU {cfg['name']!r}"
    _require(not cfg.get("negative_slope") and not cfg.get("threshold"),
             f"{where} uses negative_slope/threshold, which TFJS ReLU lacks")
    return "ReLU", _base(cfg) | {"max_value": cfg.get("max_value")}, []


def _leaky_relu(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    alpha = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return "LeakyReLU", _base(cfg) | {"alpha": float(alpha)}, []


_TRANSLATORS: dict[str, Callable[[Any, dict[str, Any], list[str]], LayerOut]] = {
    "Dense": _dense,
    "Normalization": _normalization,
    "BatchNormalization": _batch_norm,
    "Dropout": _dropout,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Conv1D": _conv("Conv1D", 1),
    "Conv2D": _conv("Conv2D", 2),
    "Conv2DTranspose": _conv_transpose,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "ZeroPadding2D": _zero_padding,
    "Rescaling": _rescaling,
    "PReLU": _prelu,
    "ELU": _elu,
    "LayerNormalization": _layer_norm,
    "TimeDistributed": _time_distributed,
    "Bidirectional": _bidirectional,
    "MaxPooling1D": _pool("MaxPooling1D"),
    "MaxPooling2D": _pool("MaxPooling2D"),
    "AveragePooling1D": _pool("AveragePooling1D"),
    "AveragePooling2D": _pool("AveragePooling2D"),
    "GlobalAveragePooling1D": _global_pool("GlobalAveragePooling1D"),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePooling2D"),
    "GlobalMaxPooling1D": _global_pool("GlobalMaxPooling1D"),
    "GlobalMaxPooling2D": _global_pool("GlobalMaxPooling2D"),
    "Embedding": _embedding,
    "SimpleRNN": _rnn("SimpleRNN"),
    "LSTM": _rnn("LSTM"),
    "GRU": _rnn("GRU"),
    "Concatenate": _merge("Concatenate"),
    "Add": _merge("Add"),
    "Multiply": _merge("Multiply"),
    "Average": _merge("Average"),
    "Maximum": _merge("Maximum"),
    "Minimum": _merge("Minimum"),
    "Activation": _activation_layer,
    "Softmax": _softmax,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
}

SUPPORTED_LAYERS: tuple[str, ...] = ("InputLayer", *sorted(_TRANSLATORS))
_WRAPPERS = {"TimeDistributed", "Bidirectional"}


# --------------------------------------------------------------------------- topology


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


# --------------------------------------------------------------------------- masks
#
# Keras 3 records masks explicitly: Embedding(mask_zero=True) adds a ``NotEqual(tokens, 0)`` op node
# and each layer whose call takes ``mask`` gets ``mask=<that tensor>``. TFJS has no op nodes and
# propagates masks implicitly (Layer.computeMask). The writer drops the NotEqual nodes and checks,
# by simulating TFJS's propagation, that every layer sees the mask Keras gave it.

_MASK_PASS = {"Dense", "Dropout", "Activation", "ReLU", "BatchNormalization", "Normalization", "PReLU",
              "LayerNormalization"}
_MASK_IGNORED_AT_INFERENCE = {"Dropout", "BatchNormalization"}
_RNNS = {"SimpleRNN", "LSTM", "GRU"}
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
    """TFJS's output masks for one call of a layer. Raises _Skip where TFJS and Keras would differ."""
    where = f"{class_name} {cfg.get('name')!r}"
    masked = [m for m in in_masks if m is not None]
    if class_name == "Embedding":
        _require(not masked, f"{where} receives a mask")
        return [in_refs[0] if cfg.get("mask_zero") else None]
    if class_name in _RNNS:
        _require(keras_mask == in_masks[0], f"{where} is given a mask TFJS would not give it")
        seq_mask = in_masks[0] if cfg.get("return_sequences") else None
        return [seq_mask] + [None] * (n_outputs - 1)
    if class_name in _MASK_PASS:
        _require(keras_mask is None or class_name in _MASK_IGNORED_AT_INFERENCE,
                 f"{where} uses a mask, which TFJS {class_name} ignores")
        return [in_masks[0]] if in_masks else [None]
    _require(not masked and keras_mask is None,
             f"{where} receives a mask (Embedding mask_zero=True), which TFJS {class_name} "
             + ("merges differently" if class_name in _MERGES else "does not support"))
    return [None] * n_outputs


def _inbound_nodes(entry: dict[str, Any], mask_nodes: dict[str, tuple[str, int, int]],
                   masks: dict[tuple[str, int, int], Any]) -> list[list[list[Any]]]:
    """Keras 3 ``inbound_nodes`` -> the Keras 2 ``[[["layer", 0, 0, {}], ...], ...]`` form.

    Also records in ``masks`` the TFJS mask of every output tensor of the layer.
    Raises _Skip for calls the layers format cannot express or masks TFJS would treat differently.
    """
    class_name, cfg = entry.get("class_name"), entry.get("config", {})
    name = entry.get("name") or cfg.get("name")
    n_outputs = 1
    if class_name in _RNNS and cfg.get("return_state"):
        n_outputs = 3 if class_name == "LSTM" else 2  # output, h (, c)
    out = []
    for node_index, node in enumerate(entry.get("inbound_nodes", [])):
        if isinstance(node, dict) and "args" in node:
            kwargs = dict(node.get("kwargs", {}))
            mask_refs = _keras_tensors(kwargs.pop("mask", None))
            if _keras_tensors(kwargs):
                raise _Skip(f"layer {name!r} is called with tensor keyword arguments "
                            f"({', '.join(sorted(kwargs))}), which the layers format cannot express")
            refs = _keras_tensors(node["args"])
        else:  # already Keras 2 style
            mask_refs, refs = [], [tuple(r[:3]) for r in node]
        for ref in refs:
            _require(ref[0] not in mask_nodes, f"NotEqual ({ref[0]!r}) is used as a value, not a mask")
        keras_mask = None
        if mask_refs:
            _require(len(mask_refs) == 1 and mask_refs[0][0] in mask_nodes,
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
    raise _Skip(f"unreadable model inputs/outputs {struct!r}")


def _translate(model: Any, entry: dict[str, Any], notes: list[str],
               weights: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """One Keras 3 layer entry -> (TFJS class name, TFJS config); appends its weights."""
    class_name = entry.get("class_name")
    cfg = entry.get("config", {})
    if class_name == "InputLayer":
        return "InputLayer", _input_layer(cfg, notes)
    module = entry.get("module")
    if module is not None and not module.startswith("keras.layers") and class_name not in (
            "Functional", "Sequential", "Model"):
        raise _Skip(f"Keras op {cfg.get('name', '?')!r} ({class_name}); TFJS layers models hold "
                    "layers only")
    if entry.get("registered_name") not in (None, class_name):
        raise _Skip(f"custom layer {entry['registered_name']} ({cfg.get('name', '?')!r})")
    if class_name in ("Functional", "Sequential", "Model"):
        raise _Skip(f"nested model {cfg.get('name', '?')!r} ({class_name}): the kit's writer does not "
                    "flatten nested models yet")
    if class_name not in _TRANSLATORS:
        raise _Skip(missing_layer_reason(str(class_name), cfg.get("name", "?")))
    layer = model.get_layer(cfg["name"])
    policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    _require(policy == "float32", f"{class_name} {cfg['name']!r} uses dtype policy {policy}; "
                                  "TFJS layers models are float32")
    tfjs_class, tfjs_cfg, layer_weights = _TRANSLATORS[class_name](layer, cfg, notes)
    for suffix, value in layer_weights:
        weights.append({"name": f"{cfg['name']}/{suffix}", "data": value})
    return tfjs_class, tfjs_cfg


def _topology(model: Any, notes: list[str], weights: list[dict[str, Any]]) -> dict[str, Any]:
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
                    keras_mask = mask if entry.get("class_name") in _RNNS else None
                    mask = _mask_step(entry["class_name"], entry.get("config", {}), [("seq", 0, 0)],
                                      [mask], keras_mask, 1)[0]
            except _Skip as skip:
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
        except _Skip as skip:
            problems.append(str(skip))
    try:
        inputs, outputs = _flat_refs(config["input_layers"]), _flat_refs(config["output_layers"])
        for ref in outputs:
            _require(ref[0] not in mask_nodes, f"NotEqual ({ref[0]!r}) is a model output")
    except _Skip as skip:
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


# --------------------------------------------------------------------------- public API


def write_layers_model(model: Any, out_dir: pathlib.Path) -> dict[str, Any]:
    """Write ``out_dir/model.json`` + weight shards loadable by TFJS 4.22 ``tf.loadLayersModel``.

    ``model`` is a built Keras 3 Sequential or Functional model. Returns
    ``{"files": [relative file names, model.json first], "notes": [...]}``.

    Raises UnsupportedLayers (nothing written) when a layer, or an option of one, has no TFJS
    equivalent that computes the same function; the message names every such layer.
    Raises OSError if ``out_dir`` cannot be written.
    """
    import keras

    notes: list[str] = []
    weights: list[dict[str, Any]] = []
    model_config = _topology(model, notes, weights)

    names = [w["name"] for w in weights]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UnsupportedLayers("TFJS layers model not written: duplicate weight names "
                                f"{', '.join(duplicates)}; the graph model is still written")

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if weights:
        # tensorflowjs imports tensorflow_decision_forests, whose welcome banner does
        # `import IPython` (not installed) whenever stdout is not a terminal; this turns it off.
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
        from tensorflowjs.write_weights import write_weights

        manifest = write_weights([weights], str(out_dir), write_manifest=False)
    else:
        manifest = []
    model_json = {
        "format": "layers-model",
        "generatedBy": f"keras v{keras.__version__}",
        "convertedBy": "deploykit convert.tfjs_layers",
        "modelTopology": {"keras_version": keras.__version__, "backend": "tensorflow",
                          "model_config": model_config},
        "weightsManifest": manifest,
    }
    (out_dir / MODEL_FILE).write_text(json.dumps(model_json, separators=(",", ":")), encoding="utf-8")
    files = [MODEL_FILE] + [path for group in manifest for path in group["paths"]]
    return {"files": files, "notes": notes}
