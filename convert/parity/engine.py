"""The parity engine: every artifact of a bundle, in its real runtime, against the Keras reference.

This module is the sequence and the public face (``verify``, ``verify_bundle``, and the names callers use from
the pieces): the runtimes are started by ``convert.parity.runners``, each artifact x runtime is run and judged
by ``convert.parity.judge``, and the outcome is a ``convert.parity.report.ParityReport``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from convert.errors import DeployKitError
from convert.parity.judge import Case, golden_twin, mark_unsupported_backends, sample_twin, verify_artifact
from convert.parity.report import ParityReport, Result
from convert.parity.runners import RUNTIMES, TFLITE_RUNTIMES, Progress, Runners, parse_runtimes
from edge import manifest as mf

__all__ = ["RUNTIMES", "SAMPLE_ROWS", "ParityReport", "Result", "Runners", "VerifyOptions", "parse_runtimes",
           "verify", "verify_bundle"]

SAMPLE_ROWS = 256


def _golden_arrays(golden: Mapping[str, Any], manifest: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    try:
        inputs = {s["name"]: np.asarray(golden["inputs"][s["name"]], dtype=np.float64) for s in manifest["inputs"]}
        outputs = {o["key"]: np.asarray(golden["outputs"][o["key"]], dtype=np.float64) for o in manifest["outputs"]}
    except (KeyError, ValueError, TypeError) as exc:
        raise DeployKitError(f"golden.json does not match manifest.json ({exc}); re-create the bundle") from None
    return inputs, outputs


def _rows(shape: Any) -> list[int | None]:
    return [None if d is None else int(d) for d in list(shape)[1:]]


def _same_rows(have: list[int | None], want: list[int | None]) -> bool:
    return len(have) == len(want) and all(h is None or w is None or h == w for h, w in zip(have, want))


def check_model(ref: Any, manifest: Mapping[str, Any], name: str) -> None:
    """Refuse a ``--model`` whose interface is not the bundle's: its inputs (names, dtypes, the shape of a row) and
    its outputs (keys, the shape of a row) against the manifest's. Keras would otherwise broadcast a row of the
    wrong width and every case would fail, or fail inside the model with an internal error.

    Raises:
        DeployKitError: the first mismatch, named (``--model NAME does not match the bundle: ...``).
    """
    where = f"--model {name} does not match the bundle"
    fix = "pass the model the bundle was converted from, or convert this one"
    have_in = {s.name: s for s in ref.inputs}
    want_in = {s["name"]: s for s in manifest["inputs"]}
    have_out = {s.key: s for s in ref.outputs}
    want_out = {o["key"]: o for o in manifest["outputs"]}
    for what, have, want in (("inputs", have_in, want_in), ("outputs", have_out, want_out)):
        if sorted(have) != sorted(want):
            raise DeployKitError(f"{where}: its {what} are {sorted(have)}, the bundle's {sorted(want)}; {fix}")
    for input_name, spec in want_in.items():
        got = have_in[input_name]
        if got.dtype != spec["dtype"]:
            raise DeployKitError(f"{where}: input {input_name!r} is {got.dtype}, the bundle's {spec['dtype']}; {fix}")
        if not _same_rows(_rows(got.shape), _rows(spec["shape"])):
            raise DeployKitError(f"{where}: input {input_name!r} takes rows of shape {_rows(got.shape)}, the bundle's "
                                 f"{_rows(spec['shape'])}; {fix}")
    for key, spec in want_out.items():
        got = have_out[key]
        if not _same_rows(_rows(got.shape), _rows(spec["shape"])):
            label = repr(spec["name"]) + (f" ({key})" if key != spec["name"] else "")
            raise DeployKitError(f"{where}: output {label} gives rows of shape {_rows(got.shape)}, the bundle's "
                                 f"{_rows(spec['shape'])}; {fix}")


@dataclass(frozen=True)
class VerifyOptions:
    """What ``deploykit verify`` takes: the bundle; the reference model (None: the one the bundle was converted
    from, if found); the runtimes, comma-separated (None: all); a larger DATA sample and its label column."""

    bundle: Path
    model: Path | None = None
    runtimes: str | None = None
    data: Path | None = None
    target: str | None = None
    custom_objects: Path | None = None  # the Python file defining ``model``'s custom layers


def verify(options: VerifyOptions, progress: Progress | None = None) -> ParityReport:
    """:func:`verify_bundle` with the command's options; the report is saved into the bundle.

    Raises:
        BundleError, DeployKitError: as :func:`verify_bundle`.
    """
    return verify_bundle(options.bundle, model=options.model, runtimes=options.runtimes, data=options.data,
                         target=options.target, progress=progress, custom_objects=options.custom_objects)


def verify_bundle(bundle: str | Path, model: str | Path | None = None, runtimes: str | Iterable[str] | None = None,
                  data: str | Path | None = None, target: str | None = None, progress: Progress | None = None,
                  runners: Runners | None = None, save: bool = True,
                  custom_objects: str | Path | None = None) -> ParityReport:
    """Verify every artifact of a bundle in every requested runtime; save the report into the bundle.
    ``custom_objects``: the Python file defining ``model``'s custom layers (``--custom-objects``).

    Raises:
        BundleError: not a bundle, unknown schema version, a file that does not match its sha256.
        DeployKitError: unknown runtime, a runtime that cannot be created or started, bad --model/--data.
    """
    import time

    start = time.perf_counter()
    step = progress or (lambda _msg: None)
    root = Path(bundle).expanduser().resolve()  # workers run in "/", the browser's server elsewhere
    step(f"Checking {root}")
    manifest = mf.load(root)
    mf.check_all_files(root, manifest)
    golden = mf.load_golden(root)
    names = parse_runtimes(runtimes)
    g_inputs, g_reference = _golden_arrays(golden, manifest)
    reference_label = "golden.json (Keras outputs stored at conversion)"
    sample_inputs: dict[str, np.ndarray] | None = None
    sample_reference: dict[str, np.ndarray] | None = None
    labels = None
    if model is not None:
        from convert import reference as ref_mod

        step(f"Running the reference model {Path(model).name}")
        ref = ref_mod.load(Path(model), Path(custom_objects) if custom_objects else None)
        check_model(ref, manifest, Path(model).name)  # before it runs on anything, and before anything is written
        feeds = {s["name"]: g_inputs[s["name"]].astype(s["dtype"]) for s in manifest["inputs"]}
        g_reference = {k: np.asarray(v, dtype=np.float64) for k, v in ref.predict(feeds).items()}
        reference_label = f"Keras model {Path(model).name}"
        if data is not None:
            from convert.dataset import load_dataset

            feature_names = [f["name"] for f in manifest.get("features") or []] or None
            dataset = load_dataset(ref, Path(data), target, feature_names)
            rng = np.random.default_rng(0)
            rows = dataset.rows
            pick = np.sort(rng.choice(rows, size=min(SAMPLE_ROWS, rows), replace=False))
            sample_inputs = {k: np.asarray(v)[pick] for k, v in dataset.inputs.items()}
            sample_reference = {k: np.asarray(v, dtype=np.float64) for k, v in ref.predict(sample_inputs).items()}
            labels = None if dataset.labels is None else np.asarray(dataset.labels)[pick]
    elif data is not None:
        raise DeployKitError("--data needs --model: the larger sample is compared with the Keras model's own outputs")

    own = runners is None
    runners = runners or Runners()
    for worker in runners.workers.values():
        worker.request({"reset": True})
    results: list[Result] = []
    try:
        for runtime in names:
            fmts = ("tflite",) if runtime in TFLITE_RUNTIMES else ("tfjs_graph", "tfjs_layers")
            # A runtime that cannot start is an error for the whole run (unless --runtimes leaves it out).
            if runtime in TFLITE_RUNTIMES:
                runners.worker(runtime, step)
            else:
                runners.chromium()
            for artifact in [a for a in manifest["artifacts"] if a["format"] in fmts]:
                step(f"{artifact['path']} on {runtime}")
                result = Result(artifact=artifact["path"], format=artifact["format"], variant=artifact["variant"],
                                runtime=runtime, bytes=int(artifact["bytes"]), tolerance=dict(artifact["tolerance"]))
                golden_case = Case(g_inputs, g_reference, golden_twin(golden, artifact))
                sample_case = None
                if sample_inputs is not None and sample_reference is not None:
                    sample_case = Case(sample_inputs, sample_reference, sample_twin(root, manifest, artifact, sample_inputs))
                verify_artifact(runners, runtime, root, artifact, manifest, golden_case, sample_case, labels, result, step)
                results.append(result)
        mark_unsupported_backends(results)
        env: dict[str, Any] = {name: w.env.versions for name, w in runners.workers.items()}
        if runners.browser is not None:
            env["chromium"] = {"executable": runners.browser.executable,
                               "user_agent": next((r.user_agent for r in results if r.user_agent), "")}
    finally:
        if own:
            runners.close()
    report = ParityReport(bundle=root, name=str(manifest["name"]), runtimes=names, reference=reference_label,
                          results=results, at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          seconds=time.perf_counter() - start, environment=env,
                          sample_rows=0 if sample_inputs is None else int(next(iter(sample_inputs.values())).shape[0]))
    if save:
        step("Writing parity.json, report.html and the manifest")
        report.save(root)
    return report
