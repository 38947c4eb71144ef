"""Print the zoo's outcome table (models x artifacts x runtimes) as markdown, from test-artifacts/zoo_report.json.

    .venv/bin/python tests/zoo/zoo_table.py [REPORT...]       # the markdown (several reports: merged)
    .venv/bin/python tests/zoo/zoo_table.py --check [REPORT]  # every case of the report against zoo_expected

One row per model, one column per artifact. A cell says ``pass`` when the artifact passed in every runtime
of its kind (TFLite: litert and tflite-runtime 2.14 = ``tr``; TFJS: Chromium cpu, wasm, webgl), else which
runtime did what: ``miss 3.2%`` (ran, missed its bound by that much), ``error``, ``cannot run``;
``rejected 1.6%`` (convert marked it rejected, with its measured error on the held-out rows, as zoo_expected.py
records it; a float16 artifact: the precision loss its rejection states), ``skipped (NEG)`` (not written; the
layer or op named by the kit), ``convert error``. Below the table: the counts and each distinct reason once.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPORT = HERE.parents[1] / "test-artifacts" / "zoo_report.json"
COLUMNS = {"fp32": "edge/model.fp32.tflite", "fp16": "edge/model.fp16.tflite", "dynamic": "edge/model.dynamic.tflite",
           "int8": "edge/model.int8.tflite", "int16x8": "edge/model.int16x8.tflite",
           "TFJS graph": "web/model/graph/model.json", "TFJS layers": "web/model/layers/model.json"}
TFLITE, BROWSER = ("litert", "tflite-runtime"), ("chromium-cpu", "chromium-wasm", "chromium-webgl")
SHORT_RT = {"litert": "litert", "tflite-runtime": "tr", "chromium-cpu": "cpu", "chromium-wasm": "wasm",
            "chromium-webgl": "webgl"}
# what a reason names: a quoted TFLite op ('NEG'), a layer class before its instance name (Rescaling ('r'),
# GRU 'gru'), a TF/TFJS op, a SavedModel source, an integer input the int16x8 calibration cannot range
NAME = re.compile(r"'([A-Z][A-Z0-9_]+)'|\b([A-Z]\w+) \(?'|\b(Erfc|Einsum|_FusedMatMul|SavedModel|Gelu)\b|(serving_default_tokens)")


def _first_number(text: str) -> str:
    match = re.search(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?%?", text.split(": ", 1)[-1])
    return match.group() if match else ""


def rejected_number(artifact: dict[str, Any]) -> str:
    """The number a rejected artifact's cell shows, the one zoo_expected.py records: its measured error on the
    held-out rows (``measured.held_out.range_fraction``; ``inf`` when an output was not finite), else the
    percentage its rejection states for the held-out rows, else (a float16 artifact the precision twin rejected)
    the first percentage it states. Never a number that is not a
    percentage (an output's name, a row count, the calibration rows' figure that comes first in the text)."""
    held_out = (artifact.get("measured") or {}).get("held_out")
    if held_out is not None:
        value = held_out.get("range_fraction")
        return "inf" if value is None else f"{float(value):.3%}"
    text = str(artifact.get("rejection", ""))
    match = (re.search(r"(?<![\w.])(?:\d+(?:\.\d+)?|inf)%(?= on \d+ held-out rows)", text)
             or re.search(r"(?<![\w.])(?:\d+(?:\.\d+)?|inf)%", text))
    return match.group() if match else ""


def _names(reason: str) -> str:
    found: list[str] = []
    for match in NAME.finditer(reason):
        name = next(g for g in match.groups() if g)
        name = "token input" if name == "serving_default_tokens" else name
        if name not in found and name not in ("TFJS", "TFLite", "Keras"):
            found.append(name)
    return ", ".join(found[:3])


def _run_word(result: dict[str, Any]) -> str:
    if result["passed"]:
        return "pass"
    if result.get("status") == "unsupported":
        return "cannot run"
    if result["error"]:
        return "error"
    return f"miss {_first_number(result['failures'][0])}" if result["failures"] else "fail"


def cell(model: dict[str, Any], path: str, reasons: list[str]) -> str:
    """One artifact of one model, over its runtimes."""
    if model["convert_error"]:
        return "convert error"
    artifact = next((a for a in model["artifacts"] if a["path"] == path), None)
    if artifact is None:
        fmt = "tflite" if path.endswith(".tflite") else f"tfjs_{path.split('/')[2]}"
        variant = path.split(".")[1] if fmt == "tflite" else None
        variant = {"fp32": "float32", "fp16": "float16"}.get(variant, variant)
        skip = next((s for s in model["skipped"] if s["format"] == fmt and (fmt != "tflite" or s.get("variant") == variant)), None)
        if skip is None:
            return "missing"
        if skip["reason"] not in reasons:
            reasons.append(skip["reason"])
        return f"skipped ({_names(skip['reason'])})"
    if artifact.get("status") == "rejected":
        if artifact.get("rejection") and artifact["rejection"] not in reasons:
            reasons.append(artifact["rejection"])
        return f"rejected {rejected_number(artifact)}".strip()
    words = {SHORT_RT[r["runtime"]]: _run_word(r) for r in model["results"] if r["artifact"] == path}
    for r in model["results"]:
        if r["artifact"] == path and not r["passed"]:
            text = r["error"] or "; ".join(r["failures"])
            if text not in reasons:
                reasons.append(text)
    if words and all(w == "pass" for w in words.values()):
        return "pass"
    groups: dict[str, list[str]] = {}
    for runtime, word in words.items():
        groups.setdefault(word, []).append(runtime)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{'/'.join(rts)}: {word}" for word, rts in groups.items())


def markdown(report: dict[str, Any]) -> str:
    """The table, the counts and the distinct reasons, as markdown."""
    reasons: list[str] = []
    lines = ["| model | set | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    cases = {"pass": 0, "other": 0}
    for name, model in report["models"].items():
        cells = [cell(model, path, reasons) for path in COLUMNS.values()]
        lines.append(f"| {name} | {model['set']} | " + " | ".join(cells) + " |")
        for r in model["results"]:
            cases["pass" if r["passed"] else "other"] += 1
    problems = check_all(report)
    total = sum(len(TFLITE) if p.endswith(".tflite") else len(BROWSER) for p in COLUMNS.values()) * len(report["models"])
    lines += ["", f"{len(report['models'])} models; {cases['pass']} of {cases['pass'] + cases['other']} artifact x runtime "
              f"runs passed; {total - len(problems)} of {total} cases as tests/zoo/zoo_expected.py expects.",
              "", "Reasons, once each:", ""]
    lines += [f"- {text}" for text in reasons]
    return "\n".join(lines)


def check_all(report: dict[str, Any]) -> list[str]:
    """Every model x artifact x runtime of the report checked against zoo_expected's table; the mismatches."""
    sys.path.insert(0, str(HERE))
    from zoo_expected import ARTIFACTS, BROWSER_RT, TFLITE_RT, check

    problems = []
    for name, model in report["models"].items():
        for short, path in ARTIFACTS.items():
            for runtime in (TFLITE_RT if path.endswith(".tflite") else BROWSER_RT):
                try:
                    check(model, short, runtime)
                except AssertionError as exc:
                    problems.append(f"{name}-{short}-{runtime}: {' '.join(str(exc).split())[:300]}")
    return problems


def main(argv: list[str]) -> int:
    checking = "--check" in argv
    args = [a for a in argv if a != "--check"]
    report: dict[str, Any] = {"models": {}}
    for path in [Path(a) for a in args] or [REPORT]:  # several reports: their models merged, later ones win
        if not path.is_file():
            print(f"Error: {path} does not exist; run `make zoo` (or pytest tests/zoo) first", file=sys.stderr)
            return 1
        report["models"].update(json.loads(path.read_text())["models"])
    if checking:
        problems = check_all(report)
        print("\n".join(problems) or "every case is as the table expects")
        return 1 if problems else 0
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
