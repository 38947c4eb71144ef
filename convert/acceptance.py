"""Convert-time acceptance of the quantized TFLite variants: measured on rows calibration saw and on rows it did not.

DATA is split once per conversion (:func:`split_rows`): every ``HELD_OUT_EVERY``-th row, from a seeded
offset, is held apart; calibration (and the fold's ranges and GPTQ rounding) use the rest and every golden
row. A converted variant is run in-process with ``tf.lite.Interpreter`` on both sets, fed as the runner
feeds it (its ``input_transform`` first), and judged by the project's one rule,
``edge.tolerance.judge_outputs``, with the variant's declared tolerance. The verdict goes into the
manifest as ``status`` and ``measured`` (and ``rejection`` when it fails).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

HELD_OUT_EVERY = 5  # one DATA row in five is held apart from calibration
MEASURE_ROWS = 2000  # rows of each set an artifact is run on (spread over the set)
BATCH = 256


@dataclass
class Rows:
    """Model inputs (raw, as DATA holds them) and the reference model's outputs on them, rows aligned."""

    inputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0]) if self.inputs else 0

    def take(self, index: np.ndarray) -> "Rows":
        return Rows({k: np.asarray(v)[index] for k, v in self.inputs.items()},
                    {k: np.asarray(v)[index] for k, v in self.reference.items()})

    def spread(self, limit: int = MEASURE_ROWS) -> "Rows":
        """At most ``limit`` rows, spread over the set (all of them when there are fewer)."""
        if self.count <= limit:
            return self
        return self.take(np.unique(np.linspace(0, self.count - 1, num=limit).round().astype(int)))

    @staticmethod
    def join(first: "Rows", second: "Rows") -> "Rows":
        return Rows({k: np.concatenate([np.asarray(first.inputs[k]), np.asarray(second.inputs[k])]) for k in first.inputs},
                    {k: np.concatenate([np.asarray(first.reference[k]), np.asarray(second.reference[k])])
                     for k in first.reference})


def split_rows(data: Mapping[str, np.ndarray], golden: Mapping[str, np.ndarray], seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, held-out indices) into DATA.

    Every ``HELD_OUT_EVERY``-th row from an offset drawn with ``seed`` (0 when None) is held out, except rows
    equal to a golden row (golden rows are always calibrated on, so they cannot be held apart). With fewer
    than ``2 * HELD_OUT_EVERY`` rows nothing is held out.
    """
    total = int(next(iter(data.values())).shape[0])
    everything = np.arange(total)
    if total < 2 * HELD_OUT_EVERY:
        return everything, everything[:0]
    offset = int(np.random.default_rng(0 if seed is None else seed).integers(HELD_OUT_EVERY))
    held = everything[offset::HELD_OUT_EVERY]
    names = sorted(data)
    seen = {b"".join(np.ascontiguousarray(golden[n][i]).tobytes() for n in names)
            for i in range(int(next(iter(golden.values())).shape[0]))} if golden else set()
    held = np.asarray([i for i in held if b"".join(np.ascontiguousarray(data[n][i]).tobytes() for n in names) not in seen],
                      dtype=int)
    return np.setdiff1d(everything, held), held


def run_tflite(flatbuffer: bytes, inputs: Mapping[str, np.ndarray], dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Run a TFLite model's ``serving_default`` signature on ``inputs`` (already transformed), in batches.

    Raises:
        ValueError / RuntimeError: the interpreter cannot load or run the model.
    """
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=bytes(flatbuffer))
    runner = interpreter.get_signature_runner("serving_default")
    total = int(next(iter(inputs.values())).shape[0])
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, BATCH):
        feed = {n: np.asarray(v[start:start + BATCH], dtype=dtypes[n]) for n, v in inputs.items()}
        for key, value in runner(**feed).items():
            parts.setdefault(key, []).append(np.array(value))
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def measure(flatbuffer: bytes, transforms: Sequence[Mapping[str, Any]], rows: Rows, manifest_like: Mapping[str, Any],
            tolerance: Mapping[str, Any], dtypes: Mapping[str, str]) -> dict[str, Any]:
    """Judge one artifact on ``rows``: ``{"rows", "range_fraction", "top1", "passed", "failures"}``.

    ``range_fraction`` is the largest over the outputs, ``top1`` the smallest (None for regressions).
    """
    from edge.tolerance import judge_outputs
    from edge.transform import apply

    if rows.count == 0:
        return {"rows": 0, "range_fraction": 0.0, "top1": None, "passed": True, "failures": []}
    try:
        actual = run_tflite(flatbuffer, apply(list(transforms), rows.inputs), dtypes)
    except (RuntimeError, ValueError) as exc:  # the interpreter refuses the model (a kernel's prepare check)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return {"rows": rows.count, "range_fraction": float("inf"), "top1": None, "passed": False,
                "failures": [f"tf.lite cannot run it ({first})"]}
    verdict = judge_outputs(manifest_like, tolerance, rows.reference, actual)
    metrics = list(verdict["outputs"].values())
    fractions = [float(m["range_fraction"]) for m in metrics]
    top1 = [float(m["top1"]) for m in metrics if m.get("top1") is not None]
    return {"rows": rows.count, "range_fraction": max(fractions) if fractions else float("inf"),
            "top1": min(top1) if top1 else None, "passed": bool(verdict["passed"]),
            "failures": [str(f) for f in verdict["failures"]]}


@dataclass
class Verdict:
    """An artifact measured on the calibration rows and on the held-out rows."""

    calibration: dict[str, Any]
    held_out: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.calibration["passed"] and self.held_out["passed"])

    @property
    def error(self) -> float:
        """The larger range fraction of the two sets (what a search minimises)."""
        return max(self.calibration["range_fraction"], self.held_out["range_fraction"])

    def measured(self) -> dict[str, Any]:
        """The manifest's ``measured`` block."""
        return {name: {"rows": int(m["rows"]),
                       "range_fraction": float(m["range_fraction"]) if np.isfinite(m["range_fraction"]) else None,
                       "top1": m["top1"]}
                for name, m in (("calibration", self.calibration), ("held_out", self.held_out))}

    def summary(self) -> str:
        """One line with the numbers, e.g. ``max error 0.41% of the output range on 431 calibration rows,
        0.38% on 101 held-out rows``."""
        def part(m: dict[str, Any], label: str) -> str:
            top1 = f", top-1 {m['top1']:.2%}" if m["top1"] is not None else ""
            return f"{m['range_fraction']:.3%} on {m['rows']} {label} rows{top1}"

        if self.held_out["rows"] == 0:  # nothing was held out: say so rather than "0.000% on 0 held-out rows"
            return (f"max error {part(self.calibration, 'calibration')}; no held-out rows (DATA's rows all went to "
                    f"calibration: under {2 * HELD_OUT_EVERY} rows, or each a golden row; pass more rows to judge unseen ones)")
        return f"max error {part(self.calibration, 'calibration')}, {part(self.held_out, 'held-out')}"

    def rejection(self) -> str:
        """Why the artifact misses its bound: each failing set with the rule's own words."""
        failed = [f"{label}: {'; '.join(m['failures'])}"
                  for label, m in (("calibration rows", self.calibration), ("held-out rows", self.held_out))
                  if not m["passed"]]
        return f"misses its bound ({self.summary()}); " + "; ".join(failed)


def judge(flatbuffer: bytes, transforms: Sequence[Mapping[str, Any]], calibration: Rows, held_out: Rows,
          manifest_like: Mapping[str, Any], variant: str, dtypes: Mapping[str, str]) -> Verdict:
    """Measure an artifact on both sets with its variant's declared tolerance (``edge.tolerance.for_variant``)."""
    from edge.tolerance import for_variant

    tolerance = for_variant(variant)
    return Verdict(measure(flatbuffer, transforms, calibration.spread(), manifest_like, tolerance, dtypes),
                   measure(flatbuffer, transforms, held_out.spread(), manifest_like, tolerance, dtypes))
