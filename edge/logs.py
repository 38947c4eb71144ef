"""Request and prediction logs in CSV, written by one thread, rotated by size without losing a line.

* Fields are written with ``csv`` (``QUOTE_MINIMAL``): commas, quotes and newlines are quoted properly.
* Text cells that start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are prefixed with
  ``'`` so that a spreadsheet does not run them as formulas. Plain numbers (``-3.5``) are left as they
  are: they are not formulas and the drift reader needs them.
* One writer thread owns the files. Each line is flushed to the OS as soon as it is written, so a crash
  of the process loses only lines still queued in memory; ``close()`` drains the queue (SIGTERM path).
* Rotation: when a file reaches ``max_bytes`` it is closed and renamed ``NAME.1`` (older ones shift to
  ``.2`` ... up to ``backups``), and a new file with the header is opened; the writer does this between
  two lines, so no line is lost or split.
"""

from __future__ import annotations

import csv
import io
import os
import queue
import re
import threading
from pathlib import Path
from typing import Any, Sequence

from edge.errors import EdgeError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")

REQUEST_FIELDS = ["time", "request_id", "client", "method", "path", "status", "latency_ms", "error"]


def neutralise(value: Any) -> str:
    """A cell's text, with formula-looking text prefixed by ``'``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if text.startswith(_DANGEROUS) and not _NUMBER.match(text):
        return "'" + text
    return text


def prediction_fields(feature_names: Sequence[str]) -> list[str]:
    """Columns of the prediction log: one per feature (``inputs`` as JSON for non-tabular models)."""
    inputs = list(feature_names) if feature_names else ["inputs"]
    return ["time", "request_id", "client", *inputs, "prediction", "variant", "model_sha256", "latency_ms"]


class _RotatingCsv:
    """One CSV file with a header, rotated by size. Used only by the writer thread."""

    def __init__(self, path: Path, header: list[str], max_bytes: int, backups: int) -> None:
        self.path = path
        self.header = header
        self.max_bytes = max_bytes
        self.backups = backups
        self.handle = self._open()

    def _open(self) -> io.TextIOWrapper:
        new = not self.path.exists() or self.path.stat().st_size == 0
        handle = open(self.path, "a", encoding="utf-8", newline="")
        if new:
            handle.write(self._line(self.header))
            handle.flush()
        return handle

    @staticmethod
    def _line(cells: Sequence[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerow([neutralise(c) for c in cells])
        return buf.getvalue()

    def write(self, cells: Sequence[Any]) -> None:
        line = self._line(cells)
        if self.handle.tell() + len(line.encode("utf-8")) > self.max_bytes and self.handle.tell() > 0:
            self.rotate()
        self.handle.write(line)
        self.handle.flush()

    def rotate(self) -> None:
        self.handle.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self.handle = self._open()

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()


class CsvLogs:
    """The request log and the prediction log of one server process.

    Raises (on creation):
        EdgeError: the folder cannot be created or written (the message names it).
    """

    def __init__(self, folder: str | Path, feature_names: Sequence[str], suffix: str = "",
                 max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.requests = _RotatingCsv(self.folder / f"requests{suffix}.csv", REQUEST_FIELDS, max_bytes, backups)
            self.predictions = _RotatingCsv(
                self.folder / f"predictions{suffix}.csv", prediction_fields(feature_names), max_bytes, backups
            )
        except OSError as exc:
            raise EdgeError(
                f"cannot write logs to {str(self.folder)!r} ({exc.strerror or exc}); pass --log-dir with a writable folder"
            ) from None
        self._queue: queue.SimpleQueue[tuple[str, Sequence[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="deploykit-edge-logs", daemon=True)
        self.errors = 0
        self._closed = False
        self._thread.start()

    def request(self, cells: Sequence[Any]) -> None:
        """Queue one request-log line (``REQUEST_FIELDS`` order)."""
        self._queue.put(("r", cells))

    def prediction(self, cells: Sequence[Any]) -> None:
        """Queue one prediction-log line (``prediction_fields`` order)."""
        self._queue.put(("p", cells))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            kind, cells = item
            try:
                (self.requests if kind == "r" else self.predictions).write(cells)
            except OSError:
                self.errors += 1  # a full disk must not kill the server; counted in /metrics

    def close(self, timeout: float = 10.0) -> None:
        """Write every queued line, fsync and close both files."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        for target in (self.requests, self.predictions):
            try:
                target.close()
            except (OSError, ValueError):
                pass


def check_writable(folder: str | Path) -> None:
    """Check that the log folder can be created and written.

    Raises:
        EdgeError: it cannot (the message names the folder).
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".deploykit-edge-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EdgeError(
            f"cannot write logs to {str(path)!r} ({exc.strerror or exc}); pass --log-dir with a writable folder"
        ) from None
