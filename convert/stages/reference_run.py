"""Stage 3, run the reference: its outputs on DATA and on the golden inputs, its own float32 noise on the
golden inputs (``convert.reference_noise``), the task, and the split of DATA into the rows quantization
calibrates on and the rows it is judged on (``convert.acceptance``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.acceptance import Rows, split_rows
from convert.golden import golden_inputs
from convert.reference import Reference
from convert.stages.sources import Sources


@dataclass
class ReferenceRun:
    """The reference's outputs: on DATA (``on_data``) and on the golden inputs (``golden_inputs``, whose
    row ``kinds`` say where each came from), the task, and the manifest's output records (with ranges and,
    where measured, ``reference_noise``); ``noise_note`` says why no noise was recorded ("" when it was)."""

    on_data: dict[str, np.ndarray]
    golden_inputs: dict[str, np.ndarray]
    kinds: list[str]
    golden_outputs: dict[str, np.ndarray]
    task: str
    outputs: list[dict[str, Any]]
    noise_note: str = ""


@dataclass
class Split:
    """DATA rows quantization calibrates on (with the golden rows) and the held-out rows it is judged on."""

    calibration_data: dict[str, np.ndarray]
    calibration_rows: Rows
    held_rows: Rows


def run_reference(ref: Reference, sources: Sources) -> ReferenceRun:
    """Run ``ref`` on DATA and on the golden inputs (``convert.golden``), and measure its float32 noise on the
    golden inputs against a float64 run (``convert.reference_noise.measure``; never raises for that)."""
    from convert.reference_noise import measure

    on_data = ref.predict(sources.dataset.inputs)
    g_inputs, kinds = golden_inputs(sources.dataset, sources.features)
    g_outputs = ref.predict(g_inputs)
    outputs = []
    for spec in ref.outputs:
        values = np.concatenate([np.asarray(on_data[spec.key], dtype=np.float64).reshape(-1),
                                 np.asarray(g_outputs[spec.key], dtype=np.float64).reshape(-1)])
        outputs.append({**spec.to_json(), "key": spec.key, "range": [float(values.min()), float(values.max())]})
    noise = measure(ref, g_inputs, g_outputs)
    for out in outputs:
        if out["key"] in noise.values:
            out["reference_noise"] = noise.values[out["key"]]
    return ReferenceRun(on_data, g_inputs, kinds, g_outputs, task_of(on_data), outputs, noise.note)


def split(sources: Sources, run: ReferenceRun, seed: int | None) -> Split:
    """Split DATA (seeded by ``seed``) into calibration and held-out rows; the golden rows calibrate too."""
    inputs = sources.dataset.inputs
    calibration_index, held_index = split_rows(inputs, run.golden_inputs, seed)
    calibration_data = {k: np.asarray(v)[calibration_index] for k, v in inputs.items()}
    calibration_rows = Rows.join(Rows(calibration_data, {k: np.asarray(v)[calibration_index] for k, v in run.on_data.items()}),
                                 Rows(dict(run.golden_inputs), dict(run.golden_outputs)))
    held_rows = Rows(inputs, run.on_data).take(held_index)
    return Split(calibration_data, calibration_rows, held_rows)


def task_of(outputs: dict[str, np.ndarray]) -> str:
    """``classification`` when every output is a probability vector (rank >= 2, >= 2 classes, rows sum to 1),
    else ``regression``."""
    for values in outputs.values():
        v = np.asarray(values, dtype=np.float64)
        if v.ndim < 2 or v.shape[-1] < 2:
            return "regression"
        if v.min() < -1e-6 or v.max() > 1 + 1e-6 or not np.allclose(v.sum(axis=-1), 1.0, atol=1e-3):
            return "regression"
    return "classification"
