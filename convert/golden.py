"""Feature statistics and golden inputs: written once, read by every runtime."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from convert.data import KNOWN_FEATURES, Dataset

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
REFERENCE_SAMPLE = 1000
"""The most values of a feature's drift reference sample (the edge's KS test against recent inputs)."""
REFERENCE_VALUES = 20_000
"""The most reference values of all features together (the manifest is fetched by the page too): a wide model
gets ``REFERENCE_VALUES // features`` per feature, at least ``MIN_REFERENCE_SAMPLE``."""
MIN_REFERENCE_SAMPLE = 100
COURSE_ROW = {"rm": 6.0, "tax": 250.0, "age": 66.5}
DATA_ROWS = 24
GOLDEN_VALUES = 1_000_000
"""The most input values the golden rows of DATA hold in all (golden.json is written twice, fetched by the page
and read by every runtime): a model whose row is large (a 224 x 224 x 3 image is 150,528 values) gets
``GOLDEN_VALUES // values per row`` rows, at least ``MIN_DATA_ROWS``."""
MIN_DATA_ROWS = 4
MAX_CORNER_FEATURES = 8


def feature_columns(dataset: Dataset, layout: str) -> list[tuple[str, str, int, np.ndarray]]:
    """(feature name, input name, column index, values) for every feature of a tabular dataset."""
    names = dataset.feature_names or []
    if layout == "single":
        (input_name, x), = dataset.inputs.items()
        return [(n, input_name, i, x[:, i].astype(np.float64)) for i, n in enumerate(names)]
    return [(n, n, 0, dataset.inputs[n].reshape(-1).astype(np.float64)) for n in names]


def reference_size(features: int) -> int:
    """How many reference values each of ``features`` features keeps (``REFERENCE_VALUES``)."""
    return max(MIN_REFERENCE_SAMPLE, min(REFERENCE_SAMPLE, REFERENCE_VALUES // max(features, 1)))


def feature_stats(name: str, input_name: str, index: int, values: np.ndarray,
                  sample: int = REFERENCE_SAMPLE) -> dict[str, Any]:
    """The manifest's record of one feature: label, unit, range, moments, quantiles, a reference sample of at
    most ``sample`` values (evenly spaced ranks). Values that are float32 numbers (what a float32 column holds)
    are written as float32's shortest decimal (``6.575``, not ``6.574999809265137``): the same numbers, a
    third of the text, and equal to what a client sends for the same data."""
    label, unit = KNOWN_FEATURES.get(name, (name, None))
    ordered = np.sort(values)
    if len(ordered) > sample:
        ordered = ordered[np.linspace(0, len(ordered) - 1, sample).round().astype(int)]
    if np.array_equal(ordered.astype(np.float32).astype(np.float64), ordered):
        reference = [float(str(v)) for v in ordered.astype(np.float32)]
    else:
        reference = [float(v) for v in ordered]
    return {
        "name": name, "label": label, "unit": unit, "input": input_name, "index": index,
        "min": float(values.min()), "max": float(values.max()),
        "mean": float(values.mean()), "std": float(values.std()),
        "median": float(np.median(values)),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in QUANTILES},
        "reference_sample": reference,
    }


def golden_inputs(dataset: Dataset, features: list[dict[str, Any]] | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Golden rows: the course's [6, 250, 66.5] (Boston models), rows of DATA (``DATA_ROWS``, fewer for large
    rows: ``GOLDEN_VALUES``), and the corners of the range.

    Returns (inputs keyed by input name, a kind per row).
    """
    total = dataset.rows
    per_row = sum(int(np.prod(values.shape[1:], dtype=np.int64)) for values in dataset.inputs.values())
    count = min(DATA_ROWS, total, max(MIN_DATA_ROWS, GOLDEN_VALUES // max(per_row, 1)))
    picks = np.unique(np.linspace(0, total - 1, num=count).round().astype(int))
    rows = {name: [values[i] for i in picks] for name, values in dataset.inputs.items()}
    kinds = ["data"] * len(picks)
    if features:
        names = [f["name"] for f in features]
        head = [[COURSE_ROW[n] for n in names]] if set(COURSE_ROW) == set(names) else []
        bounds = [(f["min"], f["max"]) for f in features]
        if len(features) <= MAX_CORNER_FEATURES:
            corners = [list(c) for c in itertools.product(*bounds)]
        else:
            corners = [[b[0] for b in bounds], [b[1] for b in bounds]]
        prefix: dict[str, list] = {name: [] for name in rows}
        for row in head:
            _append_row(prefix, dataset, features, row)
        for row in corners:
            _append_row(rows, dataset, features, row)
        rows = {name: prefix[name] + rows[name] for name in rows}
        kinds = ["course"] * len(head) + kinds + ["corner"] * len(corners)
    dtype = {name: values.dtype for name, values in dataset.inputs.items()}
    return {name: np.asarray(v, dtype=dtype[name]) for name, v in rows.items()}, kinds


def _append_row(rows: dict[str, list], dataset: Dataset, features: list[dict[str, Any]], values: list[float]) -> None:
    by_input: dict[str, np.ndarray] = {}
    for f, value in zip(features, values):
        template = dataset.inputs[f["input"]]
        row = by_input.setdefault(f["input"], np.zeros(template.shape[1:], dtype=template.dtype))
        if row.ndim == 0:
            by_input[f["input"]] = np.asarray(value, dtype=template.dtype)
        else:
            row.reshape(-1)[f["index"]] = value
    for name, row in by_input.items():
        rows[name].append(row)


def golden_json(inputs: dict[str, np.ndarray], kinds: list[str], outputs: dict[str, np.ndarray],
                twins: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """golden.json: inputs and reference outputs as exact float values (float32 values printed in full), and
    per variant the precision twin's outputs (``twins``: ``float16``, see ``convert.twin``)."""
    golden: dict[str, Any] = {
        "schema_version": 1,
        "kinds": kinds,
        "inputs": {name: np.asarray(v).tolist() for name, v in inputs.items()},
        "outputs": {key: np.asarray(v, dtype=np.float64).tolist() for key, v in outputs.items()},
    }
    if twins:
        golden["twins"] = {variant: {key: np.asarray(v, dtype=np.float64).tolist() for key, v in outs.items()}
                           for variant, outs in twins.items()}
    return golden
