"""The model zoo: each model x artifact x runtime is one case, verified in its real runtime.

Outcomes below were measured (see the issue-3 report). ``pass`` cases must pass. ``PARITY`` cases are
real tolerance misses of today's converter (xfail, not strict: a fix shows as XPASS in the -ra summary;
then drop the entry; tolerances are never widened). ``UNSUPPORTED`` cases assert the kit's message; nothing is skipped.
"""

from __future__ import annotations

import pytest

from convert.parity.engine import RUNTIMES

pytestmark = [pytest.mark.slow, pytest.mark.browser]

MODELS = ["boston_linear", "boston_mlp", "digits_cnn", "two_in_two_out", "sequence_lstm", "bn_dropout"]
VARIANTS = {"fp32": "float32", "fp16": "float16", "dynamic": "dynamic", "int8": "int8", "int16x8": "int16x8"}
TFLITE_RT = ("litert", "tflite-runtime")
BROWSER_RT = ("chromium-cpu", "chromium-wasm", "chromium-webgl")
ARTIFACTS = [f"edge/model.{v}.tflite" for v in VARIANTS] + ["web/model/graph/model.json", "web/model/layers/model.json"]

PARITY: dict[tuple[str, str, str], str] = {}
for rt in TFLITE_RT:
    PARITY.update({
        # fp16 kernels alone (BN fused, biases kept float32) give 1.12e-3 in a float64 simulation: inherent
        ("bn_dropout", "edge/model.fp16.tflite", rt): "fp16 max rel 1.12e-3 > 1e-3 on the softmax",
        # 0.95-1.2 % of range after the fold + GPTQ rounding; int8's own limit on this steep classifier
        ("bn_dropout", "edge/model.int8.tflite", rt): "int8 softmax off by ~1-1.2% of range",

        # the unrolled LSTM's int8 (12 steps of int8 gates)
        ("sequence_lstm", "edge/model.int8.tflite", rt): "int8 off by 3.2% of range",
    })

# Truly unsupported today (the LSTM is unrolled by the converter, so fp32/fp16/dynamic and the graph model run):
# int16x8 calibration of the integer token input, and TFJS wasm's _FusedMatMul with a rank-3 bias.
UNSUPPORTED_TFLITE = {("sequence_lstm", "int16x8")}
UNSUPPORTED_GRAPH = {("sequence_lstm", "chromium-wasm")}


def _cases():
    for model in MODELS:
        for artifact in ARTIFACTS:
            for rt in (TFLITE_RT if artifact.endswith(".tflite") else BROWSER_RT):
                marks = []
                if (model, artifact, rt) in PARITY:
                    marks.append(pytest.mark.xfail(reason=PARITY[(model, artifact, rt)], strict=False))
                short = artifact.rsplit("/", 1)[-1].replace("model.", "").replace(".tflite", "") if artifact.endswith(
                    ".tflite") else artifact.split("/")[2]
                yield pytest.param(model, artifact, rt, marks=marks, id=f"{model}-{short}-{rt}")


@pytest.mark.parametrize("model,artifact,runtime", list(_cases()))
def test_zoo_case(zoo, model: str, artifact: str, runtime: str) -> None:
    bundle, report = zoo(model)
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    if artifact.endswith(".tflite") and (model, VARIANTS[artifact.split(".")[1]]) in UNSUPPORTED_TFLITE:
        variant = VARIANTS[artifact.split(".")[1]]
        [skip] = [s for s in manifest["skipped"] if s["format"] == "tflite" and s.get("variant") == variant]
        assert skip["reason"].startswith(f"the TFLite converter cannot make {variant}: ")
        assert not any(r.artifact == artifact for r in report.results)
        assert not report.passed
        return
    results = [r for r in report.results if r.artifact == artifact and r.runtime == runtime]
    if artifact.endswith("layers/model.json") and not results:
        [skip] = [s for s in manifest["skipped"] if s["format"] == "tfjs_layers"]
        assert skip["reason"].startswith("TFJS layers model not written: TFJS 4.22 cannot load ")
        return
    [result] = results
    if artifact.endswith("graph/model.json") and (model, runtime) in UNSUPPORTED_GRAPH:
        assert not result.passed
        assert result.error.startswith(f"TFJS {runtime.split('-')[1]} cannot run web/model/graph/model.json: ")
        return
    assert result.error == "", result.error
    assert result.passed, result.failures
    assert result.sample is None  # golden rows only; the larger sample is exercised in tests/parity


def test_all_runtimes_were_asked(zoo) -> None:
    _, report = zoo("digits_cnn")
    assert report.runtimes == list(RUNTIMES)
