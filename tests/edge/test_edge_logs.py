"""edge.logs: quoting, formula neutralising, rotation without loss, unwritable folders."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

from edge.errors import EdgeError
from edge.logs import CsvLogs, neutralise


@pytest.mark.parametrize("cell, out", [
    ("=1+2", "'=1+2"), ("+cmd", "'+cmd"), ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("-3.5", "-3.5"), ("+1e3", "+1e3"),
    (-3.5, "-3.5"), ("plain", "plain"), (None, ""),
])
def test_neutralise(cell: object, out: str) -> None:
    assert neutralise(cell) == out


def test_fields_are_quoted_and_formulas_neutralised(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path, ["rm", "tax"])
    logs.request(["t", "id", 'evil,"client"\nnext', "POST", "/predict_json", 200, 1.5, "=HYPERLINK(\"x\")"])
    logs.close()
    rows = list(csv.reader((tmp_path / "requests.csv").open(newline="")))
    assert rows[0] == ["time", "request_id", "client", "method", "path", "status", "latency_ms", "error"]
    assert rows[1][2] == 'evil,"client"\nnext'
    assert rows[1][7] == "'=HYPERLINK(\"x\")"


def test_rotation_loses_no_line(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path, ["rm", "tax", "age"], max_bytes=4000, backups=1000)
    threads = [threading.Thread(target=lambda k=k: [logs.prediction(["t", f"{k}-{i}", "c", 1.0, 2.0, 3.0, 4.0, "float32", "s", 0.1])
                                                     for i in range(500)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logs.close()
    files = list(tmp_path.glob("predictions.csv*"))
    assert len(files) > 10  # it did rotate
    ids = []
    for f in files:
        rows = list(csv.reader(f.open(newline="")))
        assert rows[0][0] == "time"  # each file has its header
        assert all(len(r) == 10 for r in rows)  # no split line
        assert f.stat().st_size <= 4000
        ids += [r[1] for r in rows[1:]]
    assert sorted(ids) == sorted(f"{k}-{i}" for k in range(4) for i in range(500))


def test_unwritable_log_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgeError, match=r"cannot write logs to '.*file/logs' \(.*\); pass --log-dir with a writable folder"):
        CsvLogs(blocker / "logs", ["rm"])
