"""A model's versions as the repository (``edge.repository``) keeps them: the states (TF Serving's names),
the ``Version`` record with its in-flight count, the ``Model`` with its version and label tables, the
``NotServed`` answer, and the interface check that lets two versions serve side by side.

A ``Version`` is shared by the event loop, the inference thread, the shadow worker and the scan thread:
its in-flight count and its move to END hold its lock. ``Model.versions`` and ``Model.labels`` are
replaced whole, never changed in place, so a reader on another thread sees one consistent table.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edge.errors import EdgeError


class State(str, enum.Enum):
    """A version's state (TF Serving's names)."""

    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


class NotServed(EdgeError):
    """A request names a model, version or label that cannot answer; ``status`` is 404 or 503."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def interface(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a request and an answer depend on: the task, inputs, features (names, order) and outputs."""
    return {"task": manifest["task"],
            "inputs": [(i["name"], i["dtype"], list(i["shape"])) for i in manifest["inputs"]],
            "features": [(f["name"], f["input"], f["index"]) for f in manifest.get("features") or []],
            "outputs": [(o["key"], o["dtype"], list(o["shape"])) for o in manifest["outputs"]]}


def interface_difference(manifest: dict[str, Any], other: dict[str, Any]) -> Optional[str]:
    """How two versions' interfaces differ (the first part that does), or None when they match."""
    a, b = interface(manifest), interface(other)
    for part in ("task", "inputs", "features", "outputs"):
        if a[part] != b[part]:
            return f"its {part} are {a[part]!r}, not {b[part]!r}" if part != "task" else f"its task is {a[part]!r}, not {b[part]!r}"
    return None


def _fingerprint(path: Path) -> tuple:
    """Names, sizes and modification times of a version folder's files (top level and ``edge/``)."""
    out = []
    for folder in (path, path / "edge"):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((str(entry.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass(eq=False)
class Version:
    """One version of a model. Take ``predictor`` once after ``resolve`` (it is None outside AVAILABLE and
    UNLOADING); ``acquire``/``release`` around a request let an unloading version reach END."""

    model: str
    number: int
    path: Path
    state: State = State.LOADING
    error: str = ""
    predictor: Any = None
    selftest: Optional[dict[str, Any]] = None
    fingerprint: tuple = ()
    since: float = field(default_factory=time.time)
    inflight: int = 0
    lock: Any = field(default_factory=threading.Lock, repr=False)  # inflight and the move to END

    def acquire(self) -> None:
        """A request starts on this version (the event loop and the inference thread share it)."""
        with self.lock:
            self.inflight += 1

    def release(self) -> None:
        """A request on this version ended (an UNLOADING version with none left goes to END)."""
        with self.lock:
            self.inflight -= 1
            if self.inflight <= 0 and self.state is State.UNLOADING:
                self._end("")

    def unload(self) -> bool:
        """Its folder was removed: UNLOADING, and END at once when no request is on it. Returns whether it
        reached END."""
        with self.lock:
            self.state, self.since = State.UNLOADING, time.time()
            if self.inflight <= 0:
                self._end("")
                return True
            return False

    def _end(self, error: str) -> None:
        self.state, self.error, self.predictor, self.since = State.END, error, None, time.time()

    def status(self) -> dict[str, Any]:
        """TF Serving's ``model_version_status`` entry."""
        failed = self.state is State.END and bool(self.error)
        return {"version": str(self.number), "state": self.state.value,
                "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": self.error}}


@dataclass(eq=False)
class Model:
    """A model's versions and labels. ``versions`` and ``labels`` are replaced whole, never changed in
    place, so readers on other threads see one consistent table."""

    name: str
    versions: dict[int, Version] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # label -> (the version wanted when it was taken out, the version taken out, why): the label stays out
    # until the wanted version changes (the config, or set_label, points it elsewhere)
    rolled_back: dict[str, tuple[Optional[int], int, str]] = field(default_factory=dict)

    def available(self) -> list[int]:
        """The AVAILABLE version numbers, ascending."""
        return sorted(n for n, v in self.versions.items() if v.state is State.AVAILABLE)
