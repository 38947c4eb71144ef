"""The dynamic-range variant's one choice: per-tensor or per-channel Dense weights, measured on the calibration rows.

``convert.tflite.convert_variant`` converts per-tensor (it runs on tflite-runtime 2.14) and calls
:func:`dynamic_weights`, which keeps it unless it misses the variant's bound where per-channel holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np


def dynamic_weights(saved_model_dir: Path, per_tensor: bytes,
                    calibration: Callable[[], Iterator[dict[str, np.ndarray]]]) -> tuple[bytes, str]:
    """Per-tensor Dense weights when they hold the quantized bound on the calibration rows, else per-channel.

    Per-tensor dynamic range (one scale per Dense kernel, FULLY_CONNECTED version 9) runs on tflite-runtime
    2.14; per-channel (version 12) needs TFLite 2.17, i.e. LiteRT. One scale per kernel loses the channels
    whose weights are much smaller than the kernel's largest (12% of the output range on a model whose
    second half of a Dense's channels is 100x smaller, 0.3% per-channel). Both are measured against the
    plain float32 conversion on the calibration rows (up to 2,000 DATA rows and every golden row; a
    subset for large inputs, see ``_check_rows``): max|y - ref| over each output's range there, against the variant's declared
    ``max_range_fraction``. Per-channel is taken only when per-tensor misses and per-channel holds; its
    ``min_runtime_version`` (2.17.0) then declares the artifact LiteRT-only. When neither holds, per-tensor
    is kept (it runs everywhere) and the note gives both errors.

    Returns:
        the flatbuffer and a note ('' when per-tensor holds).
    """
    import tensorflow as tf

    from edge.tolerance import for_variant

    bound = float(for_variant("dynamic")["max_range_fraction"])
    rows = _check_rows(list(calibration()))
    if not rows:
        return per_tensor, ""
    plain = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
    reference = _run_rows(plain, rows)
    if reference is None:
        return per_tensor, ""
    tensor_error = _range_fraction(reference, _run_rows(per_tensor, rows))
    if tensor_error is None or tensor_error <= bound:
        return per_tensor, ""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    per_channel = converter.convert()
    channel_error = _range_fraction(reference, _run_rows(per_channel, rows))
    if channel_error is None or channel_error > bound:  # neither holds: keep the one every runtime can run
        return per_tensor, (f"per-tensor Dense weights miss the bound on the calibration rows ({100 * tensor_error:.3g}% "
                            "of the output range)" + (f"; per-channel too ({100 * channel_error:.3g}%)"
                                                      if channel_error is not None else ""))
    return per_channel, ("LiteRT only: per-channel Dense weights (FULLY_CONNECTED version 12 needs TFLite >= 2.17); "
                         f"per-tensor missed the bound on the calibration rows ({100 * tensor_error:.3g}% of the output "
                         f"range vs {100 * channel_error:.3g}% per-channel)")


DYNAMIC_CHECK_VALUES = 16_000_000  # input values per batch (64 MB of float32): image models check a subset
GOLDEN_TAIL = 64  # representative() yields the golden rows last; these are always checked


def _check_rows(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The calibration rows to measure on: all of them, or evenly spaced ones plus the last ``GOLDEN_TAIL``
    when their inputs exceed ``DYNAMIC_CHECK_VALUES`` values."""
    if not rows:
        return rows
    per_row = sum(int(np.asarray(v).size) for v in rows[0].values())
    keep = max(GOLDEN_TAIL, DYNAMIC_CHECK_VALUES // max(per_row, 1))
    if len(rows) <= keep:
        return rows
    head, tail = rows[:-GOLDEN_TAIL], rows[-GOLDEN_TAIL:]
    picks = np.linspace(0, len(head) - 1, num=max(keep - GOLDEN_TAIL, 1)).round().astype(int)
    return [head[i] for i in np.unique(picks)] + tail


def _run_rows(flatbuffer: bytes, rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    """A model's outputs (float64) on single-row inputs: one batch, or row by row when the batch is fixed;
    None when it cannot run them."""
    import tensorflow as tf

    try:
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))
    except (ValueError, RuntimeError, StopIteration):
        return None
    try:
        batch = runner(**{name: np.concatenate([row[name] for row in rows]) for name in rows[0]})
        return {key: np.asarray(value, dtype=np.float64) for key, value in batch.items()}
    except (ValueError, RuntimeError):
        pass
    outputs: dict[str, list[np.ndarray]] = {}
    try:
        for row in rows:
            for key, value in runner(**row).items():
                outputs.setdefault(key, []).append(np.asarray(value, dtype=np.float64))
    except (ValueError, RuntimeError, KeyError):
        return None
    return {key: np.concatenate(values) for key, values in outputs.items()}


def _range_fraction(reference: dict[str, np.ndarray], actual: dict[str, np.ndarray] | None) -> float | None:
    """The largest max|y - ref| / (max ref - min ref) over the outputs (None if they cannot be compared)."""
    if actual is None or set(actual) != set(reference):
        return None
    worst = 0.0
    for key, ref in reference.items():
        span = float(ref.max() - ref.min()) if ref.size else 0.0
        if span > 0 and actual[key].shape == ref.shape:
            worst = max(worst, float(np.abs(actual[key] - ref).max()) / span)
    return worst
