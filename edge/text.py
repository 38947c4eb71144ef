"""Text from a bundle is data: strings from a manifest (names, labels, units, notes, paths) shown on a
terminal have their control characters escaped, so that a manifest cannot set the window title, clear
the screen or move the cursor, and cannot break a line into two."""

from __future__ import annotations

import re
from typing import Any

# C0 controls (tab and newline included: one value, one line), DEL, C1 controls (ESC's 8-bit forms), and the
# bidirectional overrides/isolates that can reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """``str(value)`` with every control character written as a visible escape (``\\x1b``, ``\\u202e``)."""
    text = str(value)
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text
