"""What the ``deploykit`` commands show: progress steps, the artifact table and the parity table.

The presentation itself (Rich consoles, steps, tables, escaping) is ``edge.console``, shared with
``deploykit-edge``; this module only says what the converter's tables hold.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, TextIO

from convert import interrupt
from edge.console import Step, print_table, rich_console, safe, steps as console_steps

ARTIFACT_COLUMNS = ("artifact", "format", "variant", "size", "fp32 / this")
PARITY_COLUMNS = ("artifact", "variant", "runtime", "version", "size", "max abs", "of scale", "of range", "vs twin",
                  "top-1", "result")
RESULT_STYLE = {"passed": "[green]pass[/]", "failed": "[red]FAIL[/]", "rejected": "[yellow]rejected[/]",
                "unsupported": "[yellow]unsupported[/]"}


@contextlib.contextmanager
def steps(stream: TextIO) -> Iterator[Step]:
    """Progress on ``stream``, one line per step; every step first raises a Ctrl+C a library swallowed
    (``convert.interrupt.check``)."""
    with console_steps(rich_console(stream), check=interrupt.check) as step:
        yield step


def size(n: int | None) -> str:
    """Bytes as the tables show them: ``1,234 B`` under 10,000, else KiB."""
    if n is None:
        return "-"
    return f"{n:,} B" if n < 10_000 else f"{n / 1024:,.1f} KiB"


def print_artifacts(console: Any, rows: list[dict[str, Any]], title: str) -> None:
    """The table of what convert wrote and skipped (``ConvertResult.rows``)."""
    print_table(console, title, ARTIFACT_COLUMNS, [
        (safe(row["artifact"]), safe(row["format"]), safe(row["variant"]), size(row["bytes"]),
         safe(row.get("ratio", "")), safe(row["note"])) for row in rows], folded="note")


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else f"{value:.2e}")


def why(r: Any) -> str:
    """The parity table's last column for one result: the error, the failures, convert's note, the task metric."""
    text = r.error or "; ".join(r.failures)
    if r.status in ("rejected", "unsupported"):
        text = r.note + (f" (measured here: {text})" if text and r.status == "rejected" else "")
    noises = [m["reference_noise"] for m in r.golden.values() if m.get("reference_noise") is not None]
    if noises and r.status in ("passed", "failed") and not r.error:
        bound = max(m["max_scaled_allowed"] for m in r.golden.values() if m.get("reference_noise") is not None)
        text = (text + "; " if text else "") + f"of-scale bound {bound:.3g} (reference noise {max(noises):.3g})"
    if r.task_metric:
        text = (text + "; " if text else "") + ", ".join(f"{k} {v:.4g} (info)" for k, v in r.task_metric.items())
    return text


def print_report(console: Any, report: Any) -> None:
    """The artifact x runtime table of a ``ParityReport`` (the same one report.html shows)."""
    rows = []
    for r in report.results:
        top1 = r.worst("top1")
        rows.append((*(safe(str(c)) for c in (
            r.artifact, r.variant, r.runtime, r.runtime_version, f"{r.bytes:,} B", _num(r.worst("max_abs")),
            _num(r.worst("max_scaled")), _num(r.worst("range_fraction")), _num(r.worst("twin_scaled")),
            "-" if top1 is None else f"{top1:.2%}")), RESULT_STYLE[r.status], safe(why(r))))
    print_table(console, f"Parity of {report.bundle} against {report.reference} ({report.seconds:.1f}s)",
                PARITY_COLUMNS, rows, folded="why")
