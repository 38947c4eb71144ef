"""The page's tolerance rule (web/src/tolerance.js) agrees with edge/tolerance.py on the same cases.

Runs the JS port under node on random and edge cases and compares metrics and verdicts with Python.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.tolerance import FLOAT16, FLOAT32, QUANTIZED, judge_outputs

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def cases() -> list[dict]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(90):
        rows, cols = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        ref = rng.normal(size=(rows, cols)) * (10.0 ** rng.integers(-3, 3))
        noise = rng.normal(size=ref.shape) * (10.0 ** rng.integers(-9, -1))
        act = ref + noise
        if i % 15 == 3:
            act[0, 0] = np.nan
        if i % 11 == 5:
            ref[0, 0] = 0.0
        task = "classification" if cols > 1 and i % 2 else "regression"
        rng_lo, rng_hi = float(ref.min()), float(ref.max())
        if i % 13 == 0:
            rng_hi = rng_lo
        twin = ref + rng.normal(size=ref.shape) * (10.0 ** rng.integers(-9, -2))
        if task == "classification" and i % 4 == 1:  # near ties: rows that are not decisive
            ref[:, 1] = ref[:, 0] + rng.normal(size=rows) * 1e-3
        output = {"name": "y", "key": "output_0", "range": [rng_lo, rng_hi]}
        if i % 5 in (1, 4):  # a recorded reference noise (the float32 bound adds twice it)
            output["reference_noise"] = float(10.0 ** rng.integers(-8, -3))
        out.append({
            "manifest": {"task": task, "outputs": [output]},
            "tolerance": [FLOAT32, FLOAT16, QUANTIZED][i % 3],
            "reference": {"output_0": ref.tolist()},
            "actual": {"output_0": [[None if np.isnan(v) else float(v) for v in row] for row in act]},
            "twin": None if i % 7 == 2 else {"output_0": twin.tolist()},
        })
    # top-1 verdicts: a flip on a decisive row fails, a flip on a near tie is only counted
    ref = [[0.9, 0.1], [0.505, 0.495], [0.2, 0.8]]
    for act in ([[0.1, 0.9], [0.505, 0.495], [0.2, 0.8]], [[0.9, 0.1], [0.495, 0.505], [0.2, 0.8]]):
        out.append({"manifest": {"task": "classification", "outputs": [{"name": "y", "key": "output_0", "range": [0, 1]}]},
                    "tolerance": QUANTIZED, "reference": {"output_0": ref}, "actual": {"output_0": act}, "twin": None})
    return out


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_tolerance_matches_python() -> None:
    data = cases()
    script = (
        "import { judgeOutputs } from './web/src/tolerance.js'; import { readFileSync } from 'node:fs';"
        "const cases = JSON.parse(readFileSync(0, 'utf8'));"
        "const fix = (a) => a.map((r) => r.map((v) => (v === null ? NaN : v)));"
        "const out = cases.map((c) => judgeOutputs(c.manifest, c.tolerance, c.reference, {output_0: fix(c.actual.output_0)}, c.twin));"
        "process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));"
    )
    res = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=ROOT, input=json.dumps(data),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout)
    for case, got in zip(data, js):
        actual = {"output_0": np.array([[np.nan if v is None else v for v in row] for row in case["actual"]["output_0"]])}
        twin = None if case["twin"] is None else {"output_0": np.array(case["twin"]["output_0"])}
        want = judge_outputs(case["manifest"], case["tolerance"], {"output_0": np.array(case["reference"]["output_0"])},
                             actual, twin)
        assert got["passed"] == want["passed"]
        assert got["failures"] == want["failures"]
        w, g = want["outputs"]["y"], got["outputs"]["y"]
        assert sorted(g) == sorted(w)
        for key in ("max_abs", "max_scaled", "range_fraction", "twin_scaled", "precision_loss", "reference_noise",
                    "max_scaled_allowed"):
            if key in w:
                gv = float(g[key]) if isinstance(g[key], str) else g[key]
                assert gv == pytest.approx(w[key], rel=1e-12, nan_ok=True), key
        assert [float(v) if isinstance(v, str) else v for v in g["per_row_abs"]] == pytest.approx(w["per_row_abs"], rel=1e-12)
        for key in ("top1", "decisive_rows", "undecided_rows"):
            assert g.get(key) == w.get(key), key
        assert g["reason"] == w["reason"]
