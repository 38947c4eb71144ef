"""``convert.parity.judge``: telling a TFJS backend without a kernel from a wrong artifact, and the task metric
(TF-free; the judging of real runs is in test_verify.py and test_mutations.py)."""

from __future__ import annotations

import numpy as np

from convert.parity.judge import mark_unsupported_backends, task_metric
from convert.parity.report import Result

MISSING = "TFJS failed: Kernel 'Einsum' not registered for backend 'wasm'"


def _r(runtime: str, status: str, error: str = "", fmt: str = "tfjs_graph") -> Result:
    return Result(artifact="web/model.json", format=fmt, variant="float32", runtime=runtime, bytes=1,
                  tolerance={}, passed=status == "passed", status=status, error=error)


def test_a_missing_kernel_is_unsupported_when_another_backend_passed() -> None:
    results = [_r("chromium-cpu", "passed"), _r("chromium-wasm", "failed", MISSING)]
    mark_unsupported_backends(results)
    assert results[1].status == "unsupported" and results[1].note == MISSING


def test_it_stays_failed_when_no_backend_passed_or_the_error_is_another() -> None:
    alone = [_r("chromium-wasm", "failed", MISSING)]
    wrong = [_r("chromium-cpu", "passed"), _r("chromium-wasm", "failed", "output y: max |err| 3 > 1e-5")]
    tflite = [_r("chromium-cpu", "passed"), _r("litert", "failed", MISSING, fmt="tflite")]
    for results in (alone, wrong, tflite):
        mark_unsupported_backends(results)
        assert results[-1].status == "failed"


def test_task_metric() -> None:
    regression = {"outputs": [{"key": "y"}]}
    assert task_metric(regression, {"y": np.array([[1.0], [3.0]])}, np.array([2.0, 2.0])) == {"mae": 1.0}
    classifier = {"task": "classification", "outputs": [{"key": "p"}]}
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert task_metric(classifier, {"p": probs}, np.array([0, 1, 1])) == {"accuracy": 2 / 3}
    assert task_metric(regression, {"y": np.zeros((2, 1))}, None) is None
