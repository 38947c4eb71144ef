"""``deploykit-edge predict``: batch predictions from CSV or JSON lines to CSV, keeping the rows' order.

Columns that are not features are ignored for the prediction and passed through to the output. A row
with a missing or non-numeric cell is reported (row number and column) and gets an empty prediction;
the other rows are still predicted.

Row numbers are 1-based and count data rows only (not a CSV's header, not blank lines), as the output's
``row`` column does; every message also gives the line of the input file, e.g.
``row 2 (line 3), column tax: 'abc' is not a number``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence, TextIO

import numpy as np

from edge.errors import EdgeError
from edge.inputs import vocabulary_problem
from edge.logs import neutralise
from edge.manifest import output_names
from edge.runner import Predictor

CHUNK = 1000


@dataclass
class BatchResult:
    """What happened to a batch: rows read, rows predicted, and one message per bad row."""

    rows: int = 0
    predicted: int = 0
    errors: list[str] = field(default_factory=list)


def _where(row: int, line: int) -> str:
    """How a message names a row: its 1-based data-row number and its line in the input file."""
    return f"row {row} (line {line})"


def _number(text: Any, where: str, column: str) -> float:
    """A finite number from a cell; ``where`` names the row (``_where``).

    Raises:
        ValueError: the message names the row and column.
    """
    if text is None:
        raise ValueError(f"{where}, column {column}: missing")
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise ValueError(f"{where}, column {column}: {json.dumps(text)[:40]} is not a number")
    if isinstance(text, str):
        stripped = text.strip()
        if not stripped:
            raise ValueError(f"{where}, column {column}: empty")
        try:
            value = float(stripped)
        except ValueError:
            raise ValueError(f"{where}, column {column}: {stripped[:40]!r} is not a number") from None
    else:
        value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{where}, column {column}: {text!r} is not a finite number")
    return value


def _read(source: TextIO) -> tuple[list[str], list[dict[str, Any]], list[int], str]:
    """Rows of a CSV (header first) or JSON-lines input, as dicts; the line of the input each row starts
    on (1-based); and the detected format.

    Raises:
        EdgeError: the input is empty or not CSV/JSON lines.
    """
    text = source.read()
    stripped = text.lstrip()
    if not stripped:
        raise EdgeError("the input is empty; give a CSV with a header row or JSON lines")
    if stripped[0] in "{[":
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        columns: list[str] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = _where(len(rows) + 1, lineno)
            lines.append(lineno)
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append({"__error__": f"{where}: not JSON ({exc.msg})"})
                continue
            if not isinstance(item, dict):
                rows.append({"__error__": f"{where}: not a JSON object"})
                continue
            for key in item:
                if key not in columns:
                    columns.append(key)
            rows.append(item)
        return columns, rows, lines, "jsonl"
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if h and header.count(h) > 1})
    if duplicated:
        raise EdgeError(f"the CSV header has the column {', '.join(repr(d) for d in duplicated)} twice; "
                        "keep one column per name")
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab")):
            if sep in header[0]:
                raise EdgeError(f"the CSV looks {name}-separated (header {header[0][:60]!r}); "
                                "save it as comma-separated CSV")
    rows = []
    lines = []
    end = reader.line_num  # the line the previous record ended on (a quoted cell may span lines)
    for cells in reader:
        start, end = end + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        row = {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}
        rows.append(row)
        lines.append(start)
    return header, rows, lines, "csv"


def prediction_columns(names: Sequence[str], widths: Sequence[int]) -> list[str]:
    """The output columns: ``prediction`` (``prediction_0``, ... for several values) for one output; for
    several, each output's name (``price``; ``kind_0``, ``kind_1``, ... for several values)."""
    if len(names) == 1:
        return ["prediction"] if widths[0] == 1 else [f"prediction_{k}" for k in range(widths[0])]
    return [c for n, w in zip(names, widths) for c in ([n] if w == 1 else [f"{n}_{k}" for k in range(w)])]


def predict_file(predictor: Predictor, source: TextIO, sink: TextIO) -> BatchResult:
    """Predict every row of ``source`` and write CSV to ``sink``.

    Raises:
        EdgeError: the model is not tabular, or the input lacks a feature column entirely.
    """
    features = predictor.bundle.feature_names()
    if not features:
        raise EdgeError("this model has no tabular features; batch predict needs a tabular model")
    columns, rows, lines, fmt = _read(source)
    if fmt == "csv":
        missing = [f for f in features if f not in columns]
        if missing:
            raise EdgeError(
                f"the input has no column {', '.join(missing)}; expected the features {', '.join(features)} in the header"
            )
    keys = predictor.output_keys
    # feature columns that feed an input indexing an Embedding: each value must be in its vocabulary
    specs = {s["name"]: s for s in predictor.manifest["inputs"] if s.get("vocabulary")}
    vocabulary_columns = [(k, f["name"], specs[f["input"]]) for k, f in enumerate(predictor.manifest["features"])
                          if f["input"] in specs]
    result = BatchResult(rows=len(rows))
    x = np.zeros((len(rows), len(features)))
    good = np.zeros(len(rows), dtype=bool)
    row_error: list[str] = [""] * len(rows)
    for i, row in enumerate(rows):
        if "__error__" in row:
            row_error[i] = row["__error__"]
            continue
        try:
            where = _where(i + 1, lines[i])
            x[i] = [_number(row.get(f), where, f) for f in features]
            for k, name, spec in vocabulary_columns:
                problem = vocabulary_problem(float(x[i][k]), spec)
                if problem:
                    raise ValueError(f"{where}, column {name}: {problem}")
            good[i] = True
        except ValueError as exc:
            row_error[i] = str(exc)
    predictions: list[Any] = [None] * len(rows)
    index = np.flatnonzero(good)
    widths = [1] * len(keys)  # values per row of each output
    for start in range(0, index.size, CHUNK):
        part = index[start : start + CHUNK]
        out = predictor.predict(predictor.rows_to_inputs(x[part]))
        ys = [np.asarray(out[k], dtype=np.float64).reshape(len(part), -1) for k in keys]
        widths = [y.shape[1] for y in ys]
        y = np.concatenate(ys, axis=1)
        for j, i in enumerate(part):
            flat = y[j]
            if not np.all(np.isfinite(flat)):
                row_error[i] = f"{_where(i + 1, lines[i])}: the model produced a non-finite output"
                continue
            predictions[i] = flat
            result.predicted += 1
    pred_cols = prediction_columns([output_names(predictor.manifest)[k] for k in keys], widths)
    passthrough = [c for c in columns if c not in pred_cols and c != "error"]
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow([neutralise(c) for c in ["row", *passthrough, *pred_cols, "error"]])  # headers come from the input
    for i, row in enumerate(rows):
        cells = [] if "__error__" in row else [row.get(c) for c in passthrough]
        cells += [""] * (len(passthrough) - len(cells))
        pred = predictions[i]
        pred_cells = [repr(float(v)) for v in pred] if pred is not None else [""] * len(pred_cols)
        writer.writerow([i + 1, *[neutralise(c if not isinstance(c, (dict, list)) else json.dumps(c)) for c in cells],
                         *pred_cells, neutralise(row_error[i])])
        if row_error[i]:
            result.errors.append(row_error[i])
    return result
