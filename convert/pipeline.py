"""``deploykit convert``: model + DATA -> a bundle, written atomically.

The bundle is built in a fresh private folder beside ``--out`` and swapped into place at the end with one
atomic exchange, so a crash or a kill -9 leaves the old bundle or the new one; the next convert recovers
what an interrupted one left (see ``convert``). The library raises ``DeployKitError``; the CLI prints it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import json
import os
import platform
import shutil
import signal
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from convert import __version__, interrupt
from convert.dataset import load_dataset, tabular_layout
from convert.errors import DeployKitError
from convert.golden import feature_columns, feature_stats, golden_inputs, golden_json
from convert.quiet import NATIVE_LOG_PREFIX
from convert.reference import Reference, load
from convert.tflite import Variant, check_calibration_rows, convert_variant, representative
from edge import manifest as manifest_mod
from edge.tolerance import for_variant

Progress = Callable[[str], None]
NAME_OK = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


@dataclass
class ConvertOptions:
    """Everything ``deploykit convert`` takes."""

    model: Path
    data: Path
    out: Path
    target: str | None = None
    name: str | None = None
    force: bool = False
    features: Sequence[str] | None = None
    seed: int | None = None
    variants: Sequence[Variant] = tuple(Variant)
    layers_model: bool = True
    custom_objects: Path | None = None  # the user's Python file defining the model's custom layers


@dataclass
class ConvertResult:
    """What was written: the bundle path, its manifest, and one table row per artifact or skip."""

    bundle: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def sanitize_name(name: str) -> str:
    cleaned = "".join(c if c in NAME_OK else "-" for c in name).strip("-._") or "model"
    return cleaned[:64]


def check_output(out: Path, force: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an existing bundle without --force, and an output folder that cannot be written.

    With --force, only a deploykit bundle (a folder holding manifest.json) or an empty folder is replaced,
    and never a folder that holds (or is, or lies inside) one of ``inputs`` (MODEL and DATA).

    Raises:
        DeployKitError: any of these problems, with the fix.
    """
    out = Path(os.path.abspath(out))
    if not out.name:
        raise DeployKitError(f"output {str(out)!r} is the root folder; choose a bundle folder with --out")
    for source in inputs:
        source = Path(os.path.abspath(source))
        if source == out or out in source.parents:
            raise DeployKitError(
                f"output {str(out)!r} holds the input {str(source)!r}, which writing the bundle there would delete; "
                "choose another --out"
            )
        if source.is_dir() and source in out.parents:
            raise DeployKitError(f"output {str(out)!r} is inside the input folder {str(source)!r}; choose an --out outside it")
    if os.path.islink(out):
        raise DeployKitError(f"output {str(out)!r} is a symbolic link; convert does not write through links: pass the real folder")
    if out.exists() and not force:
        raise DeployKitError(f"output {str(out)!r} already exists; pass --force to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise DeployKitError(f"output {str(out)!r} exists and is not a folder; choose another --out")
    if out.exists() and not (out / manifest_mod.MANIFEST).is_file() and any(out.iterdir()):
        raise DeployKitError(
            f"output {str(out)!r} is not a deploykit bundle (no manifest.json) and is not empty; --force replaces only "
            "a bundle: choose another --out, or remove the folder yourself"
        )
    parent = out.parent
    if not parent.is_dir():
        raise DeployKitError(f"cannot write {str(out)!r}: folder {str(parent)!r} does not exist; create it first")
    try:
        probe = tempfile.mkdtemp(prefix=_temp_prefix(out, "probe"), dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise DeployKitError(f"cannot write to {str(parent)!r} ({exc.strerror}); choose a writable --out") from None


def convert(options: ConvertOptions, progress: Progress = lambda step: None) -> ConvertResult:
    """Convert MODEL into a bundle at ``options.out``.

    First what an interrupted convert left beside ``--out`` is recovered (``recover_interrupted``): an old
    bundle moved aside is put back, temporary folders of dead runs are removed, and a progress line says so.
    The bundle is built in a fresh private folder (``mkdtemp`` beside ``--out``) and swapped into place with
    one atomic exchange (``renameat2(RENAME_EXCHANGE)``; a rename pair where the system has none), so a
    kill at any moment leaves the old bundle or the new one at ``--out``. Every temporary folder is removed
    on any exit Python survives (errors, Ctrl+C, SIGTERM, which stops the run as a Ctrl+C does).

    Raises:
        DeployKitError: bad model, bad DATA, existing output without --force, unwritable output, or a
        converter failure that leaves no usable artifact.
    """
    out = Path(os.path.abspath(options.out))
    recovered = recover_interrupted(out)
    try:
        check_output(out, options.force, (Path(options.model), Path(options.data)))
    except DeployKitError as exc:
        if recovered:
            raise DeployKitError(f"{exc} ({recovered[0].lower() + recovered[1:]})") from None
        raise
    if recovered:
        progress(recovered)
    with _sigterm_as_interrupt():
        progress("Loading the model (safe_mode)")
        ref = load(Path(options.model), options.custom_objects)
        progress("Reading DATA")
        dataset = load_dataset(ref, Path(options.data), options.target, options.features)
        check_calibration_rows(dataset.rows)

        staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "tmp"), dir=out.parent))
        work: Path | None = None
        try:  # BaseException: a Ctrl+C (KeyboardInterrupt) leaves no staging folder behind either
            work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
            with ref.objects_scope():  # copies of the model rebuild its custom layers
                result = _build(options, ref, dataset, staging, work, progress)
            _chmod_like_mkdir(staging)  # private (0700) while it is written, readable like a mkdir'd folder once done
            _replace(staging, out)
            result.bundle = Path(options.out)
            return result
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # after the swap: the old bundle, if it was exchanged
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)


WORK_PREFIX = "deploykit-work-"
_KINDS = ("tmp", "old", "probe")


def _temp_prefix(out: Path, kind: str) -> str:
    """``.NAME.KIND-PID-``: hidden, beside ``--out``, and naming the process that made it (for recovery)."""
    return f".{out.name}.{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this one counts: its folders may be another thread's run)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(folder: Path, prefix: str, kinds: Sequence[str], files: bool = False) -> list[tuple[str, Path]]:
    """(kind, path) of this user's real folders (or, with ``files``, regular files) ``PREFIX KIND-PID-*`` in
    ``folder`` whose process is gone."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        kind, tail = "", entry.name[len(prefix):]
        if kinds:
            kind, _, tail = tail.partition("-")
            if kind not in kinds:
                continue
        pid, dash, _ = tail.partition("-")
        if not dash or not pid.isdigit():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        wanted = stat.S_ISREG(info.st_mode) if files else stat.S_ISDIR(info.st_mode)
        if not wanted or info.st_uid != os.getuid() or _alive(int(pid)):
            continue
        found.append((kind, Path(entry.path)))
    return sorted(found, key=lambda item: item[1].name)


def recover_interrupted(out: Path) -> str:
    """Undo what a killed convert left beside ``out`` and in the temporary folder; say what was done.

    A bundle moved aside (``.NAME.old-PID-*``, a rename-pair swap killed between its renames) goes back to
    ``out`` when ``out`` is missing, else it is the replaced bundle and is removed; staging folders
    (``.NAME.tmp-PID-*``), work folders (``deploykit-work-PID-*``) and native logs
    (``deploykit-native-PID-*.log``) of processes that are gone are removed. Folders of a live process, of another user, and symbolic links are never touched.

    Returns:
        "" when nothing was restored, else one sentence saying which folder was put back.
    """
    out = Path(os.path.abspath(out))
    note = ""
    leftovers = _leftovers(out.parent, f".{out.name}.", _KINDS)
    olds = sorted((p for kind, p in leftovers if kind == "old" and (p / manifest_mod.MANIFEST).is_file()),
                  key=lambda p: p.stat().st_mtime)
    if olds and not os.path.lexists(out):
        try:
            os.rename(olds[-1], out)
            note = f"Restored the bundle at {str(out)!r}, which an interrupted convert had moved aside to {olds[-1].name}"
        except OSError:
            pass
    for kind, path in leftovers:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
    for _, path in _leftovers(Path(tempfile.gettempdir()), WORK_PREFIX, ()):
        shutil.rmtree(path, ignore_errors=True)
    for _, path in _leftovers(Path(tempfile.gettempdir()), NATIVE_LOG_PREFIX, (), files=True):
        with contextlib.suppress(OSError):
            path.unlink()
    return note


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """For the block, a SIGTERM stops the run as a Ctrl+C does (so its temporary folders are removed), when
    Python's default action (death, no clean-up) is in place and this is the main thread."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        interrupt.note()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is stop:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _chmod_like_mkdir(folder: Path) -> None:
    """mkdtemp creates 0700 folders; give the bundle folder the mode ``mkdir`` would (0777 minus the umask),
    so that a service user or a web server can read it like the folders inside it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``). False when the system or the file
    system cannot (another OS, an old libc or kernel, a file system without it); OSError on other failures."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace(staging: Path, out: Path) -> None:
    """Put the staging folder at ``out``: a rename when there is nothing there; else one atomic exchange
    (the old bundle then sits at the staging path, which the caller removes); else, where the system has no
    exchange, a rename pair: the old bundle is moved aside as ``.NAME.old-PID-*`` first, put back if the
    second rename fails, removed after. A kill between the two renames leaves it aside, and the next convert
    puts it back (``recover_interrupted``)."""
    if not os.path.lexists(out):
        os.rename(staging, out)
        return
    if os.path.islink(out):
        raise DeployKitError(f"output {str(out)!r} is a symbolic link; convert does not write through links: pass the real folder")
    if _exchange(staging, out):
        return
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "old"), dir=out.parent))
    os.rename(out, old)  # onto the empty folder mkdtemp just made: the name is ours
    try:
        os.rename(staging, out)
    except BaseException:  # an OSError, or a Ctrl+C between the two renames: the old bundle goes back
        if not os.path.lexists(out):
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _unrolled(ref: Reference) -> tuple[Any, str]:
    """The Keras model the TFLite and TFJS graph artifacts are made from, and a note when it is not the
    reference itself: recurrent layers over a fixed number of steps are unrolled (``convert.tflite.unrolled``),
    because a while loop over TensorLists converts to TFLite builtins only for a batch of one and does not
    run in TFJS graph models. The golden outputs always come from the reference model."""
    if ref.keras_model is None:
        return None, ""
    from convert.tflite import unrolled

    copy = unrolled(ref.keras_model)
    if copy is None:
        return ref.keras_model, ""
    return copy, "recurrent layers unrolled over their fixed sequence length (no while loop)"


def _build(options: ConvertOptions, ref: Reference, dataset, staging: Path, work: Path, progress: Progress) -> ConvertResult:
    name = sanitize_name(options.name or ref.name)
    layout = tabular_layout(ref) if dataset.feature_names else None
    features = [feature_stats(*col) for col in feature_columns(dataset, layout)] if layout else None

    progress("Running the reference model on DATA and the golden inputs")
    ref_on_data = ref.predict(dataset.inputs)
    g_inputs, kinds = golden_inputs(dataset, features)
    g_outputs = ref.predict(g_inputs)
    (staging / "golden.json").write_text(json.dumps(golden_json(g_inputs, kinds, g_outputs)), encoding="utf-8")
    task = _task(ref_on_data)
    outputs = []
    for spec in ref.outputs:
        values = np.concatenate([np.asarray(ref_on_data[spec.key], dtype=np.float64).reshape(-1),
                                 np.asarray(g_outputs[spec.key], dtype=np.float64).reshape(-1)])
        outputs.append({**spec.to_json(), "key": spec.key, "range": [float(values.min()), float(values.max())]})

    progress("Exporting the SavedModel")
    keras_model, unroll_note = _unrolled(ref)
    if unroll_note:  # every TFLite and graph artifact comes from the unrolled copy; export only that
        from convert.reference import export

        saved_model = export(keras_model, work / "saved_model_unrolled")
    else:
        saved_model = ref.export_saved_model(work / "saved_model")

    artifacts: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    # TFLite
    (staging / "edge").mkdir()
    fold = None
    quantized = [v for v in options.variants if v.quantized]
    # quantized variants are judged on DATA rows calibration never saw (convert.acceptance)
    from convert.acceptance import Rows, split_rows

    calibration_index, held_index = split_rows(dataset.inputs, g_inputs, options.seed)
    calibration_data = {k: np.asarray(v)[calibration_index] for k, v in dataset.inputs.items()}
    calibration_rows = Rows.join(Rows(calibration_data, {k: np.asarray(v)[calibration_index] for k, v in ref_on_data.items()}),
                                 Rows(dict(g_inputs), dict(g_outputs)))
    held_rows = Rows(dataset.inputs, ref_on_data).take(held_index)
    fold_reason = "inputs not standardised (first layer is not Normalization/Dense)"
    if quantized and keras_model is not None:
        from convert.fold import fold_inputs

        fold = fold_inputs(keras_model, calibration_data)
    elif quantized:  # a SavedModel source: fold into its graph's first Dense
        from convert.fold import fold_saved_model

        fold, fold_reason = fold_saved_model(saved_model, calibration_data, work)
    folded_saved_model = unrounded_saved_model = None
    if fold is not None and keras_model is None:
        folded_saved_model = fold.saved_model
        if Variant.DYNAMIC in quantized:
            unrounded_saved_model = fold.unrounded
    elif fold is not None:
        from convert.reference import export

        folded_saved_model = export(fold.model, work / "saved_model_folded")
        # Dynamic range quantization leaves small tensors in float: it takes the folded model before
        # GPTQ rounding, so what it keeps in float stays exact.
        if fold.unrounded is not None and Variant.DYNAMIC in quantized:
            unrounded_saved_model = export(fold.unrounded, work / "saved_model_unrounded")
    dtypes = {s.name: ("float32" if "float" in s.dtype else s.dtype) for s in ref.inputs}
    # calibrate on DATA and on every golden row (the corners of the feature ranges included)
    raw_inputs = calibration_data
    raw_golden = {k: np.asarray(v, dtype=dataset.inputs[k].dtype) for k, v in g_inputs.items()}
    from edge.transform import apply as apply_transforms

    folded_inputs = apply_transforms(fold.transforms, raw_inputs) if fold else raw_inputs
    folded_golden = apply_transforms(fold.transforms, raw_golden) if fold else raw_golden
    fp32_bytes = None
    for variant in options.variants:
        progress(f"Converting TFLite {variant.value}")
        use_fold = fold is not None and variant.quantized
        source = folded_saved_model if use_fold else saved_model
        if use_fold and variant is Variant.DYNAMIC and unrounded_saved_model is not None:
            source = unrounded_saved_model
        if variant is Variant.INT16X8 and keras_model is not None:  # token inputs: Embeddings as plain gathers
            from convert.int16_tokens import int16x8_source

            source = int16x8_source(fold.model if use_fold else keras_model, source, work)
        calibration = (representative(folded_inputs if use_fold else raw_inputs, dtypes,
                                      always=folded_golden if use_fold else raw_golden)
                       if variant.calibrated or variant is Variant.DYNAMIC else None)
        result = convert_variant(source, variant, staging / "edge" / variant.file_name, calibration)
        if result.error:
            skipped.append({"format": "tflite", "variant": variant.value, "reason": result.error})
            rows.append({"artifact": f"edge/{variant.file_name}", "format": "tflite", "variant": variant.value,
                         "bytes": None, "note": "not written: " + result.error})
            continue
        judged: dict[str, Any] = {"status": "accepted"}
        if variant.quantized:
            from convert.mixed_precision import settle

            progress(f"Judging TFLite {variant.value} on calibration and held-out rows")
            outcome = settle(variant, result.path.read_bytes(), result.calibrated, fold.transforms if use_fold else [],
                             calibration_rows, held_rows, {"task": task, "outputs": outputs}, dtypes)
            if outcome.flatbuffer is not None:
                from convert.tflite import operators

                result.path.write_bytes(outcome.flatbuffer)
                result.ops = operators(outcome.flatbuffer)
            judged = outcome.fields()
        size = result.path.stat().st_size
        if variant is Variant.FP32:
            fp32_bytes = size
        note = ""
        if variant.quantized:
            note = fold.note if use_fold else fold_reason if layout or keras_model is None else ""
            if use_fold and source is unrounded_saved_model:
                note = fold.unrounded_note
        shrinks = None if fp32_bytes is None or variant is Variant.FP32 else size < fp32_bytes
        if shrinks is False:
            note = (note + "; " if note else "") + f"quantizing did not shrink the model ({size} vs {fp32_bytes} bytes fp32)"
        if result.note:
            note = (note + "; " if note else "") + result.note
        if unroll_note:
            note = (note + "; " if note else "") + unroll_note
        if variant.quantized:
            note = (note + "; " if note else "") + outcome.note
        io = {"inputs": {s.name: s.name for s in ref.inputs}, "outputs": {s.key: s.key for s in ref.outputs}}
        artifacts.append(_artifact(staging, f"edge/{variant.file_name}", "tflite", variant.value,
                                   transforms=fold.transforms if use_fold else [], io=io,
                                   runtime=_runtime(result.path, result.ops), shrinks=shrinks, note=note,
                                   judged=judged))
        rows.append(_row(artifacts[-1], fp32_bytes))

    twin_note = _write_twins(staging, artifacts, ref.outputs, g_inputs, kinds, g_outputs, ref.inputs)
    if twin_note:
        rows.append({"artifact": "golden.json", "format": "golden", "variant": "float16", "bytes": None, "note": twin_note})

    # TFJS graph model
    progress("Converting the TFJS graph model")
    from convert.tfjs_graph import write_graph_model

    graph_dir = staging / "web" / "model" / "graph"
    graph = write_graph_model(saved_model, graph_dir)
    artifacts.append(_artifact(staging, "web/model/graph/model.json", "tfjs_graph", "float32", transforms=[],
                               io=graph["io"], runtime={"min_tfjs": "4.22.0"}, shrinks=None,
                               note="; ".join(n for n in (unroll_note, *graph["notes"]) if n)))
    rows.append(_row(artifacts[-1], None, extra=_shard_bytes(graph_dir)))

    # TFJS layers model
    if options.layers_model:
        progress("Writing the TFJS layers model")
        reason = None
        if ref.keras_model is None:
            reason = "the source is a SavedModel, which has no Keras layers to write"
        else:
            try:
                from convert.tfjs_layers import UnsupportedLayers, write_layers_model
            except ImportError:  # pragma: no cover - the module ships with the package
                reason = "the layers writer is not installed"
            else:
                layers_dir = staging / "web" / "model" / "layers"
                try:
                    written = write_layers_model(ref.keras_model, layers_dir)
                except UnsupportedLayers as exc:
                    shutil.rmtree(layers_dir, ignore_errors=True)
                    reason = str(exc)
                else:
                    io = {"inputs": {s.name: s.name for s in ref.inputs}, "outputs": {s.key: s.name for s in ref.outputs}}
                    artifacts.append(_artifact(staging, "web/model/layers/model.json", "tfjs_layers", "float32",
                                               transforms=[], io=io, runtime={"min_tfjs": "4.22.0"}, shrinks=None,
                                               note="; ".join(written.get("notes", []))))
                    rows.append(_row(artifacts[-1], None, extra=_shard_bytes(layers_dir)))
        if reason:
            skipped.append({"format": "tfjs_layers", "reason": reason})
            rows.append({"artifact": "web/model/layers/", "format": "tfjs_layers", "variant": "float32",
                         "bytes": None, "note": "not written: " + reason})

    progress("Copying the web page")
    from convert.site import copy_site

    site_note = copy_site(staging / "web")
    if site_note:
        skipped.append({"format": "web", "reason": site_note})
        rows.append({"artifact": "web/index.html", "format": "web", "variant": "", "bytes": None, "note": site_note})

    progress("Writing the manifest")
    manifest = {
        "schema_version": manifest_mod.SCHEMA_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "task": task,
        "inputs": [s.to_json() for s in ref.inputs],
        "features": features,
        "outputs": outputs,
        "target": options.target,
        "preprocessing": {
            "in_graph": _in_graph_preprocessing(ref),
            "runner": "Apply each artifact's input_transform before inference: standardize means "
                      "z = (x - mean) / std per column, computed in float64, then cast to float32.",
        },
        "artifacts": artifacts,
        "skipped": skipped,
        "files": {},
        "versions": _versions(),
        "provenance": {
            "model_file": Path(options.model).name,
            "model_sha256": _sha256_path(Path(options.model)),
            "data_file": Path(options.data).name,
            "data_sha256": manifest_mod.sha256_file(Path(options.data)),
            "seed": options.seed,
            **({"custom_objects": ref.custom_provenance} if ref.custom_provenance else {}),
        },
        "parity": None,
    }
    artifact_paths = {a["path"] for a in artifacts}
    web_copy = {"web/manifest.json"}
    for path in sorted(staging.rglob("*")):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and rel != "manifest.json" and rel not in artifact_paths and rel not in web_copy:
            manifest["files"][rel] = manifest_mod.sha256_file(path)
    manifest_mod.validate(manifest)
    text = json.dumps(manifest, indent=2)
    (staging / "manifest.json").write_text(text, encoding="utf-8")
    if (staging / "web").is_dir():
        (staging / "web" / "manifest.json").write_text(text, encoding="utf-8")
        shutil.copyfile(staging / "golden.json", staging / "web" / "golden.json")
        manifest_files = dict(manifest["files"])
        manifest_files["web/golden.json"] = manifest_mod.sha256_file(staging / "web" / "golden.json")
        if manifest_files != manifest["files"]:
            manifest["files"] = manifest_files
            manifest_mod.validate(manifest)
            text = json.dumps(manifest, indent=2)
            (staging / "manifest.json").write_text(text, encoding="utf-8")
            (staging / "web" / "manifest.json").write_text(text, encoding="utf-8")
    return ConvertResult(bundle=staging, manifest=manifest, rows=rows)


def _write_twins(staging: Path, artifacts: list[dict[str, Any]], outputs, g_inputs, kinds, g_outputs, inputs) -> str:
    """Rewrite golden.json with the float16 precision twin's outputs (``convert.twin``); return a note when
    no twin could be made (the float16 artifact then fails verification, saying why)."""
    by_variant = {a["variant"]: a for a in artifacts if a["format"] == "tflite"}
    if "float16" not in by_variant or "float32" not in by_variant:
        return ""
    from convert.twin import twin_outputs

    like = {"inputs": [s.to_json() for s in inputs], "outputs": [{"key": s.key} for s in outputs]}
    try:
        twin = twin_outputs((staging / by_variant["float32"]["path"]).read_bytes(),
                            (staging / by_variant["float16"]["path"]).read_bytes(), like, g_inputs)
    except DeployKitError as exc:
        note = f"no float16 precision twin: {exc}"
        by_variant["float16"]["note"] = "; ".join(n for n in (by_variant["float16"]["note"], note) if n)
        return note
    (staging / "golden.json").write_text(json.dumps(golden_json(g_inputs, kinds, g_outputs, {"float16": twin})),
                                         encoding="utf-8")
    return ""


def _task(outputs: dict[str, np.ndarray]) -> str:
    for values in outputs.values():
        v = np.asarray(values, dtype=np.float64)
        if v.ndim < 2 or v.shape[-1] < 2:
            return "regression"
        if v.min() < -1e-6 or v.max() > 1 + 1e-6 or not np.allclose(v.sum(axis=-1), 1.0, atol=1e-3):
            return "regression"
    return "classification"


def _in_graph_preprocessing(ref: Reference) -> list[dict[str, Any]]:
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
            steps.append({"kind": "rescaling", "layer": layer.name, "scale": _jsonable(layer.scale), "offset": _jsonable(layer.offset)})
    return steps


def _jsonable(value: Any) -> Any:
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


def _runtime(path: Path, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """What a TFLite artifact needs: its operators with versions, the minimum TFLite runtime (the converter's,
    raised by the kit's kernel table) and the kernels of that table it uses (``edge.interpreter.kernel_needs``)."""
    from edge.interpreter import kernel_needs, tflite_min_runtime

    runtime: dict[str, Any] = {"ops": ops, "converter": f"tensorflow {_tf_version()}"}
    minimum = tflite_min_runtime(path)
    if minimum:
        runtime["min_tflite_runtime"] = minimum
    kernels = kernel_needs(path)
    if kernels:
        runtime["kernels"] = kernels
    return runtime


def _artifact(staging: Path, rel: str, fmt: str, variant: str, *, transforms, io, runtime, shrinks, note,
              judged: dict[str, Any] | None = None) -> dict[str, Any]:
    """One manifest artifact; ``judged`` holds convert's verdict on a TFLite artifact (status, measured, ...)."""
    path = staging / rel
    return {
        "path": rel, "format": fmt, "variant": variant,
        "bytes": path.stat().st_size, "sha256": manifest_mod.sha256_file(path),
        "tolerance": for_variant(variant), "input_transform": list(transforms), "runtime": runtime,
        "io": io, "shrinks": shrinks, "note": note, **(judged or {}),
    }


def _shard_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "model.json")


def _row(artifact: dict[str, Any], fp32_bytes: int | None, extra: int = 0) -> dict[str, Any]:
    total = artifact["bytes"] + extra
    ratio = f"{fp32_bytes / total:.2f}x" if fp32_bytes and artifact["variant"] != "float32" and artifact["format"] == "tflite" else ""
    return {"artifact": artifact["path"], "format": artifact["format"], "variant": artifact["variant"],
            "bytes": total, "ratio": ratio, "note": artifact["note"]}


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def _versions() -> dict[str, str]:
    import keras
    import tensorflowjs

    return {
        "python": platform.python_version(),
        "tensorflow": _tf_version(),
        "keras": keras.__version__,
        "tensorflowjs": tensorflowjs.__version__,
        "deploykit": __version__,
        "numpy": np.__version__,
    }


def _sha256_path(path: Path) -> str:
    """sha256 of a file, or of a SavedModel folder (every file's relative path and bytes, sorted)."""
    if path.is_file():
        return manifest_mod.sha256_file(path)
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(manifest_mod.sha256_file(file).encode())
    return digest.hexdigest()
