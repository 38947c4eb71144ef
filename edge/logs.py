"""Request and prediction logs in CSV, written before the answer is sent, rotated by size without losing a line.

* Every cell goes through ``neutralise``: CR and LF become the two characters ``\\r`` / ``\\n`` (a line
  of the log is one line of the file, whatever a client sends), other control characters (ESC, BEL, NUL,
  the bidirectional overrides) become visible escapes such as ``\\x1b``, and text that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` so that a spreadsheet does not run it as
  a formula. Plain numbers (``-3.5``) are left as they are: they are not formulas and the drift reader
  needs them. Headers too (feature names come from the manifest). Fields are written with ``csv``.
* Each line is one ``write`` to a file opened ``O_APPEND``, made by the server before it sends the
  answer: once a client has its 200, its prediction is in the OS's page cache, so a ``kill -9`` loses
  nothing that was answered (a power cut can still lose what the OS had not written out).
* Faults do not stop the server or the logging: a line that cannot be written (full disk, removed or
  unwritable folder) is counted as dropped (``/metrics``: ``deploykit_log_lines_dropped_total``), a short
  write is cut back so no half line stays, and the next line tries again: the folder and the file (with
  its header) are recreated when they are gone, so logging resumes as soon as it can. A file replaced or
  removed under the server is noticed at the next line (its inode changed) and reopened.
* A file whose last line was torn (a power cut mid-write) gets a newline before the first new line, so
  that only the torn line is lost, not also the next one.
* Rotation: when a file would pass ``max_bytes`` it is renamed ``NAME.1`` (older ones shift to ``.2`` ...
  up to ``backups``) and a new file with the header is opened, between two lines.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

from edge.errors import EdgeError
from edge.text import printable

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")

REQUEST_FIELDS = ["time", "request_id", "client", "method", "path", "status", "latency_ms", "error"]
SHADOW_FIELDS = ["time", "prediction_id", "live_version", "shadow_version", "absolute", "relative", "top1_differs"]
"""The shadow log (``shadow.csv``, created at the first line): one line per compared request, written after
the answer was sent (the shadow runs off the request's path)."""


def neutralise(value: Any) -> str:
    """A cell's text for a CSV file: formula-looking text prefixed by ``'``, CR and LF written as ``\\r``
    and ``\\n`` (so that no cell can split a row or start a formula in a spreadsheet), every other control
    character as a visible escape (``edge.text.printable``: ``tail`` on a log cannot drive the terminal)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if text.startswith(_DANGEROUS) and not _NUMBER.match(text):
        text = "'" + text
    if not text.isprintable():  # C-fast, False for every control character (and a few more, left as they are)
        text = printable(text.replace("\r", "\\r").replace("\n", "\\n"))
    return text


def csv_line(cells: Sequence[Any]) -> str:
    """One CSV line (``\\n``-terminated) of neutralised cells."""
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerow([neutralise(c) for c in cells])
    return buf.getvalue()


def prediction_fields(feature_names: Sequence[str]) -> list[str]:
    """Columns of the prediction log: one per feature (``inputs`` as JSON for non-tabular models)."""
    inputs = list(feature_names) if feature_names else ["inputs"]
    return ["time", "request_id", "client", *inputs, "prediction", "variant", "model_sha256", "latency_ms",
            "prediction_id", "model_version", "fallback"]


_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _ends_a_line(path: Path, size: int) -> bool:
    """Whether the file's last byte (at ``size - 1``) is a newline; True when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return True
    try:
        return os.pread(fd, 1, size - 1) in (b"\n", b"")
    finally:
        os.close(fd)


class _CsvFile:
    """One CSV file with a header, rotated by size, reopened (recreated) after a fault. Not thread-safe:
    ``CsvLogs`` holds its lock around every call."""

    def __init__(self, path: Path, header: Sequence[str], max_bytes: int, backups: int) -> None:
        self.path = path
        self.header = csv_line(header).encode("utf-8")
        self.max_bytes = max_bytes
        self.backups = backups
        self.fd: int | None = None
        self.size = 0
        self.inode: tuple[int, int] = (0, 0)
        self.open()

    def open(self) -> None:
        """Open (create: folder and header too) the file.

        Raises:
            OSError: it cannot be created or written.
        """
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        try:
            st = os.fstat(fd)
            self.size = st.st_size
            if self.size == 0:
                self._write_all(fd, self.header)
            elif not _ends_a_line(self.path, self.size):  # a torn last line (power cut): it stays alone on its line
                self._write_all(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.inode = (st.st_dev, st.st_ino)

    def _write_all(self, fd: int, data: bytes) -> None:
        """Append ``data`` whole or not at all (a short write is cut back).

        Raises:
            OSError: the write failed (ENOSPC for a short one).
        """
        n = os.write(fd, data)  # an error here wrote nothing
        if n != len(data):
            os.ftruncate(fd, self.size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the disk took only part of the line
        self.size += n

    def write(self, data: bytes) -> None:
        """Append one line; reopen first when the file was removed or replaced, rotate when it is full.

        Raises:
            OSError: the line could not be written (the file is closed; the next call reopens it).
        """
        try:
            if self.fd is None:
                self.open()
            else:
                try:
                    st = os.stat(self.path)
                    moved = (st.st_dev, st.st_ino) != self.inode
                except FileNotFoundError:
                    moved = True
                if moved:
                    self.open()
            if self.size + len(data) > self.max_bytes and self.size > len(self.header):
                self.rotate()
            self._write_all(self.fd, data)  # type: ignore[arg-type]
        except OSError:
            self.close()
            raise

    def rotate(self) -> None:
        """Shift ``NAME`` to ``NAME.1`` (``.1`` to ``.2`` ...) and start a new file.

        Raises:
            OSError: a rename or the new file failed.
        """
        self.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self.open()

    def close(self, sync: bool = False) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)


class CsvLogs:
    """The request log and the prediction log of one server process. Thread-safe.

    ``written``, ``dropped`` and ``last_error`` say what happened to the lines; ``summary()`` is the exit line.

    Raises (on creation):
        EdgeError: the folder cannot be created or written (the message names it).
    """

    def __init__(self, folder: str | Path, feature_names: Sequence[str], suffix: str = "",
                 max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.folder = Path(folder)
        try:
            self.requests = _CsvFile(self.folder / f"requests{suffix}.csv", REQUEST_FIELDS, max_bytes, backups)
            self.predictions = _CsvFile(
                self.folder / f"predictions{suffix}.csv", prediction_fields(feature_names), max_bytes, backups
            )
        except OSError as exc:
            raise EdgeError(
                f"cannot write logs to {str(self.folder)!r} ({exc.strerror or exc}); pass --log-dir with a writable folder"
            ) from None
        self._suffix, self._max_bytes, self._backups = suffix, max_bytes, backups
        self.shadows: _CsvFile | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0
        self.last_error = ""
        self._closed = False

    @property
    def errors(self) -> int:
        """Lines dropped (the ``deploykit_log_lines_dropped_total`` counter)."""
        return self.dropped

    def _put(self, target: _CsvFile, cells: Sequence[Any]) -> None:
        data = csv_line(cells).encode("utf-8", "backslashreplace")
        with self._lock:
            if self._closed:
                self.dropped += 1
                return
            try:
                target.write(data)
            except OSError as exc:
                self.dropped += 1  # a full disk must not kill the server; counted in /metrics
                self.last_error = f"{target.path.name}: {exc.strerror or exc}"
            else:
                self.written += 1

    def request(self, cells: Sequence[Any]) -> None:
        """Write one request-log line (``REQUEST_FIELDS`` order)."""
        self._put(self.requests, cells)

    def prediction(self, cells: Sequence[Any]) -> None:
        """Write one prediction-log line (``prediction_fields`` order)."""
        self._put(self.predictions, cells)

    def shadow(self, cells: Sequence[Any]) -> None:
        """Write one shadow-log line (``SHADOW_FIELDS`` order); the file is created at the first."""
        if self.shadows is None:
            with self._lock:
                if self.shadows is None:
                    try:
                        self.shadows = _CsvFile(self.folder / f"shadow{self._suffix}.csv", SHADOW_FIELDS,
                                                self._max_bytes, self._backups)
                    except OSError as exc:
                        self.dropped += 1
                        self.last_error = f"shadow{self._suffix}.csv: {exc.strerror or exc}"
                        return
        self._put(self.shadows, cells)

    def close(self) -> None:
        """fsync and close the files (later lines are counted as dropped)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for target in (self.requests, self.predictions, *([self.shadows] if self.shadows else [])):
                try:
                    target.close(sync=True)
                except OSError:
                    pass

    def summary(self) -> str:
        """One line: what was written and, if anything, what was lost and why."""
        text = f"{self.written} log line{'' if self.written == 1 else 's'} written to {self.folder}"
        if self.dropped:
            text += (f"; {self.dropped} line{'' if self.dropped == 1 else 's'} could not be written "
                     f"(last error: {self.last_error}) and {'is' if self.dropped == 1 else 'are'} lost")
        return text


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
