"""Align DATA with the model's inputs: a CSV for tabular models, an .npz for any model."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from convert.data import Dataset, read_csv, read_npz
from convert.errors import DeployKitError
from convert.reference import Reference, TensorSpec


def _np_dtype(spec: TensorSpec) -> np.dtype:
    return np.dtype("float32" if spec.dtype == "float16" else spec.dtype)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def tabular_layout(ref: Reference) -> str | None:
    """``"single"`` (one (None, k) float input), ``"columns"`` (inputs of shape (None, 1) or (None,)), or None."""
    floats = all("float" in s.dtype for s in ref.inputs)
    if not floats:
        return None
    if len(ref.inputs) == 1 and len(ref.inputs[0].shape) == 2 and ref.inputs[0].shape[1]:
        return "single"
    if all(len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] == 1) for s in ref.inputs):
        return "columns"
    return None


def load_dataset(ref: Reference, path: Path, target: str | None, features: Sequence[str] | None) -> Dataset:
    """Read DATA and align it to the model's inputs.

    Raises:
        DeployKitError: missing file, wrong columns (names the missing and extra ones), bad cells,
        wrong shapes, or a format that does not fit the model.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _from_npz(ref, path, target)
    if path.suffix.lower() not in (".csv", ".txt"):
        raise DeployKitError(f"data file {path.name} must be a .csv (tabular models) or an .npz (one array per model input)")
    layout = tabular_layout(ref)
    if layout is None:
        names = ", ".join(s.name for s in ref.inputs)
        raise DeployKitError(
            f"this model's inputs ({names}) are not tabular, so DATA must be an .npz with one array per input; "
            "save it with numpy.savez(path, **{input_name: array})"
        )
    table = read_csv(path)
    if target is not None and target not in table.columns:
        raise DeployKitError(
            f"--target {target!r} is not a column of {path.name} (columns: {_listing(table.columns)}); pass the label column's name"
        )
    others = [c for c in table.columns if c != target]
    if layout == "single":
        spec = ref.inputs[0]
        width = int(spec.shape[1])
        wanted = list(features) if features else others
        missing = [f for f in wanted if f not in table.columns]
        extra = [c for c in others if c not in wanted]
        if missing or (features and extra) or len(wanted) != width:
            raise DeployKitError(
                f"DATA columns do not match the model's input {spec.name!r} of {width} features: "
                f"missing {_listing(missing)}; extra {_listing(extra)}"
                f"{'' if features else f'; feature columns found: {_listing(others)}'}; "
                "fix the CSV, or name the features in order with --features and the label with --target"
            )
        x = np.stack([table.column(f) for f in wanted], axis=1).astype(_np_dtype(spec))
        inputs = {spec.name: x}
        names = wanted
    else:
        wanted = [s.name for s in ref.inputs]
        missing = [n for n in wanted if n not in table.columns]
        extra = [c for c in others if c not in wanted]
        if missing or extra:
            raise DeployKitError(
                f"DATA columns do not match the model's inputs: missing {_listing(missing)}; extra {_listing(extra)}; "
                "name the CSV columns as the model's inputs and pass the label with --target"
            )
        inputs = {}
        for spec in ref.inputs:
            col = table.column(spec.name).astype(_np_dtype(spec))
            inputs[spec.name] = col[:, None] if len(spec.shape) == 2 else col
        names = wanted
    labels = table.column(target) if target is not None else None
    return Dataset(inputs=inputs, labels=labels, feature_names=names, path=path)


def _from_npz(ref: Reference, path: Path, target: str | None) -> Dataset:
    arrays = read_npz(path)
    wanted = [s.name for s in ref.inputs]
    missing = [n for n in wanted if n not in arrays]
    extra = [n for n in arrays if n not in wanted and n != target]
    if missing or extra:
        raise DeployKitError(
            f"DATA arrays do not match the model's inputs: missing {_listing(missing)}; extra {_listing(extra)}; "
            "name the .npz arrays as the model's inputs (and the labels with --target)"
        )
    inputs = {}
    rows = None
    for spec in ref.inputs:
        values = arrays[spec.name]
        expected = spec.shape[1:]
        actual = list(values.shape[1:])
        if len(expected) != len(actual) or any(e is not None and e != a for e, a in zip(expected, actual)):
            raise DeployKitError(
                f"DATA array {spec.name!r} has rows of shape {tuple(actual)}, the model expects {tuple(expected)}; fix the array"
            )
        if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
            raise DeployKitError(f"DATA array {spec.name!r} is not numeric (dtype {values.dtype}); store numbers")
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            row = int(np.argwhere(~np.isfinite(values))[0][0])
            raise DeployKitError(f"DATA array {spec.name!r} has NaN or infinite values (first at row {row + 1}, "
                                 f"index {row}); clean the data")
        if rows is not None and len(values) != rows:
            raise DeployKitError(f"DATA arrays have different row counts ({rows} and {len(values)}); align them")
        rows = len(values)
        inputs[spec.name] = values.astype(_np_dtype(spec))
    labels = arrays[target] if target is not None else None
    return Dataset(inputs=inputs, labels=labels, feature_names=None, path=path)
