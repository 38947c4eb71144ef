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


def print_report(console: Any, report: ParityReport) -> None:
    """The artifact x runtime table (the same one report.html shows)."""
    from rich.table import Table

    table = Table(title=f"Parity of {report.bundle} against {report.reference} ({report.seconds:.1f}s)", title_justify="left")
    for column in ("artifact", "variant", "runtime", "version", "size", "max abs", "max rel", "range frac.", "top-1", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", overflow="fold")
    for r in report.results:
        worst = {k: max((m.get(k) for m in r.golden.values() if m.get(k) is not None), default=None)
                 for k in ("max_abs", "max_rel", "range_fraction", "top1")}
        why = r.error or "; ".join(r.failures)
        if r.task_metric:
            why = (why + "; " if why else "") + ", ".join(f"{k} {v:.4g} (info)" for k, v in r.task_metric.items())
        table.add_row(r.artifact, r.variant, r.runtime, r.runtime_version, f"{r.bytes:,} B", _num(worst["max_abs"]),
                      _num(worst["max_rel"]), _num(worst["range_fraction"]),
                      "-" if worst["top1"] is None else f"{worst['top1']:.2%}",
                      "[green]pass[/]" if r.passed else "[red]FAIL[/]", why)
    console.print(table)


def run_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``deploykit verify``; return the exit status (0 only if every artifact passes everywhere).

    Raises:
        DeployKitError / BundleError: bad bundle or arguments, a runtime that cannot run.
    """
    from convert.cli import _console, steps

    with steps(_console(err)) as step:
        report = verify_bundle(args.bundle, model=getattr(args, "model", None), runtimes=getattr(args, "runtimes", None),
                               data=getattr(args, "data", None), target=getattr(args, "target", None), progress=step)
    print_report(_console(out), report)
    print(f"wrote {report.bundle / 'parity.json'} and {report.bundle / 'report.html'}", file=out)
    if not report.passed:
        failed = [f"{r.artifact} on {r.runtime}" for r in report.results if not r.passed]
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        print(f"Error: parity failed for {', '.join(failed[:3])}{more}; see {report.bundle / 'report.html'}", file=err)
        return 1
    return 0
