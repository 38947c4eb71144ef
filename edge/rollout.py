"""Canary choice, the canary's rollback monitor, shadow disagreement and the output checks of failover.

Nothing here touches HTTP or the repository: the server asks ``CanaryChooser.canary`` which label a
request goes to, feeds each canary answer to ``RollbackMonitor.record``, compares a shadow answer with
the live one through ``disagreement``, and checks every answer with ``OutputChecker`` before it leaves
(a failed check, or an interpreter error, sends the request to the fallback version).
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Optional

import numpy as np

from edge.rollout_config import RollbackConfig

_SCALE = float(1 << 64)


def key_point(key: str | bytes, salt: str = "") -> float:
    """A client key's fixed point in [0, 1): the first 8 bytes of ``blake2b(salt NUL key)`` over 2**64.

    The same key always lands on the same point (sticky), distinct keys are spread uniformly (unbiased),
    and a key below a share stays below any larger share (raising the share keeps the canary's clients).
    """
    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(salt.encode() + b"\0" + raw, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class CanaryChooser:
    """Whether a request goes to the canary: with a client key, ``key_point(key, salt) < share``; without
    one, a uniform draw (``random.Random``, seedable for tests) below ``share``.

    Args:
        share: the canary's share of requests, 0..1.
        salt: mixed into the key's hash (the model's name: one client is not the canary of every model).
        seed: seeds the draw for keyless requests (None: from the OS).

    A share outside 0..1 is clamped (the config schema refuses it first); nothing here raises.
    """

    CACHE = 4096  # client keys whose point is remembered (a sticky client comes back; hashing costs ~2 us)

    def __init__(self, share: float, salt: str = "", seed: Optional[int] = None) -> None:
        self.share = min(1.0, max(0.0, float(share)))
        self.salt = salt
        self._random = random.Random(seed).random
        self._points: dict[Any, float] = {}

    def canary(self, key: str | bytes | None = None) -> bool:
        """Whether this request goes to the canary."""
        share = self.share
        if share <= 0.0:
            return False
        if not key:
            return self._random() < share
        point = self._points.get(key)
        if point is None:
            if len(self._points) >= self.CACHE:
                self._points.clear()
            point = self._points[key] = key_point(key, self.salt)
        return point < share


@dataclass(frozen=True)
class RollbackEvent:
    """What made the monitor fire: the limit, the measured rate, the window's size."""

    model: str
    version: int
    reason: str
    at: float


class RollbackMonitor:
    """The canary's health over its last ``window`` requests; fires once when a limit is exceeded.

    ``record`` takes one canary request's outcome: an error (the interpreter failed), a failed output
    check, and the disagreement score with ``stable`` on the same request (None when not measured). Once
    ``min_requests`` were seen, any rate over its limit fires: the event is logged (``log``, default a
    line on stderr), counted in ``fired`` and returned, once; later records return None until ``reset``
    (a new canary).
    """

    def __init__(self, model: str, version: int, config: RollbackConfig,
                 log: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.time) -> None:
        self.model, self.version, self.config = model, version, config
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.clock = clock
        self.fired = 0
        self.event: Optional[RollbackEvent] = None
        self.reset(version)

    def reset(self, version: int) -> None:
        """Watch a new canary version from an empty window."""
        self.version = version
        self._outcomes: deque[tuple[bool, bool, Optional[float]]] = deque(maxlen=self.config.window)
        self._errors = self._checks = 0
        self._scores = 0.0
        self._scored = 0
        self.event = None

    def rates(self) -> dict[str, Any]:
        """The window's size and rates (``disagreement`` is the mean score over the scored requests)."""
        n = len(self._outcomes)
        return {"requests": n, "error_rate": self._errors / n if n else 0.0,
                "output_check_failures": self._checks / n if n else 0.0,
                "disagreement": self._scores / self._scored if self._scored else 0.0}

    def record(self, error: bool, check_failed: bool = False, disagreement: Optional[float] = None) -> Optional[RollbackEvent]:
        """Count one canary request; the event when this one makes the monitor fire, else None."""
        if self.event is not None:
            return None
        window = self._outcomes
        if len(window) == window.maxlen:
            old_error, old_check, old_score = window[0]
            self._errors -= old_error
            self._checks -= old_check
            if old_score is not None:
                self._scores -= old_score
                self._scored -= 1
        window.append((bool(error), bool(check_failed), disagreement))
        self._errors += bool(error)
        self._checks += bool(check_failed)
        if disagreement is not None:
            self._scores += disagreement
            self._scored += 1
        if len(window) < self.config.min_requests:
            return None
        rates = self.rates()
        limits = (("error rate", rates["error_rate"], self.config.max_error_rate),
                  ("output-check failure rate", rates["output_check_failures"], self.config.max_output_check_failures),
                  ("disagreement with stable", rates["disagreement"], self.config.max_disagreement))
        for what, value, limit in limits:
            if limit is not None and value > limit:
                reason = (f"{what} {value:.4g} over the limit {limit:g} in the last {rates['requests']} "
                          f"canary requests")
                self.event = RollbackEvent(self.model, self.version, reason, self.clock())
                self.fired += 1
                self.log(f"deploykit-edge: rollback: model {self.model!r} canary version {self.version} "
                         f"taken out: {reason}")
                return self.event
        return None


class Disagreement(NamedTuple):
    """How a shadow (or canary) answer differs from the live one on one request.

    ``absolute``: max |live - other| over every element of every output. ``relative``: max
    |live - other| / max(|live|, |other|) per element (at most 1 for finite values). Equal values differ by
    0 (infinities included); a NaN on either side differs infinitely. ``top1``: the
    share of rows whose predicted class differs (classifiers; None for regression). ``score`` is what the
    rollback monitor averages: ``top1`` for classifiers, else ``absolute`` over the width of the first
    output's range (a range fraction). A named tuple: the shadow worker makes one per request.
    """

    absolute: float
    relative: float
    top1: Optional[float]
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"absolute": self.absolute, "relative": self.relative, "top1": self.top1, "score": self.score}


def predicted_class(y: np.ndarray) -> np.ndarray:
    """Each row's class (batch dimension first; a scalar is one row): the argmax over a row's values, or
    ``y >= 0.5`` for one probability per row."""
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(y.shape[0], -1) if y.ndim else y.reshape(1, 1)
    return (y[:, 0] >= 0.5).astype(np.int64) if y.shape[1] == 1 else np.argmax(y, axis=1)


def disagreement(manifest: dict[str, Any], live: Mapping[str, Any], other: Mapping[str, Any]) -> Disagreement:
    """Compare two versions' answers to the same request: ``{output key: array}`` with the batch dimension
    first (a plain float is one row of one value: the one-value path passes ``{key: value}``). Outputs
    that differ in shape count as an infinite difference; nothing here raises.
    """
    absolute = relative = 0.0
    for out in manifest["outputs"]:
        a = np.asarray(live[out["key"]], dtype=np.float64)
        b = np.asarray(other[out["key"]], dtype=np.float64)
        if a.shape != b.shape:
            absolute = relative = math.inf
            continue
        if a.size:
            same = a == b  # equal values (inf == inf, 0.0 == -0.0) differ by 0; a NaN differs infinitely
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                diff = np.nan_to_num(np.where(same, 0.0, np.abs(a - b)), nan=math.inf, posinf=math.inf)
                rel = np.where(same, 0.0, diff / np.maximum(np.abs(a), np.abs(b)))
            absolute = max(absolute, float(diff.max()))
            relative = max(relative, float(np.nan_to_num(rel, nan=math.inf, posinf=math.inf).max()))
    first = manifest["outputs"][0]
    top1 = None
    if manifest["task"] == "classification":
        a = np.asarray(live[first["key"]], dtype=np.float64)
        b = np.asarray(other[first["key"]], dtype=np.float64)
        if a.shape == b.shape and a.size:
            top1 = float(np.mean(predicted_class(a) != predicted_class(b)))
        else:
            top1 = 1.0
        score = top1
    else:
        lo, hi = first["range"]
        width = hi - lo
        score = absolute / width if width > 0 else (0.0 if absolute == 0 else math.inf)
    return Disagreement(absolute, relative, top1, score)


def disagreement_value(manifest: dict[str, Any], live: float, other: float) -> Disagreement:
    """``disagreement`` of two one-value answers (the one-value path's floats) in plain Python floats: the
    same IEEE double arithmetic and the same results, without numpy's per-call cost (the shadow runs it
    once per request)."""
    if live == other:
        absolute = relative = 0.0
    elif live != live or other != other:  # a NaN differs infinitely
        absolute = relative = math.inf
    else:
        absolute = abs(live - other)
        relative = absolute / max(abs(live), abs(other))  # not both 0: they differ
        if relative != relative:  # inf / inf
            relative = math.inf
    first = manifest["outputs"][0]
    if manifest["task"] == "classification":
        width = first["shape"][-1] if len(first["shape"]) > 1 else 1
        if width not in (1, None):
            return disagreement(manifest, {first["key"]: np.asarray([[live]])}, {first["key"]: np.asarray([[other]])})
        top1: Optional[float] = 1.0 if (live >= 0.5) != (other >= 0.5) else 0.0
        return Disagreement(absolute, relative, top1, top1)
    lo, hi = first["range"]
    width = hi - lo
    score = absolute / width if width > 0 else (0.0 if absolute == 0 else math.inf)
    return Disagreement(absolute, relative, None, score)


class OutputChecker:
    """The output checks an answer passes before it is returned (else the fallback answers).

    A check fails for a non-finite value, or a value of an output outside its manifest range widened by
    ``margin`` times the range's width on each side (margin 0.1 and range [5, 50]: [0.5, 54.5]).
    Classifiers are checked the same way (their range is what the reference model gave on DATA).
    """

    def __init__(self, manifest: dict[str, Any], margin: float) -> None:
        self.margin = float(margin)
        self.bounds: dict[str, tuple[float, float]] = {}
        for out in manifest["outputs"]:
            lo, hi = (float(v) for v in out["range"])
            pad = self.margin * (hi - lo)
            self.bounds[out["key"]] = (lo - pad, hi + pad)
        first = manifest["outputs"][0]["key"]
        self._lo, self._hi = self.bounds[first]
        self._first = first

    def check_value(self, value: float) -> Optional[str]:
        """The one-value path's check: None when the value passes, else the reason (one line)."""
        if self._lo <= value <= self._hi:  # False for NaN
            return None
        return self._reason(self._first, value)

    def _reason(self, key: str, value: float) -> str:
        if not math.isfinite(value):
            return f"output {key!r} is not finite ({value!r})"
        lo, hi = self.bounds[key]
        return (f"output {key!r} is {value:.6g}, outside the manifest's range widened by the margin "
                f"{self.margin:g} ([{lo:.6g}, {hi:.6g}])")

    def check(self, outputs: Mapping[str, Any]) -> Optional[str]:
        """Every element of every output: None when all pass, else the first failure's reason (a non-finite
        value first, whichever output and row it is in: it must never be answered). Float outputs whose
        lowest and highest values are finite and in bounds pass on those two alone (NaN makes both NaN, so
        any failure goes on to :meth:`first_failure`, which says why)."""
        for key, (lo, hi) in self.bounds.items():
            arr = outputs[key]
            if not (isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and arr.size):
                return self.first_failure(outputs)
            low, high = arr.min(), arr.max()
            if not (lo <= low and high <= hi and -math.inf < low and high < math.inf):
                return self.first_failure(outputs)
        return None

    def first_failure(self, outputs: Mapping[str, Any]) -> Optional[str]:
        """:meth:`check`, element by element: None when every element passes, else the first failure's reason."""
        for key in self.bounds:
            arr = np.asarray(outputs[key], dtype=np.float64)
            nonfinite = ~np.isfinite(arr)
            if nonfinite.any():
                return self._reason(key, float(arr[nonfinite].flat[0]))
        for key, (lo, hi) in self.bounds.items():
            arr = np.asarray(outputs[key], dtype=np.float64)
            bad = ~((arr >= lo) & (arr <= hi))
            if bad.any():
                return self._reason(key, float(arr[bad].flat[0]))
        return None

    @staticmethod
    def error_reason(exc: BaseException) -> str:
        """The reason recorded when the interpreter itself failed on a request."""
        return f"the interpreter failed: {type(exc).__name__}: {str(exc)[:200]}"
