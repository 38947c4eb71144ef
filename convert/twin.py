"""The float16 precision twin: what a faithful float16 artifact must compute.

The twin is the plain float32 conversion with exactly the constants the float16 artifact stores in half
precision rounded to float16 (and back), run in float32 by ``tf.lite``. A faithful artifact equals its twin
to float32 noise; the twin's own distance from the reference is the precision the variant gives up.
Rounding the Keras model's weights instead would round different numbers wherever the converter folds
constants (BatchNormalization into kernels, Mul/Add chains), so the twin is built from the converter's
float graph, matched to the float16 artifact operator by operator (``convert.tflite_fp16.half_constants``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from convert.errors import DeployKitError

SIGNATURE = "serving_default"


def twin_flatbuffer(fp32: bytes, fp16: bytes) -> bytes:
    """The float32 model with every constant the float16 model holds in half precision rounded to float16.

    Raises:
        DeployKitError: the two models' graphs do not line up operator by operator.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    from convert.tflite_fp16 import as_float16, half_constants, serialize

    m16 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp16))
    m32 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp32))
    pairs = half_constants(m16, m32)
    if pairs is None:
        raise DeployKitError("the float16 model's graph does not match the float32 model's operator by operator, "
                             "so no precision twin can be built")
    for pair in pairs:
        tensor = m32.subgraphs[pair.graph].tensors[pair.tensor32]
        rounded = as_float16(pair.value).astype("<f4")
        m32.buffers[tensor.buffer].data = np.frombuffer(rounded.tobytes(), dtype=np.uint8)
    return serialize(m32)


def run_flatbuffer(flatbuffer: bytes, manifest: Mapping[str, Any], inputs: Mapping[str, np.ndarray], *,
                   delegates: bool = True) -> dict[str, np.ndarray]:
    """Outputs of a TFLite model (``tf.lite``, float32) on inputs named as in the manifest, keyed by output key;
    ``delegates=False`` runs TFLite's builtin kernels without the default XNNPACK delegate.

    Raises:
        DeployKitError: the model lacks the serving signature, or an input/output of the manifest.
    """
    import tensorflow as tf

    if delegates:
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    else:
        interpreter = tf.lite.Interpreter(model_content=flatbuffer, experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    signatures = interpreter.get_signature_list()
    name = SIGNATURE if SIGNATURE in signatures else next(iter(signatures), None)
    if name is None:
        raise DeployKitError("the TFLite model has no signature to run")
    runner = interpreter.get_signature_runner(name)
    feeds = {s["name"]: np.asarray(inputs[s["name"]]).astype(s["dtype"]) for s in manifest["inputs"]}
    try:
        outputs = runner(**feeds)
    except (KeyError, ValueError) as exc:
        raise DeployKitError(f"cannot run the TFLite model on the manifest's inputs ({exc})") from None
    missing = [o["key"] for o in manifest["outputs"] if o["key"] not in outputs]
    if missing:
        raise DeployKitError(f"the TFLite model has no output {missing[0]!r}")
    return {o["key"]: np.asarray(outputs[o["key"]], dtype=np.float64) for o in manifest["outputs"]}


def twin_outputs(fp32: bytes, fp16: bytes, manifest: Mapping[str, Any],
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The precision twin's outputs on ``inputs``.

    Raises:
        DeployKitError: no twin can be built, or it cannot run on the inputs.
    """
    return run_flatbuffer(twin_flatbuffer(fp32, fp16), manifest, inputs)


def _converter_error(actual: Mapping[str, np.ndarray], twin: Mapping[str, np.ndarray],
                     reference: Mapping[str, np.ndarray], manifest_like: Mapping[str, Any]) -> float:
    """max|artifact - twin| / max|twin| over the outputs (inf when the artifact's outputs are not finite)."""
    from edge.tolerance import compare_output

    error = 0.0
    for out in manifest_like["outputs"]:
        ref = np.asarray(reference[out["key"]], dtype=np.float64)
        metrics = compare_output(ref, actual[out["key"]], tuple(out["range"]), False, twin=twin[out["key"]])
        error = max(error, float(metrics["twin_scaled"]))
    return error


def precision_check(fp16: bytes, inputs: Mapping[str, np.ndarray], twin: Mapping[str, np.ndarray],
                    reference: Mapping[str, np.ndarray], manifest_like: Mapping[str, Any],
                    fp32: bytes | None = None) -> dict[str, Any]:
    """Convert's verdict on a float16 artifact from its precision twin, before any runtime runs it.

    ``manifest_like`` needs ``inputs`` and ``outputs`` (``key``, ``range``); ``reference`` and ``twin`` are the
    reference's and the twin's outputs on the golden rows ``inputs``. The artifact itself is run (``tf.lite``)
    on the same rows for the converter error (where tf.lite's XNNPACK delegate refuses it, artifact and twin, rebuilt
    from ``fp32``, both run on the builtin kernels). Returns the artifact's manifest fields: ``precision`` (``rows``,
    ``precision_loss``: max|twin - ref| / range, ``converter_error``: max|artifact - twin| / max|twin|, each the
    largest over the outputs) and ``status``: ``rejected`` (with ``rejection``) when the precision loss alone
    exceeds the float16 range bound, the model then losing more than the bound in half precision whatever the
    converter does; else ``accepted``. A converter error above its bound does not reject (verify fails it).
    Never raises: an artifact tf.lite cannot run gets ``converter_error`` None.
    """
    from edge.tolerance import FLOAT16, compare_output

    first = next(iter(reference.values()))
    rows = int(np.asarray(first).shape[0])
    loss = 0.0
    for out in manifest_like["outputs"]:
        ref = np.asarray(reference[out["key"]], dtype=np.float64)
        metrics = compare_output(ref, ref, tuple(out["range"]), False, twin=twin[out["key"]])
        loss = max(loss, float(metrics["precision_loss"]))
    error: float | None = None
    try:
        try:
            error = _converter_error(run_flatbuffer(fp16, manifest_like, inputs), twin, reference, manifest_like)
        except RuntimeError:  # tf.lite's XNNPACK delegate refuses some float16 graphs (a DEPTHWISE_CONV_2D of
            if fp32 is None:  # MobileNetV2)
                raise
            error = math.inf
        if not math.isfinite(error) and fp32 is not None:
            # refused, or answered NaN (TF 2.19's tf.lite XNNPACK on the test image CNN, which LiteRT and
            # tflite-runtime run finitely): artifact and twin both on the builtin kernels, so only the
            # converter differs
            actual = run_flatbuffer(fp16, manifest_like, inputs, delegates=False)
            builtin_twin = run_flatbuffer(twin_flatbuffer(fp32, fp16), manifest_like, inputs, delegates=False)
            error = _converter_error(actual, builtin_twin, reference, manifest_like)
        if not math.isfinite(error):  # never written into the manifest; the runtimes' verdict says what it does
            error = None
    except Exception:  # noqa: BLE001 - the runtimes' verdict will say why it cannot run
        from convert import interrupt

        interrupt.check()
        error = None
    fields: dict[str, Any] = {"precision": {"rows": rows, "precision_loss": loss, "converter_error": error},
                              "status": "accepted"}
    bound = float(FLOAT16["max_range_fraction"])
    if loss > bound:
        limit = float(FLOAT16["max_twin_scaled"])
        faithful = "" if error is None else (
            f"; converter error (artifact vs twin) {error:.3g} of the scale, within {limit:g}: the converter is faithful"
            if error <= limit else f"; converter error (artifact vs twin) {error:.3g} of the scale > {limit:g}")
        fields["status"] = "rejected"
        fields["rejection"] = (f"precision loss: the model itself loses {loss:.3%} of the output range in float16 (its "
                               f"precision twin, the float32 graph with the stored constants rounded to float16, against "
                               f"the reference on {rows} golden rows) > {bound * 100:g}%{faithful}")
    return fields
