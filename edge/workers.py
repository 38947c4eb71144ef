"""Metrics and drift across the worker processes of ``serve --workers N``.

Each worker keeps its own counters and drift window (no lock, no IPC on a request's path). Every
``SNAPSHOT_SECONDS``, and before it answers ``/metrics`` or ``/drift``, a worker writes a snapshot of
them, its ``Metrics.state()`` (JSON) and its window's rows with their arrival times (``.npy``), into a
private folder the parent made (``mkdtemp``, mode 0700). A scrape, whichever worker answers it, merges
every worker's snapshot: counters and histograms add up, and the drift window is the last ``window`` rows
of all workers by arrival time (``time.monotonic()`` is one clock for every process of the machine). So
a scrape sees every worker, the others as of their last snapshot (at most ``SNAPSHOT_SECONDS`` old).
Snapshots of a worker that died stay (its counts happened); its in-flight gauge is left out once its
snapshot is older than ``STALE_SECONDS``, and its rows leave the merged window as newer rows arrive.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

SNAPSHOT_SECONDS = 1.0
STALE_SECONDS = 5.0


class Shared:
    """The snapshot folder as seen by one worker."""

    def __init__(self, folder: str | Path, pid: int | None = None) -> None:
        self.folder = Path(folder)
        self.pid = os.getpid() if pid is None else pid

    def _replace(self, name: str, write: Any) -> None:
        tmp = self.folder / f".{name}.{self.pid}.tmp"
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, self.folder / name)

    def write(self, state: dict[str, Any], rows: np.ndarray, times: np.ndarray, count: int) -> None:
        """Write this worker's snapshot (each file replaced whole: a reader sees the old or the new one).

        Raises:
            OSError: the folder cannot be written.
        """
        self._replace(f"rows-{self.pid}.npy", lambda h: np.save(h, np.column_stack([times, rows])))
        body = json.dumps({"pid": self.pid, "at": time.monotonic(), "count": count, "state": state}).encode()
        self._replace(f"state-{self.pid}.json", lambda h: h.write(body))

    def read_all(self) -> list[tuple[dict[str, Any], np.ndarray]]:
        """Every worker's snapshot: ``(the state document, rows with their times in column 0)``; a file that
        vanished or is being replaced is skipped."""
        out = []
        for path in sorted(self.folder.glob("state-*.json")):
            try:
                doc = json.loads(path.read_bytes())
                rows = np.load(self.folder / f"rows-{doc['pid']}.npy", allow_pickle=False)
            except (OSError, ValueError, KeyError):
                continue
            out.append((doc, rows))
        return out


def merge(snapshots: list[tuple[dict[str, Any], np.ndarray]], window: int) -> tuple[list[dict[str, Any]], Any, np.ndarray]:
    """``(states, key, rows)``: the workers' states (in-flight gauges of stale ones set to 0), a key that
    changes when any window does, and the last ``window`` rows of all workers in arrival order."""
    now = time.monotonic()
    states, key, parts = [], [], []
    for doc, rows in snapshots:
        state = dict(doc["state"])
        if now - doc["at"] > STALE_SECONDS:
            state["inflight"] = 0
        states.append(state)
        key.append((doc["pid"], doc["count"]))
        if rows.size:
            parts.append(rows.reshape(rows.shape[0], -1))
    if not parts:
        return states, tuple(key), np.zeros((0, 0))
    both = np.concatenate(parts)
    order = np.argsort(both[:, 0], kind="stable")[-window:]
    return states, tuple(key), both[order, 1:]
