"""Run a bundle's ``golden.json`` through a Predictor and judge it with the variant's tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.errors import BundleError
from edge.manifest import golden_twin
from edge.runner import Predictor
from edge.tolerance import judge_outputs


def run(predictor: Predictor) -> dict[str, Any]:
    """Judge the predictor's outputs on the golden inputs.

    Returns:
        ``judge_outputs``' result plus ``rows``, ``variant``, ``tolerance``, ``runtime``.

    Raises:
        BundleError: golden.json is missing, malformed, or lacks an input or output of the manifest.
    """
    golden = predictor.bundle.golden()
    inputs = {}
    for spec in predictor.manifest["inputs"]:
        if spec["name"] not in golden["inputs"]:
            raise BundleError(f"golden.json has no input {spec['name']!r}; re-create the bundle")
        inputs[spec["name"]] = np.asarray(golden["inputs"][spec["name"]], dtype=np.float64)
    reference = {}
    for out in predictor.manifest["outputs"]:
        if out["key"] not in golden["outputs"]:
            raise BundleError(f"golden.json has no output {out['key']!r}; re-create the bundle")
        reference[out["key"]] = np.asarray(golden["outputs"][out["key"]], dtype=np.float64)
    actual = predictor.predict(inputs)
    tolerance = predictor.artifact["tolerance"]
    twin = golden_twin(golden, predictor.variant)
    twin_arrays = None if twin is None else {k: np.asarray(v, dtype=np.float64) for k, v in twin.items()}
    result = judge_outputs(predictor.manifest, tolerance, reference, actual, twin_arrays)
    first = next(iter(inputs.values()))
    result.update(rows=int(first.shape[0]), variant=predictor.variant, tolerance=tolerance,
                  runtime=predictor.runtime.describe(), artifact=predictor.artifact["path"])
    return result
