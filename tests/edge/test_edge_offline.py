"""edge.offline: drift of the inputs in the server's own prediction logs, read back as the server wrote them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.errors import EdgeError
from edge.logs import CsvLogs
from edge.offline import drift_of_logs


def _manifest(*names: str) -> dict:
    return {"features": [{"name": n, "reference_sample": [1.0, 2.0, 3.0, 4.0]} for n in names]}


def test_drift_reads_feature_columns_the_log_wrote_neutralised(tmp_path: Path) -> None:
    """A feature named like a formula is written '=rm in the header; drift found no column =rm."""
    names = ("=rm", "tax\nx", "age")
    logs = CsvLogs(tmp_path, list(names))
    for i in range(5):
        logs.prediction(["t", f"r{i}", "c", 1.0 + i, 2.0, -3.5, 9.9, "float32", "s", 0.1, f"p{i}", 1, ""])
    logs.close()
    report = drift_of_logs(tmp_path, _manifest(*names))
    assert [(f["feature"], f["n"]) for f in report["features"]] == [("=rm", 5), ("tax\nx", 5), ("age", 5)]
    assert report["skipped_cells"] == 0


def test_a_log_without_the_feature_columns_is_a_clear_error(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path, ["rm"])
    logs.close()
    with pytest.raises(EdgeError, match=r"has no column tax; is it a deploykit-edge predictions log\?"):
        drift_of_logs(tmp_path, _manifest("rm", "tax"))
