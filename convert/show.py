"""What the ``deploykit`` commands show: progress steps, the artifact table and the parity table.

The presentation itself (Rich consoles, tables, escaping) is ``edge.console``, shared with ``deploykit-edge``;
this module says what the converter's tables hold, and its progress steps mark a step that wrote nothing (✗).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterator, TextIO

from convert import interrupt
from edge.console import Step, print_table, rich_console, safe

ARTIFACT_COLUMNS = ("artifact", "format", "variant", "size", "fp32 / this")
PARITY_COLUMNS = ("artifact", "variant", "runtime", "version", "size", "max abs", "of scale", "of range", "vs twin",
                  "top-1", "result")
RESULT_STYLE = {"passed": "[green]pass[/]", "failed": "[red]FAIL[/]", "rejected": "[yellow]rejected[/]",
                "unsupported": "[yellow]unsupported[/]"}


class Steps:
    """The progress callback of the converter's commands: ``step(name)`` closes the previous step and starts one;
    ``step.skipped()`` marks the current one as having written nothing, so that its line is ``✗ NAME: not
    written (s)`` instead of ``✓ NAME (s)`` (``convert.stages.written.Written.skip`` calls it). Each step first
    raises a Ctrl+C a library swallowed (``convert.interrupt.check``)."""

    def __init__(self, done: Any, show: Any = lambda name: None) -> None:
        self._done, self._show = done, show
        self._name: str | None = None
        self._start = 0.0
        self._skipped = False

    def __call__(self, name: str) -> None:
        interrupt.check()
        self.close()
        self._name, self._start, self._skipped = safe(name), time.perf_counter(), False
        self._show(self._name)

    def skipped(self) -> None:
        self._skipped = True

    def close(self) -> None:
        if self._name is not None:
            seconds = f"({time.perf_counter() - self._start:.1f}s)"
            self._done(f"{self._name}: not written {seconds}" if self._skipped else f"{self._name} {seconds}",
                       not self._skipped)
        self._name = None


@contextlib.contextmanager
def steps(stream: TextIO) -> Iterator[Step]:
    """Progress on ``stream``, one line per step (``Steps``), with a spinner on a terminal (as ``edge.console.steps``)."""
    console = rich_console(stream)
    if not console.is_terminal:  # logs and pipes: plain lines (a spinner would leave a blank line behind)
        plain = Steps(lambda line, ok: console.print(f"{'✓' if ok else '✗'} {line}"))
        yield plain
        plain.close()
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)
        styled = Steps(lambda line, ok: progress.console.print(f"{'[green]✓[/]' if ok else '[red]✗[/]'} {line}"),
                       lambda shown: progress.update(task, description=shown))
        yield styled
        styled.close()


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
