"""The shadow's worker process: ``python -m edge.shadow_process FD``, started by the server's shadow worker
(``edge.server.shadow_worker``) at the first copy, never by a server without a shadow.

It imports only ``edge`` (the version's loader: ``edge.repository.load_bundle``, the same checks and
self-test as the server's), numpy and the interpreter. It talks to the server over one Unix socket of
datagrams (``FD``, a ``SOCK_SEQPACKET`` socketpair end): each message is one datagram (a pickled tuple, or a
values batch's raw bytes), so no framing and no partial reads. From the server:

* ``("hello", sys_path, folder, lines, share)``: first, the server's ``sys.path`` (where ``edge`` and the
  loader come from), the private folder a message too large for one datagram goes through (``pack``),
  whether the server writes shadow-log lines (then each copy's comparison is sent back), and the most of
  one core this process takes (``Budget``).
* ``("target", tid, loader, path, variant, fingerprint, manifest)``: copies tagged ``tid`` are predicted on the version
  at ``path`` (``loader(path, variant)``, loaded once per path) and compared the way the live version's
  ``manifest`` says. A load that fails is said once on stderr and every copy of that target counts as a
  failed shadow prediction.
* ``("forget", tid)``: no more copies are tagged ``tid``; its version is unloaded unless another target has it.
* values (not a pickle: ``VALUES``' header ``b"V", seq, tid, n, width``, then ``n * width`` native
  float64s, the ``n`` rows one after the other, then their ``n`` live answers): ``n`` one-value copies; each row
  answered by the shadow's ``predict_value`` and compared with the live answer
  (``edge.rollout.disagreement_value``, as in process). The float64s are the server's floats, bit for bit.
* ``("jobs", seq, tid, jobs)``: other copies, one per request, ``(inputs, live)``: a batch's
  ``{input: array}`` and live ``{output key: array}`` (``predict``; each row's own difference too), or a
  one-value row and its float.
* ``("stop",)``: the copies before it are all answered (they come in order); it exits.

To the server, for the values / ``jobs`` messages it found waiting, one ``("done", [(seq, summary, columns),
...])``: each batch counted as
``ShadowStats.add`` takes it (``edge.shadow.summarize``), and, when the server writes a shadow log, the
copies' comparisons as columns ``[absolute, relative, top1, score, rows]`` (lists in the copies' order;
``absolute`` NaN for a failed shadow prediction, a value no comparison gives: ``edge.rollout`` makes a NaN
difference infinite; ``rows``: for ``jobs`` each request's ``(absolute, relative, top1)`` per row of a
batch, ``edge.shadow.per_row``, else None), else None.

It runs at the lowest CPU priority the system gives (``SCHED_IDLE``, else nice 19), so it uses only CPU
nothing else wants, and within a budget (``Budget``: after a batch it sleeps in proportion to the CPU time
the batch took, so it takes at most ``share`` of one core however many copies wait: a worker always busy
beside a saturated server costs the server's tail through the caches and cores they share). The server's
answers never wait for it: while it is behind, the server makes no copy (counted there as skipped). It exits
when the server's end of the socket closes (the server exited or was killed: no orphan; on Linux the kernel
also sends it SIGKILL when its parent dies).
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Optional

_REPO = str(Path(__file__).resolve().parents[1])  # where this ``edge`` is imported from
PRIORITY_ENV = "DEPLOYKIT_SHADOW_PRIORITY"
"""``idle`` (the default: SCHED_IDLE, else nice 19), ``nice`` (nice 19 only) or ``normal`` (the server's own
priority: a test machine whose cores are never idle would starve a SCHED_IDLE or nice-19 process)."""


def lower_priority(how: Optional[str] = None) -> str:
    """Put this process at the lowest CPU priority: ``SCHED_IDLE`` where the system has it (Linux), else
    nice 19; ``how="nice"`` (or ``$DEPLOYKIT_SHADOW_PRIORITY=nice``) takes nice 19 alone, ``how="normal"``
    changes nothing. Returns what it took (``"idle"``, ``"nice"`` or ``"normal"``); never raises (a refused
    change leaves the priority as it was)."""
    how = how or os.environ.get(PRIORITY_ENV, "idle")
    if how == "normal":
        return "normal"
    try:
        os.nice(19 - os.nice(0))
    except OSError:
        pass
    if how == "idle" and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError:
            pass
    return "nice"


def die_with_parent() -> None:
    """Linux: have the kernel send this process SIGKILL when the process that started it dies (the socket's
    end-of-file is the other way out, everywhere). Never raises."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Shadow:
    """The loaded shadow versions and the targets (version + the live manifest) copies are tagged with."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[Any, Optional[str], Any], Any] = {}
        self.targets: dict[int, tuple[Any, dict[str, Any], Any]] = {}

    def target(self, tid: int, loader: Callable[..., Any], path: Any, variant: Optional[str],
               fingerprint: Any, manifest: dict[str, Any]) -> None:
        """Load (once per path, variant and files' fingerprint: a version folder replaced under the same
        number is loaded again) the version copies tagged ``tid`` go to; a failed load is said on stderr
        and leaves the target without a predictor (its copies fail)."""
        key = (path, variant, fingerprint)
        predictor = self.loaded.get(key)
        if predictor is None:
            try:
                predictor = loader(path, variant)[0]
            except Exception as exc:  # noqa: BLE001 - reported; its copies are counted as failed
                print(f"deploykit-edge: the shadow worker could not load {path}: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
            else:
                self.loaded[key] = predictor
        self.targets[tid] = (predictor, manifest, key)

    def forget(self, tid: int) -> None:
        """A target no feed sends to any more: dropped, and its version unloaded when no other target has it."""
        gone = self.targets.pop(tid, None)
        if gone is not None and all(t[2] != gone[2] for t in self.targets.values()):
            self.loaded.pop(gone[2], None)

    def values(self, tid: int, rows: Any, live: Any) -> list[list[Any]]:
        """One-value copies: the columns absolute, relative, top1, score (NaN: the shadow failed), rows None."""
        from edge.rollout import disagreement_value

        predictor, manifest, _ = self.targets.get(tid, (None, None, None))
        cols: list[list[Any]] = [[], [], [], [], []]
        a, r, t, s, _ = cols
        for row, value in zip(rows, live):
            try:
                d = disagreement_value(manifest, value, predictor.predict_value(row))  # type: ignore[union-attr,arg-type]
            except Exception:  # noqa: BLE001 - counted as a failed shadow prediction, never answered
                d = _FAILED
            a.append(d[0]), r.append(d[1]), t.append(d[2]), s.append(d[3])
        return cols

    def jobs(self, tid: int, jobs: Any) -> list[list[Any]]:
        """Other copies: the columns as ``values``, and each request's rows (a batch's, else None)."""
        from edge.shadow import compare, per_row

        predictor, manifest, _ = self.targets.get(tid, (None, None, None))
        cols: list[list[Any]] = [[], [], [], [], []]
        a, r, t, s, rows = cols
        for inputs, live in jobs:
            each = None
            try:
                other = predictor.predict_value(inputs) if isinstance(live, float) \
                    else predictor.predict(inputs)  # type: ignore[union-attr]
                d = compare(manifest, live, other)  # type: ignore[arg-type]
                if not isinstance(live, float):
                    each = [(x.absolute, x.relative, x.top1) for x in per_row(manifest, live, other, d)]  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - counted as a failed shadow prediction, never answered
                d = _FAILED
            a.append(d[0]), r.append(d[1]), t.append(d[2]), s.append(d[3]), rows.append(each)
        return cols


_FAILED = (math.nan, math.nan, None, math.nan)


DATAGRAM = 96 * 1024  # a larger message goes through a file in the worker's folder, the datagram names it
VALUES = struct.Struct("=cQIII")  # a values message's header: b"V", seq, tid, copies, floats per row


def values_message(data: bytes) -> tuple[int, int, list[list[float]], list[float]]:
    """A values message's (seq, tid, rows, live answers).

    Raises:
        struct.error, ValueError: ``data`` is not one.
    """
    _, seq, tid, n, width = VALUES.unpack_from(data)
    flat = array("d")
    flat.frombytes(memoryview(data)[VALUES.size:VALUES.size + n * (width + 1) * 8])
    floats = flat.tolist()
    if len(floats) != n * (width + 1):
        raise ValueError(f"a values message of {len(floats)} floats, not {n} x ({width} + 1)")
    end = n * width
    return seq, tid, [floats[i:i + width] for i in range(0, end, width)], floats[end:]


class Budget:
    """At most ``share`` of one core: after work that took ``spent`` CPU seconds, ``rest`` says how long to
    sleep (``spent * (1 / share - 1)``, owed up to 2 ms at a time so that short batches do not each sleep)."""

    MIN_SLEEP = 0.002

    def __init__(self, share: float) -> None:
        self.factor = 1.0 / share - 1.0 if 0.0 < share < 1.0 else 0.0
        self.owed = 0.0

    def rest(self, spent: float) -> float:
        """The seconds to sleep now after ``spent`` CPU seconds of work (0: not yet)."""
        self.owed += spent * self.factor
        if self.owed < self.MIN_SLEEP:
            return 0.0
        owed, self.owed = self.owed, 0.0
        return owed


def pack(message: Any, folder: Optional[str], name: str) -> bytes:
    """One message as the datagram to send: its pickle (``bytes``: a values message as it is), or (larger
    than ``DATAGRAM``) a ``("file", path)`` whose file holds it (written to ``folder``, removed by the reader).

    Raises:
        OSError: the file could not be written.
    """
    data = message if isinstance(message, bytes) else pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) <= DATAGRAM or folder is None:
        return data
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return pickle.dumps(("file", path), protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Any:
    """The message of a datagram ``pack`` made (its file read and removed); a values message (bytes, not a
    pickle) as its ``("values", seq, tid, rows, live)``.

    Raises:
        OSError: a named file could not be read; pickle.UnpicklingError (or what loading raises) for
        a datagram that is not one.
    """
    message = _message(data)
    if message[0] == "file":
        path = message[1]
        try:
            with open(path, "rb") as f:
                data = f.read()
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        message = _message(data)
    return message


def _message(data: bytes) -> Any:
    """A datagram's or a named file's bytes as their message: a values message's tuple, else the pickle's."""
    return ("values", *values_message(data)) if data[:1] == b"V" else pickle.loads(data)


POLL_SECONDS = 0.01
"""While copies keep coming the process looks for more this often, by its own timer, instead of being woken by
each batch (a send to a process blocked on the socket wakes it: a cost paid on the server's event loop)."""
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
STOP = pickle.dumps(("stop",), protocol=pickle.HIGHEST_PROTOCOL)
"""The ``("stop",)`` message as its datagram (what ``pack`` makes of it)."""
STOP_CHECK_SECONDS = 0.05
"""While the process rests (``Budget``) it looks this often whether the server said stop or went away."""


def _rest(sock: socket.socket, seconds: float) -> None:
    """Sleep ``seconds`` (the budget's rest, or the poll interval), ending early when the next datagram is the
    server's stop or the server is gone, so a shutdown never waits for the budget; copies waiting do not end it."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, STOP_CHECK_SECONDS))
        try:
            head = sock.recv(len(STOP) + 1, socket.MSG_PEEK | _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return
        if head == b"" or head == STOP:
            return


def _waiting(recv: Any) -> Optional[bytes]:
    """The next datagram already waiting on the socket (``recv`` its bound method), None when there is none,
    ``b""`` (the server is gone) when the socket fails."""
    try:
        return recv(DATAGRAM, _DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def serve(sock: socket.socket) -> int:
    """Answer the server's messages until ``stop`` or the end of the socket; returns the exit status.

    It blocks on the socket only while no copies come; while they do, it takes every datagram waiting,
    answers them in one message, rests (``Budget``, at least ``POLL_SECONDS``) and looks again."""
    from edge.shadow import summarize

    shadow = Shadow()
    folder: Optional[str] = None
    lines = False
    budget = Budget(1.0)
    recv, send = sock.recv, sock.send
    clock = time.thread_time
    data: Optional[bytes] = None
    while True:
        if data is None:
            try:
                data = recv(DATAGRAM)
            except OSError:
                return 0
        began = clock()
        done: list[tuple[int, Any, Any]] = []
        stopping = False
        while data is not None:
            if not data:  # the server is gone
                return 0
            message = unpack(data)
            kind = message[0]
            data = None
            if kind == "values" or kind == "jobs":
                cols = shadow.values(message[2], message[3], message[4]) if kind == "values" \
                    else shadow.jobs(message[2], message[3])
                done.append((message[1], summarize(*cols[:4]), cols if lines else None))
            elif kind == "target":
                shadow.target(*message[1:])
            elif kind == "forget":
                shadow.forget(message[1])
            elif kind == "hello":
                sys.path[:] = list(message[1])
                folder, lines = message[2], message[3]
                budget = Budget(message[4])
            elif kind == "stop":
                stopping = True
                break
            if _DONTWAIT:
                data = _waiting(recv)
        if not done:
            if stopping:
                return 0
            continue
        try:
            send(pack(("done", done), folder, f"r{done[0][0]}"))
        except OSError:
            return 0
        if stopping:
            return 0
        if not _DONTWAIT:
            continue
        _rest(sock, max(budget.rest(clock() - began), POLL_SECONDS))
        data = _waiting(recv)


def spawn(folder: str, lines: bool, share: float = 1.0) -> tuple[subprocess.Popen, socket.socket]:
    """Start ``python -m edge.shadow_process`` (this interpreter, this ``edge``) with one end of a new
    socketpair, say hello (``lines``: send each copy's comparison back; ``share``: its CPU budget); (the
    process, the server's end, non-blocking).

    Raises:
        OSError: the socket or the process could not be made.
    """
    kind = getattr(socket, "SOCK_SEQPACKET", socket.SOCK_DGRAM)
    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    except OSError:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_REPO, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        proc = subprocess.Popen([sys.executable, "-m", "edge.shadow_process", str(theirs.fileno())],
                                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        ours.send(pack(("hello", list(sys.path), folder, lines, share), None, ""))
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    return proc, ours


def main(argv: Optional[list[str]] = None) -> int:
    """The process's entry point: ``FD`` (the socket's descriptor, inherited). Returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the server's to handle
    lower_priority()
    sock = socket.socket(fileno=int(args[0]))
    try:
        return serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    raise SystemExit(main())
