"""Ground truth that arrives later: prediction ids, the recent predictions by id, and online metrics.

* Every prediction gets an id from ``PredictionIds`` (returned to the caller and logged): a random
  token per store (8 hex digits, new at every start), a hex counter and a random 32-bit tag, so ids are unique
  across restarts and models, cannot be guessed (the tag), and the store can tell an id it issued and forgot
  (*expired*) from one it never issued (*unknown*).
* ``FeedbackStore`` keeps the ``max_ids`` most recent predictions for ``id_expiry_seconds``.
  ``join`` takes ``{"id": ..., "truth": ...}`` (``join_body``: one object or a list of them), joins the
  truth to the prediction and counts it into the version's metrics exactly once: a retry with the same
  truth answers *duplicate* and counts nothing (idempotent by id); another truth for a joined id is a
  conflict (409), the first one stays.
* Metrics per version over the last N joined predictions for each configured window N, and over all
  of them since the start: MAE and RMSE (over every value of the answer) for regression; accuracy and a
  confusion count (``[truth, predicted, count]`` triples) for classification, where the truth is a class
  index (0/1 for one probability per row).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from edge.errors import EdgeError
from edge.inputs import InputError
from edge.rollout import predicted_class
from edge.rollout_config import FeedbackConfig

MAX_ITEMS = 1000
"""The most feedback items one request may carry."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest truth taken (the model answers in float32): errors and their squares stay finite in float64."""


class PredictionIds:
    """Unique prediction ids that cannot be guessed: ``<8 hex token><hex counter><8 hex tag>``
    (``3f9a0c1e`` ``1`` ``9b20e4d7``). The token is random per store (new at every start), the counter says where
    the store keeps the prediction, and the tag is 32 random bits (from ``os.urandom``, drawn in blocks), which
    the store keeps beside the prediction: an id whose tag is not the kept one is unknown, so a client cannot
    join truth to predictions it was not answered (ids made by counting used to be accepted).
    """

    TAG = 8  # hex digits of the tag
    POOL = 4096  # random bytes drawn at once

    def __init__(self, token: Optional[str] = None) -> None:
        self.token = token or secrets.token_hex(4)
        self.issued = 0
        self._pool = b""
        self._hex = ""
        self._at = self.POOL

    def tag(self) -> tuple[int, str]:
        """A new tag: (its value, its hex digits)."""
        at = self._at
        if at >= self.POOL:
            self._pool, at = os.urandom(self.POOL), 0
            self._hex = self._pool.hex()
        self._at = at + 4
        return int.from_bytes(self._pool[at:at + 4], "big"), self._hex[2 * at:2 * at + self.TAG]

    def new(self) -> tuple[str, int]:
        """The next id and its tag's value."""
        self.issued = n = self.issued + 1
        value, text = self.tag()
        return self.token + hex(n)[2:] + text, value

    def split(self, pid: str) -> Optional[tuple[int, int]]:
        """(counter, tag value) of an id of this generator's form with a counter it issued, else None."""
        if not pid.startswith(self.token) or len(pid) <= len(self.token) + self.TAG:
            return None
        counter, tag = pid[len(self.token):-self.TAG], pid[-self.TAG:]
        try:
            n, value = int(counter, 16), int(tag, 16)
        except ValueError:
            return None
        if not (1 <= n <= self.issued and f"{n:x}" == counter and f"{value:08x}" == tag):
            return None
        return n, value


@dataclass
class _Prediction:
    """A prediction whose truth arrived (its id's number and time stay in the ring's columns)."""

    version: int
    value: Any  # float64 values (regression) or the predicted class (classification)
    truth: Any = None
    joined: bool = False


@dataclass(frozen=True)
class JoinResult:
    """One feedback item's outcome: ``status`` is the HTTP status it would answer alone."""

    id: str
    status: int
    outcome: str  # joined | duplicate | conflict | unknown | expired | invalid
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "outcome": self.outcome, "message": self.message}


class _Window:
    """One version's joined outcomes: the last ``size`` items and the totals since the start."""

    def __init__(self, size: int) -> None:
        self.items: deque[tuple] = deque(maxlen=size)
        self.total = [0, 0.0, 0.0, 0]  # joined, sum |e| or correct, sum e^2, values
        self.confusion: dict[tuple[int, int], int] = {}  # classification, since the start

    def add(self, item: tuple) -> None:
        self.items.append(item)


class FeedbackStore:
    """Recent predictions of one model by id, joined to their truth; per-version online metrics.

    Args:
        task: the manifest's ``task`` (``regression`` or ``classification``).
        classes: the number of classes (classification; 2 for one probability per row).
        config: windows, expiry and size (``edge.rollout_config.FeedbackConfig``).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, task: str, config: FeedbackConfig = FeedbackConfig(), classes: int = 0,
                 clock: Callable[[], float] = time.monotonic, ids: Optional[PredictionIds] = None) -> None:
        if task not in ("regression", "classification"):
            raise EdgeError(f"unknown task {task!r}; the manifest's task is regression or classification")
        self.task = task
        self.classes = classes
        self.config = config
        self.clock = clock
        self.ids = ids or PredictionIds()
        # A ring of the max_ids most recent predictions: id number n lives at slot n % max_ids, as four columns
        # (number, tag, version and time in typed arrays, the answer as given), the answer replaced by a
        # _Prediction once the truth arrives. An id's number says where to look, so remembering is five stores
        # (no dict and no tuple on the request's path), and a full ring of one-value answers costs ~62 bytes a
        # prediction, the tag's 4 included (a tuple per prediction cost ~170: 16.7 MB at the default 100,000).
        self.max_ids = config.max_ids
        self._numbers = array("q", bytes(8 * config.max_ids))
        self._versions = array("q", bytes(8 * config.max_ids))
        self._times = array("d", bytes(8 * config.max_ids))
        self._tags = array("I", bytes(array("I").itemsize * config.max_ids))  # each id's random tag (32 bits)
        self._answers: list[Any] = [None] * config.max_ids
        self._windows: dict[int, _Window] = {}
        self._size = max(config.windows)

    def remember(self, version: int, prediction: Any) -> str:
        """Keep a prediction (one row's answer: a float or an array) under a new id; return the id. On the
        request's path: four stores into the ring, nothing converted."""
        ids = self.ids
        ids.issued = n = ids.issued + 1  # PredictionIds.new, without the call
        value, tag = ids.tag()
        slot = n % self.max_ids
        self._numbers[slot] = n
        self._tags[slot] = value
        self._versions[slot] = version
        self._times[slot] = self.clock()
        self._answers[slot] = prediction
        return ids.token + hex(n)[2:] + tag

    def _truth(self, truth: Any, entry: _Prediction) -> Any:
        """The truth as the metrics take it.

        Raises:
            InputError: 422 for a truth of the wrong type, count or class.
        """
        if self.task == "classification":
            if isinstance(truth, bool) or not isinstance(truth, int) or not 0 <= truth < max(self.classes, 2):
                raise InputError(422, f"truth must be a class index from 0 to {max(self.classes, 2) - 1}, got {str(truth)[:40]}")
            return truth
        values = truth if isinstance(truth, list) else [truth]
        if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise InputError(422, f"truth must be a number or a list of {entry.value.size} numbers, got {str(truth)[:40]}")
        try:
            arr = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            raise InputError(422, "truth must be finite") from None
        if not np.all(np.isfinite(arr)):
            raise InputError(422, "truth must be finite")
        if np.any(np.abs(arr) > FLOAT32_MAX):  # the model answers in float32; so squared errors stay finite
            raise InputError(422, f"truth must be within float32's range (±{FLOAT32_MAX:.7g})")
        if arr.size != entry.value.size:
            raise InputError(422, f"truth has {arr.size} values, the prediction has {entry.value.size}")
        return arr

    def join(self, pid: Any, truth: Any) -> JoinResult:
        """Join one truth to the prediction with this id (see the module's rules)."""
        if not isinstance(pid, str) or not pid or len(pid) > 64:
            return JoinResult(str(pid)[:64], 422, "invalid", "id must be the prediction's id, a string")
        parts = self.ids.split(pid)
        n, tag = parts if parts is not None else (0, 0)
        slot = n % self.max_ids
        if parts is None or (self._numbers[slot] == n and self._tags[slot] != tag):
            return JoinResult(pid, 404, "unknown", f"prediction {pid} is unknown (not issued by this server since it started)")
        if self._numbers[slot] != n or self._times[slot] < self.clock() - self.config.id_expiry_seconds:
            return JoinResult(pid, 404, "expired", f"prediction {pid} has expired (this server keeps the last "
                              f"{self.config.max_ids} predictions for {self.config.id_expiry_seconds:g} s)")
        entry = self._answers[slot]
        if type(entry) is not _Prediction:  # the answer as the metrics take it (here: remember is on the request's path)
            if self.task == "classification":
                value: Any = int(predicted_class(np.asarray(entry, dtype=np.float64).reshape(1, -1))[0])
            else:
                value = np.asarray(entry, dtype=np.float64).reshape(-1)
            entry = self._answers[slot] = _Prediction(int(self._versions[slot]), value)
        try:
            truth_value = self._truth(truth, entry)
        except InputError as exc:
            return JoinResult(pid, exc.status, "invalid", str(exc))
        if entry.joined:
            same = entry.truth == truth_value if self.task == "classification" else np.array_equal(entry.truth, truth_value)
            if same:
                return JoinResult(pid, 200, "duplicate", f"prediction {pid} was already joined; not counted again")
            return JoinResult(pid, 409, "conflict", f"prediction {pid} was already joined with another truth; the first is kept")
        entry.truth, entry.joined = truth_value, True
        window = self._windows.get(entry.version)
        if window is None:
            window = self._windows[entry.version] = _Window(self._size)
        if self.task == "classification":
            item: tuple = (truth_value, entry.value)
            window.total[1] += truth_value == entry.value
            window.total[3] += 1
            window.confusion[item] = window.confusion.get(item, 0) + 1
        else:
            err = entry.value - truth_value
            item = (float(np.abs(err).sum()), float((err * err).sum()), int(err.size))
            window.total[1] += item[0]
            window.total[2] += item[1]
            window.total[3] += item[2]
        window.total[0] += 1
        window.add(item)
        return JoinResult(pid, 200, "joined", "")

    def join_body(self, data: Any) -> list[JoinResult]:
        """Join a parsed ``POST .../feedback`` body: one ``{"id", "truth"}`` object or a list of them.

        A list's items each get their result (an item of the wrong shape is ``invalid``, 422).

        Raises:
            InputError: 422 for one object of another shape or an empty list, 413 over ``MAX_ITEMS`` items.
        """
        items = data if isinstance(data, list) else [data]
        if not items:
            raise InputError(422, 'the body must be {"id": ..., "truth": ...} or a non-empty list of them')
        if len(items) > MAX_ITEMS:
            raise InputError(413, f"{len(items)} feedback items are over the limit of {MAX_ITEMS}")
        shape = 'feedback must be an object with exactly "id" and "truth"'
        if not isinstance(data, list):
            if not isinstance(data, dict) or set(data) != {"id", "truth"}:
                raise InputError(422, shape)
            return [self.join(data["id"], data["truth"])]
        out = []
        for i, item in enumerate(items, start=1):  # in a list, each item answers for itself
            if not isinstance(item, dict) or set(item) != {"id", "truth"}:
                pid = item.get("id") if isinstance(item, dict) else None
                out.append(JoinResult(str(pid)[:64] if isinstance(pid, str) else "", 422, "invalid", f"item {i}: {shape}"))
            else:
                out.append(self.join(item["id"], item["truth"]))
        return out

    def metrics(self) -> dict[int, dict[str, Any]]:
        """Per version: ``{"all": stats, "last_100": stats, ...}``; stats are ``{"joined", "mae", "rmse"}``
        or ``{"joined", "accuracy", "confusion"}`` (None where nothing was joined)."""
        out: dict[int, dict[str, Any]] = {}
        for version, window in sorted(self._windows.items()):
            items = list(window.items)
            per = {"all": self._stats_total(window)}
            for size in self.config.windows:
                per[f"last_{size}"] = self._stats(items[-size:])
            out[version] = per
        return out

    def _stats_total(self, window: _Window) -> dict[str, Any]:
        joined, a, b, n = window.total
        if self.task == "classification":
            confusion = [[t, p, c] for (t, p), c in sorted(window.confusion.items())]
            return {"joined": joined, "accuracy": a / n if n else None, "confusion": confusion}
        return {"joined": joined, "mae": a / n if n else None, "rmse": math.sqrt(b / n) if n else None}

    def _stats(self, items: list[tuple]) -> dict[str, Any]:
        if self.task == "classification":
            counts: dict[tuple[int, int], int] = {}
            for truth, pred in items:
                counts[(truth, pred)] = counts.get((truth, pred), 0) + 1
            correct = sum(c for (t, p), c in counts.items() if t == p)
            return {"joined": len(items), "accuracy": correct / len(items) if items else None,
                    "confusion": [[t, p, c] for (t, p), c in sorted(counts.items())]}
        n = sum(i[2] for i in items)
        return {"joined": len(items), "mae": sum(i[0] for i in items) / n if n else None,
                "rmse": math.sqrt(sum(i[1] for i in items) / n) if n else None}
