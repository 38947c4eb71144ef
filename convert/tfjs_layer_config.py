"""The vocabulary every TFJS layers-model writer shares: Keras 3 -> tfjs-layers activations and initializers,
the config and weight helpers, and the two refusals (:class:`Skip` for one layer, :class:`UnsupportedLayers` for
the model). The per-family writers are ``convert.tfjs_layers_core``, ``_norm``, ``_conv``, ``_rnn`` and
``_wrappers``; the topology is ``convert.tfjs_layers_topology``; ``convert.tfjs_layers`` writes the files.
Nothing here imports TensorFlow (Keras only lazily, in :func:`to_numpy`).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

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
# variance reproduces it inside BatchNormalization (whose epsilon, PAD_EPSILON, cannot move it).
KERAS_EPSILON = 1e-7


# The epsilon written where Keras adds none. Not 0: TFJS's webgl backend runs BatchNormalization as
# a packed shader over 2x2 texel blocks, and computes ``inversesqrt(variance + epsilon)`` on the
# padding lanes too, where the variance texture reads 0. With epsilon=0 those lanes hold
# (0 - 0) * inf = NaN, and the next packed MatMul multiplies them by its zero padding (NaN * 0 =
# NaN): every output of the model is NaN whenever the channel count is not even (the Boston MLP's
# 3 features). 1e-30 keeps the padding lanes at 0 and cannot change a real lane: for every
# variance v >= PAD_EPSILON_EXACT_ABOVE it is under half a float32 ulp of v, so v + 1e-30 == v.
PAD_EPSILON = 1e-30


PAD_EPSILON_EXACT_ABOVE = 1e-22  # 1e-30 < v * 2**-25 for every v above this


class UnsupportedLayers(Exception):
    """Raised with a one-line reason naming each layer not written and why (TFJS's limit or the writer's)."""


class Skip(Exception):
    """One layer cannot be expressed; the message says why (collected into UnsupportedLayers)."""


# Activations TFJS 4.22 has under the same name but computes differently (measured or read in its source).
_ACTIVATION_DIFFERS: dict[str, str] = {
    "hard_sigmoid": "TFJS 4.22 computes hardSigmoid as 0.2x + 0.5, Keras 3 as relu6(x + 3) / 6",
    "gelu": "TFJS 4.22's gelu uses its erf approximation (1.2e-5 relative error measured, over the float32 "
            "bound of 1e-5)",
}


def activation(name: Any, where: str) -> str:
    """Map a Keras 3 activation to TFJS's. Raises Skip for activations TFJS lacks or computes differently."""
    if isinstance(name, str) and name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    shown = name if isinstance(name, str) else json.dumps(name)
    if isinstance(name, str) and name in _ACTIVATION_DIFFERS:
        raise Skip(f"{where} uses activation {shown!r}: {_ACTIVATION_DIFFERS[name]}")
    raise Skip(f"{where} uses activation {shown!r}, which TFJS 4.22 does not have")


def initializer(cfg: Any, notes: list[str]) -> dict[str, Any]:
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


def base(cfg: dict[str, Any]) -> dict[str, Any]:
    """The keys every TFJS layer config has: name, trainable, dtype (always float32)."""
    return {"name": cfg["name"], "trainable": bool(cfg.get("trainable", True)), "dtype": "float32"}


def to_numpy(variable: Any) -> np.ndarray:
    """A Keras variable or backend tensor as a float32 numpy array."""
    if hasattr(variable, "numpy"):
        return np.asarray(variable.numpy(), dtype=np.float32)
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def require(cond: bool, reason: str) -> None:
    """Raises Skip(reason) unless ``cond``."""
    if not cond:
        raise Skip(reason)


def no_regularizers(cfg: dict[str, Any], notes: list[str]) -> None:
    """Note once that regularizers and constraints are dropped (they only matter in training)."""
    keys = [k for k in cfg if k.endswith(("_regularizer", "_constraint")) and cfg[k] is not None]
    if keys:
        note = "regularizers and constraints are dropped (inference only)"
        if note not in notes:
            notes.append(note)


def kernel_weights(holder: Any, use_bias: bool, *more: str) -> list[tuple[str, np.ndarray]]:
    """``kernel``, then the named extra weights, then ``bias`` when used: the order TFJS reads them in."""
    names = ["kernel", *more] + (["bias"] if use_bias else [])
    return [(name, to_numpy(getattr(holder, name))) for name in names]


# A writer's result: the TFJS class name, its config and its weights as (suffix under "<layer>/", value).
LayerOut = tuple[str, dict[str, Any], list[tuple[str, np.ndarray]]]
# A writer: (the Keras layer, its Keras 3 config, the notes to append to) -> LayerOut; raises Skip.
Translator = Callable[[Any, dict[str, Any], list[str]], LayerOut]


# The recurrent layers (their masks and wrappers are handled apart)
RNNS = {"SimpleRNN", "LSTM", "GRU"}


def input_layer(cfg: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """InputLayer config -> TFJS InputLayer config (``batch_input_shape``)."""
    where = f"InputLayer {cfg['name']!r}"
    require(not cfg.get("sparse") and not cfg.get("ragged"), f"{where} is sparse or ragged")
    require(not cfg.get("optional"), f"{where} is optional")
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    require(shape is not None, f"{where} has no batch shape")
    dtype = str(cfg.get("dtype") or "float32")
    if dtype.startswith(("float", "bfloat")):
        out = "float32"
    elif dtype.startswith(("int", "uint")):
        out = "int32"
    elif dtype == "bool":
        out = "bool"
    else:
        raise Skip(f"{where} has dtype {dtype}, which TFJS lacks")
    if out != dtype:
        notes.append(f"input {cfg['name']!r} is {out} in TFJS (Keras: {dtype})")
    return {"batch_input_shape": list(shape), "dtype": out, "sparse": False, "name": cfg["name"]}


def units_config(cfg: dict[str, Any], where: str, notes: list[str], default_activation: str) -> dict[str, Any]:
    """The config of a layer of ``units`` (Dense, the recurrent layers): units, activation, bias and its
    kernel and bias initializers, after the base keys. Raises Skip for an activation TFJS lacks."""
    return base(cfg) | {
        "units": int(cfg["units"]),
        "activation": activation(cfg.get("activation", default_activation), where),
        "use_bias": bool(cfg.get("use_bias", True)),
        "kernel_initializer": initializer(cfg.get("kernel_initializer"), notes),
        "bias_initializer": initializer(cfg.get("bias_initializer"), notes),
    }
