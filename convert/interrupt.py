"""Ctrl+C that a library swallowed: noted when it arrives, raised again where deploykit looks.

Some libraries the converter calls catch every exception, ``KeyboardInterrupt`` included, and carry on
or fail with an error of their own: tensorflowjs freezes the graph inside ``except BaseException`` and
falls back to another route, which then fails with "Identity is not in graph"; Python prints a Ctrl+C
that lands in a ``__del__`` as "Exception ignored" and goes on. ``noting_sigint`` remembers every SIGINT
for the block (the handler still raises ``KeyboardInterrupt`` as Python's default one does), and
``check`` raises ``KeyboardInterrupt`` when one came: the catch-alls call it before turning an exception
into an error message, and every progress step calls it, so a Ctrl+C always ends the command as a Ctrl+C.

Nothing is installed on import; ``noting_sigint`` is used by the CLI only.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

_pending: list[bool] = []


def note() -> None:
    """Remember a Ctrl+C that did not (or may not) reach the caller as ``KeyboardInterrupt``."""
    _pending.append(True)


def pending() -> bool:
    """Whether a Ctrl+C came since the last ``check``/``clear``."""
    return bool(_pending)


def clear() -> None:
    _pending.clear()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl+C came (and was perhaps swallowed) since the last check.

    Raises:
        KeyboardInterrupt: a SIGINT was noted.
    """
    if _pending:
        _pending.clear()
        raise KeyboardInterrupt


def _handler(signum: int, frame: FrameType | None) -> None:
    note()
    raise KeyboardInterrupt


@contextlib.contextmanager
def noting_sigint() -> Iterator[None]:
    """For the block, note every SIGINT (and raise ``KeyboardInterrupt`` as Python's default handler
    does). Outside the main thread, or when SIGINT is not handled by Python's default handler (ignored,
    say), nothing changes."""
    clear()
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is _handler:  # unless the block set another one on purpose
            signal.signal(signal.SIGINT, signal.default_int_handler)
