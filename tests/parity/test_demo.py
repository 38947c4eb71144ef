"""`deploykit demo --no-serve`: the whole flow on the Boston model, parity included, in every runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_demo_trains_converts_and_proves_parity(tmp_path: Path) -> None:
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "demo", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = tmp_path / "demo" / "bundle"
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["passed"] is True
    pairs = {(r["artifact"], r["runtime"]) for r in parity["results"]}
    variants = ("fp32", "fp16", "dynamic", "int8", "int16x8")
    want = {(f"edge/model.{v}.tflite", rt) for v in variants for rt in ("litert", "tflite-runtime")}
    want |= {(f"web/model/{kind}/model.json", f"chromium-{b}") for kind in ("graph", "layers") for b in ("cpu", "wasm", "webgl")}
    assert pairs == want
    assert all(r["passed"] for r in parity["results"])
    assert (bundle / "report.html").is_file()
    assert json.loads((bundle / "manifest.json").read_text())["parity"]["passed"] is True
