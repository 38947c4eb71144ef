"""``report.html``: one self-contained page (inline CSS and SVG, no script, no CDN) from parity.json data."""

from __future__ import annotations

import html
import math
from typing import Any

from edge.tolerance import describe as describe_tolerance

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}td:not(:last-child){white-space:nowrap}th{background:#f3f3f3}.pass{color:#0a0;font-weight:bold}
.fail{color:#c00;font-weight:bold}.note{color:#a60;font-weight:bold}.muted{color:#777}svg{background:#fff;border:1px solid #ddd}code{font-size:12px}"""
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else f"{value:.3g}")
    return html.escape(str(value))


def _worst(result: dict[str, Any], key: str) -> float | None:
    values = [m.get(key) for m in (result.get("golden") or {}).values() if m.get(key) is not None]
    return max(values) if values else None


def _plot(results: list[dict[str, Any]]) -> str:
    """Per-golden-row max |error| per artifact x runtime, log scale, as inline SVG."""
    series = [(f"{r['artifact']} @ {r['runtime']}", r["per_row_abs"]) for r in results if r.get("per_row_abs")]
    if not series:
        return "<p class='muted'>No golden errors to plot.</p>"
    width, height, left, top, bottom = 900, 320, 60, 10, 30
    n = max(len(s) for _, s in series)
    finite = [v for _, s in series for v in s if v is not None and math.isfinite(v) and v > 0]
    lo = math.floor(math.log10(min(finite))) if finite else -8
    hi = math.ceil(math.log10(max(finite))) if finite else 0
    hi = max(hi, lo + 1)

    def y_of(v: float) -> float:
        if v is None or not math.isfinite(v):
            return top
        v = max(v, 10.0 ** lo)
        return top + (hi - math.log10(v)) / (hi - lo) * (height - top - bottom)

    def x_of(i: int) -> float:
        return left + (i / max(n - 1, 1)) * (width - left - 20)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 16 * len(series)}' role='img' "
             "aria-label='max absolute error per golden input'>"]
    for e in range(lo, hi + 1):
        y = y_of(10.0 ** e)
        parts.append(f"<line x1='{left}' x2='{width - 20}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>"
                     f"<text x='4' y='{y + 4:.1f}' font-size='11'>1e{e}</text>")
    parts.append(f"<text x='{left}' y='{height - 8}' font-size='11'>golden input 0 … {n - 1} (zero errors drawn at 1e{lo})</text>")
    for k, (label, values) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.2' points='{points}'/>")
        ly = height + 12 + 16 * k
        parts.append(f"<rect x='{left}' y='{ly - 9}' width='10' height='10' fill='{color}'/>"
                     f"<text x='{left + 16}' y='{ly}' font-size='11'>{html.escape(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def render(data: dict[str, Any]) -> str:
    """The report page for a ``ParityReport.to_json()`` dict."""
    verdict = "<span class='pass'>PASS</span>" if data["passed"] else "<span class='fail'>FAIL</span>"
    rows = []
    for r in data["results"]:
        noises = [m["reference_noise"] for m in (r.get("golden") or {}).values() if m.get("reference_noise") is not None]
        tol_text = describe_tolerance(r["tolerance"], max(noises) if noises else None)
        state = r.get("status") or ("passed" if r["passed"] else "failed")
        status = f"<span class='{'pass' if state == 'passed' else 'fail' if state == 'failed' else 'note'}'>{state}</span>"
        why = r["error"] or "; ".join(r["failures"])
        if state in ("rejected", "unsupported"):
            why = r.get("note", "") + (f" (measured here: {why})" if why and state == "rejected" else "")
        task = ", ".join(f"{k} {v:.4g}" for k, v in (r.get("task_metric") or {}).items())
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in (
            html.escape(r["artifact"]), html.escape(r["variant"]), html.escape(r["runtime"]),
            html.escape(r.get("runtime_version") or ""), f"{r['bytes']:,} B", html.escape(tol_text),
            _fmt(_worst(r, "max_abs")), _fmt(_worst(r, "max_scaled")), _fmt(_worst(r, "range_fraction")),
            _fmt(_worst(r, "twin_scaled")), _fmt(_worst(r, "top1")), html.escape(task) or "-", status, html.escape(why))) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in ("artifact", "variant", "runtime", "version", "size", "tolerance",
                                                 "max abs", "of scale", "of range", "vs twin", "top-1",
                                                 "task metric (info)",
                                                 "result", "why"))
    env = "".join(f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in data.get("environment", {}).items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>deploykit parity: {html.escape(data['name'])}</title>
<style>{CSS}</style></head><body>
<h1>Parity report: {html.escape(data['name'])} {verdict}</h1>
<p>Reference: {html.escape(data['reference'])}. Checked {html.escape(data['at'])} in {data['seconds']:.1f} s.
Runtimes: {html.escape(', '.join(data['runtimes']))}. Larger sample: {data['sample_rows']} rows.</p>
<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>
<h2>Error per golden input</h2>{_plot(data['results'])}
<h2>Environment</h2><ul>{env}</ul>
</body></html>
"""
