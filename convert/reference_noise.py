"""The reference's own float32 error: the Keras model run in float32 against the same model run in float64.

The float32 rule (``edge.tolerance``, docs/architecture.md "Tolerances") adds twice this *reference noise*
to its bound: ``noise = max|ref32 - ref64| / max|ref64|`` per output, on the golden rows. The float64 run is
the same graph rebuilt from the model's config with every floating dtype (layer policies, nested models,
float inputs) set to float64, and the same weights cast to float64 (then each layer's ``finalize_state``, as
Keras's own loading calls it: an adapted Normalization computes its mean and variance from its weights there). Where that run is impossible (a
SavedModel source has no Keras layers, a layer refuses float64, the rebuilt model computes in float32
anyway) or is not the same function (a noise above ``MAX_NOISE``), no noise is recorded and ``Noise.note``
says why in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

MAX_NOISE = 1e-3  # above this the float64 rebuild is not the same function (docs/architecture.md, "Tolerances")
FLOAT_NAMES = ("float16", "bfloat16", "float32", "mixed_float16", "mixed_bfloat16")
TINY = float(np.finfo(np.float32).tiny)


@dataclass
class Noise:
    """Per output key, the reference noise (empty when none could be measured, and ``note`` says why)."""

    values: dict[str, float] = field(default_factory=dict)
    note: str = ""


def float64_config(config: Any) -> Any:
    """A copy of a Keras config with every floating dtype (strings and ``DTypePolicy`` dicts, at any depth:
    layers, nested models, input layers) set to float64; integer and bool dtypes are kept."""
    if isinstance(config, list):
        return [float64_config(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        if key == "dtype" and isinstance(value, str) and value in FLOAT_NAMES:
            out[key] = "float64"
        elif (key == "dtype" and isinstance(value, dict) and isinstance(value.get("config"), dict)
              and value["config"].get("name") in FLOAT_NAMES):
            out[key] = {**value, "class_name": "DTypePolicy", "config": {**value["config"], "name": "float64"}}
        else:
            out[key] = float64_config(value)
    return out


def float64_twin(model: Any) -> Any:
    """The same Keras model computing in float64, with its weights cast to float64.

    Raises:
        Exception: whatever Keras raises when the model cannot be rebuilt in float64 (the caller notes it).
    """
    config = float64_config(model.get_config())
    twin = model.__class__.from_config(config)
    weights = model.get_weights()
    twin.set_weights([np.asarray(w, dtype=np.float64) if np.issubdtype(np.asarray(w).dtype, np.floating) else w
                      for w in weights])
    for layer in twin._flatten_layers():  # state derived from weights (an adapted Normalization's mean), as loading does
        finalize = getattr(layer, "finalize_state", None)
        if callable(finalize):
            finalize()
    return twin


def _first_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    text = " ".join(first.split())[:160]
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def measure(ref: Any, inputs: Mapping[str, np.ndarray], outputs32: Mapping[str, np.ndarray]) -> Noise:
    """The reference noise of every output of ``ref`` (a ``convert.reference.Reference``) on ``inputs``,
    whose float32 outputs are ``outputs32``. Never raises but for a Ctrl+C: a run that cannot be made is a note."""
    from convert import interrupt

    if ref.keras_model is None:
        return Noise(note="reference noise not measured: the source is a SavedModel, with no Keras layers to run in "
                          "float64; the plain float32 bound applies")
    try:
        twin = float64_twin(ref.keras_model)
        feed = [np.asarray(inputs[s.name], dtype=np.float64) if "float" in s.dtype else np.asarray(inputs[s.name])
                for s in ref.inputs]
        result = twin.predict(feed if len(feed) > 1 else feed[0], batch_size=256, verbose=0)
    except Exception as exc:  # noqa: BLE001 - a layer that refuses float64 is a note, not a failed convert
        interrupt.check()
        return Noise(note=f"reference noise not measured: the model does not run in float64 ({_first_line(exc)}); "
                          "the plain float32 bound applies")
    from convert.reference import by_key

    result64 = by_key(result, ref.outputs)
    values: dict[str, float] = {}
    for spec in ref.outputs:
        out64 = result64[spec.key]
        if out64.dtype != np.float64:
            return Noise(note=f"reference noise not measured: output {spec.name!r} of the float64 rebuild is "
                              f"{out64.dtype} (a layer computes in float32); the plain float32 bound applies")
        ref32 = np.asarray(outputs32[spec.key], dtype=np.float64)
        if ref32.shape != out64.shape:
            return Noise(note=f"reference noise not measured: the float64 rebuild's output {spec.name!r} has shape "
                              f"{list(out64.shape)}, not {list(ref32.shape)}; the plain float32 bound applies")
        diff = np.abs(ref32 - out64)
        noise = float(diff.max() / max(float(np.abs(out64).max()), TINY)) if diff.size else 0.0
        if not np.isfinite(noise) or noise > MAX_NOISE:
            return Noise(note=f"reference noise not recorded: the float64 rebuild differs from the float32 reference "
                              f"by {noise:.3g} of output {spec.name!r}'s scale (> {MAX_NOISE:g}: not the same function); "
                              "the plain float32 bound applies")
        values[spec.key] = noise
    return Noise(values=values)
