"""The server's shadow worker: the copies of the live requests go, in batches, to a separate worker
*process* (``edge.shadow_process``) that predicts them on the shadow version and compares, so the shadow
never runs on the server's event loop, its inference thread or its GIL.

* On the request's path the dispatcher (``edge.dispatch``, through its ``shadow_sink``: a ``Feed``) appends
  the row's floats to its model's ``array('d')`` and the live answer to a list (the live version and
  prediction id too when a shadow log is written; a batch's inputs and outputs, one per request, on the
  general path). No syscall, no lock, no thread to wake. The batch is sent every ``BATCH`` copies (``loop.call_soon``, so
  after the answer being made) or ``FLUSH_SECONDS`` after its first copy (``loop.call_later``), one
  datagram: a one-value batch is its floats' bytes behind a 25-byte header (``edge.shadow_process.VALUES``,
  one ``sendmsg``, nothing pickled), any other a pickle (``edge.shadow_process.pack``).
* The worker process is started at the first batch (a server without a shadow starts nothing) and runs
  at the lowest CPU priority (``SCHED_IDLE``, else nice 19), within a CPU budget (``CPU_SHARE`` of one
  core: it sleeps after each batch in proportion to the CPU time it took). While it is ``MAX_QUEUE`` copies
  behind (sent, not answered) no copy is made (``behind``, cleared at a quarter) and each request not
  copied is counted as skipped (``deploykit_shadow_skipped_total``): at saturation the shadow compares a
  sampled share instead of slowing the answers down; at a load it keeps up with, every copy. A batch the
  socket refuses is counted as dropped (``deploykit_shadow_dropped_total``).
* Its answers (one per copy: the ``Disagreement`` fields, each row's for a batch) are read on the event
  loop (``loop.add_reader``, no thread), counted in the target's ``ShadowStats`` (``/metrics``) and written
  to ``shadow.csv``, one line per prediction id.
* A worker process that exits (a crash, a kill) is reported on stderr and counted (``restarts``); the
  copies it had are counted as dropped, and the next batch starts a new one (at most one start per
  ``RESTART_SECONDS``; batches before then are dropped, counted). The live answers never wait for it.
* ``stop`` (the server's shutdown) sends what is batched, lets the process answer it (up to ``timeout``
  seconds), then ends the process; the copies left are counted as dropped. The process also ends by
  itself when the server's end of the socket closes, so a killed server leaves no orphan.

Without an event loop (a test calling the dispatcher directly) batches are sent at ``BATCH`` copies or by
``flush``, and answers read by ``wait``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from typing import Any, Callable, Optional

from edge.server.messages import utc_now
from edge.shadow import ShadowTarget
from edge.shadow_feed import Feed
from edge.shadow_process import DATAGRAM, STOP, VALUES, pack, spawn, unpack

_get_ident = threading.get_ident


class ShadowWorker:
    """See the module's docstring.

    Args:
        logs: the ``edge.logs.CsvLogs`` (``--log-dir``) the shadow lines go to, or None.
        max_queue: the most copies sent and not answered; while so many are, no copy is made (counted).
        log: where a worker process's exit is said (default stderr).
        cpu_share: the most of one core the worker process takes (``CPU_SHARE``; 1: no budget).
    """

    MAX_QUEUE = 1024
    BATCH = 128  # copies per batch sent
    FLUSH_SECONDS = 0.01  # the longest a copy waits to be sent
    RESTART_SECONDS = 1.0
    CPU_SHARE = 0.25  # the worker process's budget: at most a quarter of one core, however many copies wait

    def __init__(self, logs: Any = None, max_queue: int = MAX_QUEUE,
                 log: Optional[Callable[[str], None]] = None, cpu_share: float = CPU_SHARE) -> None:
        self.logs = logs
        self.cpu_share = cpu_share
        self.max_queue = max_queue
        self.batch = min(self.BATCH, max(1, max_queue // 4))
        self.log = log or (lambda line: print(f"deploykit-edge: {line}", file=sys.stderr, flush=True))
        self.done = 0  # copies compared or failed (answered by the process)
        self.restarts = 0  # worker processes that exited before stop
        self.behind = False
        self.closed = False
        self.outstanding = 0  # copies sent, not answered
        self.thread = _get_ident()  # the thread copies are added on (the event loop's, once known)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.proc: Optional[subprocess.Popen] = None
        self.sock: Optional[socket.socket] = None
        self.feeds: list[Feed] = []
        self._pending: dict[int, tuple[str, ShadowTarget, int, list[Any], list[Any]]] = {}
        self._seq = 0
        self._tid = 0
        self._folder: Optional[str] = None
        self._died_at = -1e9
        self._told: set[int] = set()  # the targets the running process was told about
        self._said = False

    # ------------------------------------------------------------------ the request's side

    def feed(self) -> Feed:
        """A new model's feed (the dispatcher's ``shadow_sink``)."""
        feed = Feed(self)
        self.feeds.append(feed)
        return feed

    def attach(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Send and read on ``loop`` from now on (the server's lifespan; its thread adds the copies)."""
        self.loop = loop
        self.thread = _get_ident()
        if loop is not None and self.sock is not None:
            self._watch()

    def elsewhere(self, add: Callable[..., None], *args: Any) -> None:
        """A copy made on another thread (the inference thread): added on the event loop's, or, without a
        loop, on this one from now on."""
        loop = self.loop
        if loop is None:
            self.thread = _get_ident()
            add(*args)
        else:
            loop.call_soon_threadsafe(add, *args)

    def added(self, feed: Feed, n: int) -> None:
        """A feed holds ``n`` copies: schedule its send (first copy: ``FLUSH_SECONDS``; ``BATCH``: now)."""
        if n != 1 and n < self.batch:
            return  # (Feed.value checks this itself)
        loop = self.loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                if n >= self.batch:
                    self.flush_feed(feed)
                return
            self.attach(loop)
        if n == 1:
            loop.call_later(self.FLUSH_SECONDS, self._due, feed, feed.sent)
        else:
            loop.call_soon(self.flush_feed, feed)

    def _due(self, feed: Feed, sent: int) -> None:
        """A batch's ``FLUSH_SECONDS`` are up: send it, unless it went already (full: the copies now batched
        are a later batch's, whose own time comes)."""
        if feed.sent == sent:
            self.flush_feed(feed)

    def retarget(self, feed: Feed, target: ShadowTarget) -> None:
        """A feed's copies go to another target from now on: its batch is sent, the process told to forget
        the old target (its version unloaded there when no other target has it)."""
        old = feed.target
        self.flush_feed(feed)
        feed.target = target
        if old is not None and old.tid in self._told and self.sock is not None:
            self._told.discard(old.tid)
            try:
                self.sock.send(pack(("forget", old.tid), None, ""))
            except OSError:
                pass  # the process is behind or gone: it keeps the old version a while, or starts anew

    def flush(self) -> None:
        """Send every feed's batch now."""
        for feed in self.feeds:
            self.flush_feed(feed)

    def flush_feed(self, feed: Feed) -> None:
        """Send one feed's batch (its copies are counted as dropped when the process cannot take them)."""
        answers, jobs, target = feed.answers, feed.jobs, feed.target
        if target is None or not (answers or jobs):
            return
        feed.sent += 1
        if answers:
            floats, lives, ids = feed.floats, feed.lives, feed.ids
            feed.floats, feed.answers, feed.lives, feed.ids = array("d"), [], [], []
            self._send("values", target, (feed.width, floats, array("d", answers)), len(answers), lives, ids)
        if jobs:
            feed.jobs = []
            self._send("jobs", target, [(j[0], j[1]) for j in jobs], len(jobs), [j[2] for j in jobs],
                       [j[3] for j in jobs])

    def _send(self, kind: str, target: ShadowTarget, payload: Any, n: int, lives: list[Any], ids: list[Any]) -> None:
        stats = target.stats
        if self.closed or self.outstanding >= self.max_queue or target.version.predictor is None:
            stats.dropped += n  # behind, stopped, or the shadow version went away before its turn
            return
        sock = self.sock if self.proc is not None else self._start()
        if sock is None:
            stats.dropped += n
            return
        seq = self._seq = self._seq + 1
        try:
            if target.tid not in self._told:
                self._tell(target)
            if kind == "values":
                width, floats, answers = payload
                head = VALUES.pack(b"V", seq, target.tid, n, width)
                if len(head) + (len(floats) + n) * 8 <= DATAGRAM:
                    sock.sendmsg((head, floats, answers))  # the floats' bytes as they are: no copy, no pickle
                else:
                    sock.send(pack(head + floats.tobytes() + answers.tobytes(), self._folder, f"m{seq}"))
            else:
                sock.send(pack(("jobs", seq, target.tid, payload), self._folder, f"m{seq}"))
        except (BlockingIOError, InterruptedError):
            stats.dropped += n  # the socket is full: the process is behind
            self._unlink(f"m{seq}")
            return
        except OSError:
            stats.dropped += n
            self._unlink(f"m{seq}")
            self._died()
            return
        except Exception as exc:  # noqa: BLE001 - a copy that cannot be sent (pickled) must not break the loop
            stats.dropped += n
            self._unlink(f"m{seq}")
            if not self._said:
                self._said = True
                self.log(f"a shadow copy could not be sent to the worker process ({type(exc).__name__}: {exc}); "
                         "such copies are dropped (counted)")
            return
        self._pending[seq] = (kind, target, n, lives, ids)
        self.outstanding += n
        if self.outstanding >= self.max_queue:
            self.behind = True

    def _unlink(self, name: str) -> None:
        """Remove a message's file that was not sent (``pack`` wrote one only for a large message)."""
        if self._folder is not None:
            try:
                os.unlink(os.path.join(self._folder, name))
            except OSError:
                pass

    def _tell(self, target: ShadowTarget) -> None:
        """Tell the process about a target (it loads the version; again after a restart)."""
        self._tid += 1
        target.tid = self._tid
        v = target.version
        self.sock.send(pack(("target", target.tid, target.loader, v.path, target.variant,  # type: ignore[union-attr]
                             getattr(v, "fingerprint", ()), target.manifest), self._folder, f"t{target.tid}"))
        self._told.add(target.tid)

    # ------------------------------------------------------------------ the process

    def _start(self) -> Optional[socket.socket]:
        """Start the worker process (not within ``RESTART_SECONDS`` of the last exit); its socket or None."""
        if time.monotonic() - self._died_at < self.RESTART_SECONDS:
            return None
        try:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix="deploykit-shadow-")
            self.proc, self.sock = spawn(self._folder, self.logs is not None, self.cpu_share)
        except OSError as exc:
            self._died_at = time.monotonic()
            self.log(f"the shadow worker process could not start ({exc}); copies are dropped (counted)")
            return None
        self._told = set()
        if self.loop is not None:
            self._watch()
        return self.sock

    @property
    def pid(self) -> Optional[int]:
        """The worker process's id (None before the first batch or after an exit)."""
        return self.proc.pid if self.proc is not None else None

    def _watch(self) -> None:
        try:
            self.loop.add_reader(self.sock.fileno(), self._readable)  # type: ignore[union-attr]
        except (RuntimeError, ValueError, OSError):
            pass  # a closed loop (the server is stopping): ``wait`` / ``stop`` read instead

    def _unwatch(self) -> None:
        if self.loop is not None and self.sock is not None:
            try:
                self.loop.remove_reader(self.sock.fileno())
            except (RuntimeError, ValueError, OSError):
                pass

    def _readable(self) -> None:
        """Read every answer the socket holds (the event loop calls it; ``wait`` and ``stop`` too)."""
        sock = self.sock
        while sock is not None:
            try:
                data = sock.recv(1 << 17)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._died()
                return
            try:
                message = unpack(data)
            except Exception as exc:  # noqa: BLE001 - a garbled answer: the process is not to be trusted
                self.log(f"the shadow worker process sent an unreadable answer ({type(exc).__name__}: {exc})")
                self._died()
                return
            if message[0] == "done":
                for seq, summary, cols in message[1]:
                    self._done(seq, summary, cols)

    def _done(self, seq: int, summary: Any, cols: Optional[list[list[Any]]]) -> None:
        """Count one batch's answers (``summary``) and write their shadow-log lines (from ``cols``)."""
        entry = self._pending.pop(seq, None)
        if entry is None:
            return
        kind, target, n, lives, ids = entry
        self.outstanding -= n
        self.done += n
        if self.behind and self.outstanding <= self.max_queue // 4:
            self.behind = False
        target.stats.add(summary)
        logs = self.logs
        if logs is None or cols is None:
            return
        absolute, relative, top1, _, rows = cols
        now, shadow = utc_now(), target.version.number
        for i, (a, live, pid) in enumerate(zip(absolute, lives, ids)):
            if a != a:  # NaN: the shadow failed
                continue
            t = top1[i]
            if kind == "values":
                logs.shadow([now, pid, live, shadow, a, relative[i], "" if t is None else t])
                continue
            per = rows[i]
            if per is None or len(per) != len(pid):
                per = [(a, relative[i], t)] * len(pid)
            for one, d in zip(pid, per):
                logs.shadow([now, one, live, shadow, d[0], d[1], "" if d[2] is None else d[2]])

    def _died(self) -> None:
        """The process exited (or its socket broke): say so, count its copies as dropped, start anew later."""
        proc, sock = self.proc, self.sock
        self._unwatch()
        self.proc, self.sock = None, None
        if sock is not None:
            sock.close()
        left = self._forget()
        code = None
        if proc is not None:
            try:
                code = proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        if not self.closed:
            self.restarts += 1
            self._died_at = time.monotonic()
            self.log(f"the shadow worker process exited (status {code}); {left} "
                     f"cop{'y' if left == 1 else 'ies'} not compared (counted as dropped); a new one starts "
                     "with the next batch")

    def _forget(self) -> int:
        """Count every copy sent and not answered as dropped; how many."""
        left = 0
        for _, target, n, _, _ in self._pending.values():
            target.stats.dropped += n
            left += n
        self._pending.clear()
        self.outstanding = 0
        self.behind = False
        return left

    # ------------------------------------------------------------------ waiting and stopping

    def pending(self) -> int:
        """Copies sent and not answered, and batched not sent."""
        return self.outstanding + sum(f.pending() for f in self.feeds)

    def wait(self, timeout: float = 10.0) -> bool:
        """Send what is batched and read answers until none is outstanding (True) or ``timeout`` s passed."""
        import select

        self.flush()
        deadline = time.monotonic() + timeout
        while self.outstanding and self.sock is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self.sock], [], [], left)
            self._readable()
        return self.outstanding == 0

    def stop(self, timeout: float = 10.0) -> int:
        """Send what is batched, let the process answer it (up to ``timeout`` s) and end it; returns the
        copies left unanswered (counted as dropped). Later copies are dropped (counted)."""
        self.wait(timeout)
        self.closed = True
        left = sum(feed.clear() for feed in self.feeds)
        proc, sock = self.proc, self.sock
        self._unwatch()
        left += self._forget()
        self.proc, self.sock = None, None
        if sock is not None:
            try:
                sock.setblocking(True)
                sock.settimeout(1.0)
                sock.send(STOP)
            except OSError:
                pass
            sock.close()
        if proc is not None:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        return left
