"""``deploykit-edge drift``: the drift of a logged period, read from prediction-log CSVs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge.drift import ks_2samp
from edge.errors import EdgeError
from edge.logs import neutralise


def _log_files(path: Path) -> list[Path]:
    """Prediction logs under ``path`` (oldest rotation first), or ``path`` itself.

    Raises:
        EdgeError: nothing to read.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise EdgeError(f"log {str(path)!r} does not exist; pass a predictions CSV or the --log-dir folder")
    files = sorted(path.glob("predictions*.csv*"))

    def order(p: Path) -> tuple[str, int]:
        base, _, rot = p.name.partition(".csv")
        n = int(rot[1:]) if rot[1:].isdigit() else 0
        return base, -n  # predictions.csv.3 before .2 before .1 before the live file

    files = sorted(files, key=order)
    if not files:
        raise EdgeError(f"no predictions*.csv in {str(path)!r}; pass a predictions CSV or the --log-dir folder")
    return files


def _cell(text: str) -> float | None:
    text = text.strip()
    if text.startswith("'"):
        text = text[1:]
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def drift_of_logs(path: Path, manifest: Mapping[str, Any], alpha: float = 0.01, last: int | None = None) -> dict[str, Any]:
    """KS statistic and p-value per feature of the logged inputs against the manifest's reference sample.

    Raises:
        EdgeError: no log, a log without the feature columns, or a non-tabular model.
    """
    features = manifest.get("features") or []
    if not features:
        raise EdgeError("this model has no tabular features; drift needs them")
    names = [f["name"] for f in features]
    files = _log_files(Path(path))
    values: dict[str, list[float]] = {n: [] for n in names}
    skipped = 0
    for file in files:
        with open(file, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or [])
            # the server wrote each name through edge.logs.neutralise ('=rm' for =rm); a raw name is read too
            column = {n: (n if n in header else neutralise(n)) for n in names}
            missing = [n for n in names if column[n] not in header]
            if missing:
                raise EdgeError(f"{file} has no column {', '.join(missing)}; is it a deploykit-edge predictions log?")
            for row in reader:
                for n in names:
                    v = _cell(row.get(column[n]) or "")
                    if v is None:
                        skipped += 1
                    else:
                        values[n].append(v)
    out = []
    for f in features:
        sample = values[f["name"]][-last:] if last else values[f["name"]]
        ref = f.get("reference_sample") or []
        if not sample or not ref:
            out.append({"feature": f["name"], "n": len(sample), "statistic": None, "p_value": None, "drifted": False})
            continue
        stat, p = ks_2samp(np.asarray(sample), np.asarray(ref))
        out.append({"feature": f["name"], "n": len(sample), "statistic": stat, "p_value": p, "drifted": p < alpha})
    rows = max((o["n"] for o in out), default=0)
    return {"files": [str(f) for f in files], "rows": rows, "alpha": alpha, "skipped_cells": skipped,
            "drifted": any(o["drifted"] for o in out), "features": out}
