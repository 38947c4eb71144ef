"""Stage 7, write each TFLite variant: convert, judge the quantized ones on held-out rows, record or skip.

Each variant succeeds or is skipped with its reason; one variant's failure never stops the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convert.reference import Reference
from convert.stages.export import Export
from convert.stages.quantized import Quantized
from convert.stages.reference_run import ReferenceRun, Split
from convert.stages.sources import Sources
from convert.stages.written import Progress, Written, failure
from convert.tflite import Variant, convert_variant, representative


def write_tflite(variants: Sequence[Variant], ref: Reference, sources: Sources, run: ReferenceRun, split: Split,
                 exported: Export, quantized: Quantized, written: Written, progress: Progress, work: Path) -> None:
    """Write ``edge/<variant>.tflite`` for every variant into ``written.staging``; record each in ``written``.

    Quantized variants take ``quantized``'s SavedModel (folded and rounded) when there is one, the
    dynamic-range variant the fold before rounding; they calibrate on the calibration rows and every golden
    row, and are judged on the held-out rows (``convert.mixed_precision.settle``; for int8 it may calibrate the
    fold before rounding too, when its search needs float operators with exact weights). int16x8 of a Keras model with
    Embeddings converts from a copy whose Embeddings gather directly (``convert.int16_tokens``), exported under
    ``work``. The float16 variant, when its precision twin misses the float16 bound on the calibration or the
    held-out rows, keeps the fewest constants in float32 that hold it (``convert.fp16_search.settle_fp16``).
    Raises only KeyboardInterrupt: a variant that fails is skipped with its reason.
    """
    staging = written.staging
    (staging / "edge").mkdir()
    dtypes = {s.name: ("float32" if "float" in s.dtype else s.dtype) for s in ref.inputs}
    raw_inputs = split.calibration_data
    raw_golden = {k: np.asarray(v, dtype=sources.dataset.inputs[k].dtype) for k, v in run.golden_inputs.items()}
    from edge.transform import apply as apply_transforms

    folded = quantized.saved_model is not None
    folded_inputs = apply_transforms(quantized.transforms, raw_inputs) if folded else raw_inputs
    folded_golden = apply_transforms(quantized.transforms, raw_golden) if folded else raw_golden
    plain_note = quantized.reason if sources.layout or exported.keras_model is None else ""
    fp32_bytes = None
    fp32_flatbuffer: bytes | None = None
    for variant in variants:
        progress(f"Converting TFLite {variant.value}")
        use_fold = folded and variant.quantized
        source = quantized.saved_model if use_fold else exported.saved_model
        unrounded = use_fold and variant is Variant.DYNAMIC and quantized.unrounded is not None
        if unrounded:
            source = quantized.unrounded
        rel = f"edge/{variant.file_name}"
        try:
            keras = quantized.keras_model if use_fold else exported.keras_model
            if variant is Variant.INT16X8 and keras is not None:  # token inputs: Embeddings as plain gathers
                from convert.int16_tokens import int16x8_source

                source = int16x8_source(keras, source, work)
            calibration = (representative(folded_inputs if use_fold else raw_inputs, dtypes,
                                          always=folded_golden if use_fold else raw_golden)
                           if variant.calibrated or variant is Variant.DYNAMIC else None)
            result = convert_variant(source, variant, staging / rel, calibration)
        except Exception as exc:  # convert_variant reports the converter's errors; this is anything else
            result, error = None, failure(exc)
        else:
            error = result.error
        if error:
            (staging / rel).unlink(missing_ok=True)
            written.skip("tflite", error, rel, variant=variant.value)
            continue
        transforms = quantized.transforms if use_fold else []
        judged: dict[str, Any] = {"status": "accepted"}
        outcome_note = ""
        if variant is Variant.FP32:
            fp32_flatbuffer = result.path.read_bytes()
        if variant is Variant.FP16 and fp32_flatbuffer is not None:
            from convert.fp16_search import settle_fp16
            from convert.tflite import operators

            found = settle_fp16(result.path.read_bytes(), fp32_flatbuffer, split.calibration_rows, split.held_rows,
                                {"outputs": run.outputs}, dtypes, progress=progress)
            if found.flatbuffer is not None:
                result.path.write_bytes(found.flatbuffer)
                result.ops = operators(found.flatbuffer)
            judged.update(found.fields)
            outcome_note = found.note
        if variant.quantized:
            from convert.mixed_precision import settle

            progress(f"Judging TFLite {variant.value} on calibration and held-out rows")
            exact_weights = None
            if variant is Variant.INT8 and use_fold and quantized.unrounded_source is not None:
                from convert.tflite_int8 import calibrate

                source_of, generator = quantized.unrounded_source, calibration
                exact_weights = lambda: calibrate(source_of(), generator)  # noqa: E731 - made only if the search needs it
            outcome = settle(variant, result.path.read_bytes(), result.calibrated, transforms,
                             split.calibration_rows, split.held_rows, {"task": run.task, "outputs": run.outputs}, dtypes,
                             exact_weights)
            if outcome.flatbuffer is not None:
                from convert.tflite import operators

                result.path.write_bytes(outcome.flatbuffer)
                result.ops = operators(outcome.flatbuffer)
            judged = outcome.fields()
            outcome_note = outcome.note
        size = result.path.stat().st_size
        if variant is Variant.FP32:
            fp32_bytes = size
        note = ""
        if variant.quantized:
            note = (quantized.unrounded_note if unrounded else quantized.note) if use_fold else plain_note
        shrinks = None if fp32_bytes is None or variant is Variant.FP32 else size < fp32_bytes
        notes = [note]
        if shrinks is False:
            notes.append(f"quantizing did not shrink the model ({size} vs {fp32_bytes} bytes fp32)")
        notes += [result.note, exported.note, outcome_note]
        io = {"inputs": {s.name: s.name for s in ref.inputs}, "outputs": {s.key: s.key for s in ref.outputs}}
        written.add(rel, "tflite", variant.value, transforms=transforms, io=io,
                    runtime=runtime_of(result.path, result.ops), shrinks=shrinks,
                    note="; ".join(n for n in notes if n), judged=judged, fp32_bytes=fp32_bytes)


def runtime_of(path: Path, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """What a TFLite artifact needs: its operators with versions, the minimum TFLite runtime (the converter's,
    raised by the kit's kernel table) and the kernels of that table it uses (``edge.tflite_file.kernel_needs``)."""
    from edge.tflite_file import kernel_needs, tflite_min_runtime

    runtime: dict[str, Any] = {"ops": ops, "converter": f"tensorflow {tf_version()}"}
    minimum = tflite_min_runtime(path)
    if minimum:
        runtime["min_tflite_runtime"] = minimum
    kernels = kernel_needs(path)
    if kernels:
        runtime["kernels"] = kernels
    return runtime


def tf_version() -> str:
    """The installed TensorFlow's version."""
    import tensorflow as tf

    return tf.__version__
