"""``convert.parity.report``: a run's verdict and the compact record it leaves in manifest.json (TF-free)."""

from __future__ import annotations

from pathlib import Path

from convert.parity.report import ParityReport, Result


def _result(status: str, **golden: dict) -> Result:
    return Result(artifact="a.tflite", format="tflite", variant="float32", runtime="litert", bytes=1,
                  tolerance={"kind": "float32"}, passed=status == "passed", status=status, golden=golden)


def _report(*results: Result) -> ParityReport:
    return ParityReport(bundle=Path("/b"), name="n", runtimes=["litert"], reference="golden.json",
                        results=list(results), at="2026-01-01T00:00:00Z")


def test_a_run_passes_when_nothing_failed() -> None:
    assert _report(_result("passed"), _result("rejected"), _result("unsupported")).passed
    assert not _report(_result("passed"), _result("failed")).passed
    assert not _report().passed  # nothing ran: not a pass


def test_worst_is_the_largest_over_outputs_and_none_when_absent() -> None:
    result = _result("passed", y={"max_abs": 0.5, "max_scaled": None}, z={"max_abs": 2.0, "max_scaled": None})
    assert result.worst("max_abs") == 2.0
    assert result.worst("max_scaled") is None
    summary = result.summary()
    assert summary["max_abs"] == 2.0 and summary["status"] == "passed" and "note" not in summary and "error" not in summary


def test_by_status_and_json() -> None:
    report = _report(_result("passed"), _result("failed"))
    assert [r.status for r in report.by_status("failed")] == ["failed"]
    data = report.to_json()
    assert data["schema_version"] == 1 and data["passed"] is False and len(data["results"]) == 2
