"""Stage 10, write the manifest once: ``manifest.json`` (and its copy in ``web/``, beside the golden file's),
validated against ``edge/manifest.schema.json``, with the sha256 of every file that is not an artifact."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from convert import __version__
from convert.reference import Reference
from convert.stages.golden_file import GOLDEN
from convert.stages.reference_run import ReferenceRun
from convert.stages.sources import Sources
from convert.stages.tflite_variants import tf_version
from convert.stages.written import Written
from edge import manifest as manifest_mod

RUNNER_PREPROCESSING = ("Apply each artifact's input_transform before inference: standardize means "
                        "z = (x - mean) / std per column, computed in float64, then cast to float32.")


def write_manifest(name: str, ref: Reference, sources: Sources, run: ReferenceRun, written: Written, *,
                   model: Path, data: Path, target: str | None, seed: int | None,
                   annotate: Callable[[dict[str, Any]], None] = lambda manifest: None) -> dict[str, Any]:
    """Write ``manifest.json`` into ``written.staging`` (and ``web/manifest.json`` and ``web/golden.json``
    when there is a ``web/`` folder); return the manifest. ``annotate`` adds to it before it is validated
    (``convert.labels``: class names and image inputs).

    Raises:
        DeployKitError: no artifact was written (naming every skip).
        jsonschema.ValidationError: the manifest breaks its schema (a bug of the kit's).
    """
    written.require_one()
    note_noise(run, written)
    staging = written.staging
    web = staging / "web"
    if web.is_dir():
        shutil.copyfile(staging / GOLDEN, web / GOLDEN)
    manifest = {
        "schema_version": manifest_mod.SCHEMA_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "task": run.task,
        "inputs": [s.to_json() for s in ref.inputs],
        "features": sources.features,
        "outputs": run.outputs,
        "target": target,
        "preprocessing": {"in_graph": in_graph_preprocessing(ref), "runner": RUNNER_PREPROCESSING},
        "artifacts": written.artifacts,
        "skipped": written.skipped,
        "files": {},
        "versions": versions(),
        "provenance": {
            "model_file": Path(model).name,
            "model_sha256": sha256_path(Path(model)),
            "data_file": Path(data).name,
            "data_sha256": manifest_mod.sha256_file(Path(data)),
            "seed": seed,
            **({"custom_objects": ref.custom_provenance} if ref.custom_provenance else {}),
        },
        "parity": None,
    }
    artifact_paths = {a["path"] for a in written.artifacts}
    for path in sorted(staging.rglob("*")):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and rel not in (manifest_mod.MANIFEST, "web/manifest.json") and rel not in artifact_paths:
            manifest["files"][rel] = manifest_mod.sha256_file(path)
    annotate(manifest)
    manifest_mod.validate(manifest)
    text = manifest_mod.dumps(manifest)
    (staging / manifest_mod.MANIFEST).write_text(text, encoding="utf-8")
    if web.is_dir():
        (web / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def note_noise(run: ReferenceRun, written: Written) -> None:
    """Say on every float32 artifact, and in the table, why no reference noise was recorded (when none was)."""
    if not run.noise_note:
        return
    for artifact in written.artifacts:
        if artifact["tolerance"]["kind"] == "scaled":
            artifact["note"] = "; ".join(n for n in (artifact["note"], run.noise_note) if n)
    written.note_row("manifest.json", "reference", "float32", run.noise_note)


def in_graph_preprocessing(ref: Reference) -> list[dict[str, Any]]:
    """The Normalization and Rescaling layers of a Keras reference, with their constants."""
    steps: list[dict[str, Any]] = []
    model = ref.keras_model
    if model is None:
        return steps
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            steps.append({
                "kind": "normalization", "layer": layer.name,
                "formula": "(x - mean) / max(sqrt(variance), 1e-7)",
                "mean": [float(v) for v in np.asarray(layer.mean).reshape(-1)],
                "variance": [float(v) for v in np.asarray(layer.variance).reshape(-1)],
            })
        elif isinstance(layer, keras.layers.Rescaling):
            steps.append({"kind": "rescaling", "layer": layer.name, "scale": _jsonable(layer.scale),
                          "offset": _jsonable(layer.offset)})
    return steps


def _jsonable(value: Any) -> Any:
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


def versions() -> dict[str, str]:
    """The versions the bundle was made with."""
    import keras
    import tensorflowjs

    return {
        "python": platform.python_version(),
        "tensorflow": tf_version(),
        "keras": keras.__version__,
        "tensorflowjs": tensorflowjs.__version__,
        "deploykit": __version__,
        "numpy": np.__version__,
    }


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a SavedModel folder (every file's relative path and bytes, sorted)."""
    if path.is_file():
        return manifest_mod.sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(manifest_mod.sha256_file(file).encode())
    return digest.hexdigest()
