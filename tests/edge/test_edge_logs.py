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
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\\x09x"), ("\rx", "'\\rx"), ("a\rb", "a\\rb"), ("a\r\nb", "a\\r\\nb"), ("\n=1", "\\n=1"), ("-3.5", "-3.5"), ("+1e3", "+1e3"),
    (-3.5, "-3.5"), ("plain", "plain"), (None, ""),
    # no control character reaches a terminal that shows the log (`tail -f requests.csv`)
    ("/\x1b]0;pwned\x07\x1b[2J", "/\\x1b]0;pwned\\x07\\x1b[2J"), ("a\x00b", "a\\x00b"), ("abc\u202edcba", "abc\\u202edcba"),
    ("caf\u00e9 \u4e2d", "caf\u00e9 \u4e2d"),
])
def test_neutralise(cell: object, out: str) -> None:
    assert neutralise(cell) == out


def test_fields_are_quoted_and_formulas_neutralised(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path, ["rm", "tax"])
    logs.request(["t", "id", 'evil,"client"\nnext', "POST", "/predict_json", 200, 1.5, "=HYPERLINK(\"x\")"])
    logs.close()
    rows = list(csv.reader((tmp_path / "requests.csv").open(newline="")))
    assert rows[0] == ["time", "request_id", "client", "method", "path", "status", "latency_ms", "error"]
    assert rows[1][2] == 'evil,"client"\\nnext'  # one log line is one line of the file
    assert rows[1][7] == "'=HYPERLINK(\"x\")"


def test_rotation_loses_no_line(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path, ["rm", "tax", "age"], max_bytes=4000, backups=1000)
    threads = [threading.Thread(target=lambda k=k: [logs.prediction(["t", f"{k}-{i}", "c", 1.0, 2.0, 3.0, 4.0, "float32", "s", 0.1, "p", 1, ""])
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
        assert all(len(r) == 13 for r in rows)  # no split line
        assert f.stat().st_size <= 4000
        ids += [r[1] for r in rows[1:]]
    assert sorted(ids) == sorted(f"{k}-{i}" for k in range(4) for i in range(500))


def test_unwritable_log_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgeError, match=r"cannot write logs to '.*file/logs' \(.*\); pass --log-dir with a writable folder"):
        CsvLogs(blocker / "logs", ["rm"])


def _lines(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open(newline="")))


def test_carriage_return_and_header_cells_are_neutralised(tmp_path: Path) -> None:
    """A CR inside a cell was written unquoted (a spreadsheet split the row there); feature names from a
    manifest go into the header."""
    logs = CsvLogs(tmp_path, ["=cmd|' /C calc'!A0", "tax"])
    logs.request(["t", "id", "c", "GET", "/x\r=1+1", 404, 0.1, "e"])
    logs.close()
    raw = (tmp_path / "requests.csv").read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 2
    assert _lines(tmp_path / "requests.csv")[1][4] == "/x\\r=1+1"
    assert _lines(tmp_path / "predictions.csv")[0][3] == "'=cmd|' /C calc'!A0"


def test_removed_folder_is_recreated_and_nothing_is_queued(tmp_path: Path) -> None:
    """The old writer thread died when the folder went away and never wrote again. Now each line is
    written when it is logged, and a removed folder or file is recreated, with its header, at the next line."""
    import shutil

    folder = tmp_path / "logs"
    logs = CsvLogs(folder, ["rm"])
    logs.prediction(["t", "1", "c", 1.0, "2.0", "float32", "s", 0.1])
    assert len(_lines(folder / "predictions.csv")) == 2  # on disk before prediction() returned
    shutil.rmtree(folder)
    logs.prediction(["t", "2", "c", 1.0, "2.0", "float32", "s", 0.1])
    assert [r[1] for r in _lines(folder / "predictions.csv")] == ["request_id", "2"]
    (folder / "predictions.csv").unlink()
    logs.prediction(["t", "3", "c", 1.0, "2.0", "float32", "s", 0.1])
    assert [r[1] for r in _lines(folder / "predictions.csv")] == ["request_id", "3"]
    assert (logs.written, logs.dropped) == (3, 0)
    logs.close()


def test_unwritable_folder_drops_counts_and_resumes(tmp_path: Path) -> None:
    """The folder replaced by a file: lines are dropped and counted, the server goes on; once the folder
    can be made again, logging resumes, and the summary says what was lost."""
    import shutil

    folder = tmp_path / "logs"
    logs = CsvLogs(folder, ["rm"])
    logs.prediction(["t", "1", "c", 1.0, "2.0", "float32", "s", 0.1])
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    for k in range(3):
        logs.prediction(["t", f"lost{k}", "c", 1.0, "2.0", "float32", "s", 0.1])
    assert (logs.written, logs.dropped) == (1, 3)
    assert logs.last_error.startswith("predictions.csv: ")
    folder.unlink()
    logs.prediction(["t", "4", "c", 1.0, "2.0", "float32", "s", 0.1])
    assert [r[1] for r in _lines(folder / "predictions.csv")] == ["request_id", "4"]
    logs.close()
    assert logs.summary() == (f"2 log lines written to {folder}; 3 lines could not be written "
                              f"(last error: {logs.last_error}) and are lost")


FULL_DISK_SCRIPT = r"""
import os, subprocess, sys
from pathlib import Path
mnt = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
from edge.logs import CsvLogs
logs = CsvLogs(mnt / "logs", ["rm"])
cells = lambda k: ["2026-01-01T00:00:00.000Z", f"id{k}", "127.0.0.1:1", 1.0, "2.0", "float32", "x" * 64, 0.1]
filler = mnt / "filler"
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"\0" * 512)
except OSError:
    os.close(fd)
for k in range(50):
    logs.prediction(cells(k))
full = (logs.written, logs.dropped, logs.last_error)
filler.unlink()
for k in range(50, 60):
    logs.prediction(cells(k))
logs.close()
text = (mnt / "logs" / "predictions.csv").read_text()
lines = text.splitlines()
print(repr((full, logs.written, logs.dropped, len(lines), text.endswith("\n"), lines[-1].split(",")[1])))
"""


def test_full_disk_drops_whole_lines_and_resumes(tmp_path: Path) -> None:
    """A full disk (a 64 KiB tmpfs, in a private mount namespace): lines are dropped whole (a short write
    is cut back: no half line), counted, and logging resumes once space is freed."""
    import shutil
    import subprocess
    import sys

    from edge_helpers import ENV, REPO

    assert shutil.which("unshare"), "util-linux's unshare(1) mounts the private tmpfs this test fills"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    assert probe.returncode == 0, f"unshare -rm refused (exit {probe.returncode}): no private tmpfs to fill"
    r = subprocess.run(["unshare", "-rm", sys.executable, "-c", FULL_DISK_SCRIPT, str(mnt)], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import ast

    full, written, dropped, n_lines, complete, last = ast.literal_eval(r.stdout)
    assert full[1] > 0 and "No space left on device" in full[2], full
    assert written == full[0] + 10 and dropped == full[1]
    assert n_lines == 1 + written and complete and last == "id59"


def test_a_torn_last_line_is_ended_before_the_next_run_appends(tmp_path: Path) -> None:
    """A power cut can leave the last line half written; the next run's first line used to be glued to it."""
    logs = CsvLogs(tmp_path, ["rm"])
    logs.request(["t1", "id1", "c", "GET", "/a", 200, 0.1, ""])
    logs.close()
    path = tmp_path / "requests.csv"
    with path.open("ab") as f:
        f.write(b"t2,id2,c,PO")  # torn mid-line
    logs = CsvLogs(tmp_path, ["rm"])
    logs.request(["t3", "id3", "c", "GET", "/b", 200, 0.1, ""])
    logs.close()
    rows = _lines(path)
    assert [r[:2] for r in rows[1:]] == [["t1", "id1"], ["t2", "id2"], ["t3", "id3"]]
    assert rows[3] == ["t3", "id3", "c", "GET", "/b", "200", "0.1", ""]  # whole: only the torn line is lost
