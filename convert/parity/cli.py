"""``deploykit verify``: run the parity engine with progress, print the table, exit 0 only if all pass."""

from __future__ import annotations

import argparse
import math
from typing import Any, TextIO

from convert.parity.engine import ParityReport, verify_bundle


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else f"{value:.2e}")


def _why(r: Any) -> str:
    why = r.error or "; ".join(r.failures)
    if r.status in ("rejected", "unsupported"):
        why = r.note + (f" (measured here: {why})" if why and r.status == "rejected" else "")
    if r.task_metric:
        why = (why + "; " if why else "") + ", ".join(f"{k} {v:.4g} (info)" for k, v in r.task_metric.items())
    return why


RESULT_STYLE = {"passed": "[green]pass[/]", "failed": "[red]FAIL[/]", "rejected": "[yellow]rejected[/]",
                "unsupported": "[yellow]unsupported[/]"}


def print_report(console: Any, report: ParityReport) -> None:
    """The artifact x runtime table (the same one report.html shows)."""
    from rich.table import Table

    from convert.cli import safe

    table = Table(title=safe(f"Parity of {report.bundle} against {report.reference} ({report.seconds:.1f}s)"),
                  title_justify="left")
    for column in ("artifact", "variant", "runtime", "version", "size", "max abs", "of scale", "of range", "vs twin",
                   "top-1", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", overflow="fold")
    for r in report.results:
        top1 = r.worst("top1")
        table.add_row(*(safe(str(c)) for c in (
            r.artifact, r.variant, r.runtime, r.runtime_version, f"{r.bytes:,} B", _num(r.worst("max_abs")),
            _num(r.worst("max_scaled")), _num(r.worst("range_fraction")), _num(r.worst("twin_scaled")),
            "-" if top1 is None else f"{top1:.2%}")), RESULT_STYLE[r.status], safe(_why(r)))
    console.print(table)


def run_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``deploykit verify``; return the exit status: 0 when every artifact passes, or was rejected by convert, or
    cannot run in a runtime by its own declaration (both listed); 1 when an artifact convert accepted fails.

    Raises:
        DeployKitError / BundleError: bad bundle or arguments, a runtime that cannot run.
    """
    from convert.cli import _console, steps

    with steps(_console(err)) as step:
        report = verify_bundle(args.bundle, model=getattr(args, "model", None), runtimes=getattr(args, "runtimes", None),
                               data=getattr(args, "data", None), target=getattr(args, "target", None), progress=step,
                               custom_objects=getattr(args, "custom_objects", None))
    print_report(_console(out), report)
    print(f"wrote {report.bundle / 'parity.json'} and {report.bundle / 'report.html'}", file=out)
    for status, what in (("rejected", "rejected by convert (not served by default)"),
                         ("unsupported", "not run where unsupported")):
        listed = sorted({f"{r.artifact} on {r.runtime}" for r in report.by_status(status)})
        if listed:
            print(f"{len(listed)} {what}: {', '.join(listed)}", file=out)
    if not report.passed:
        failed = [f"{r.artifact} on {r.runtime}" for r in report.by_status("failed")]
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        from edge.text import printable

        print(printable(f"Error: parity failed for {', '.join(failed[:3])}{more}; see {report.bundle / 'report.html'}"),
              file=err)
        return 1
    return 0
