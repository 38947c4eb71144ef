"""``deploykit convert``: model + DATA -> a bundle, written atomically.

The bundle is built in a fresh private folder beside ``--out`` and swapped into place at the end with one
atomic exchange, so a crash or a kill -9 leaves the old bundle or the new one; the next convert recovers
what an interrupted one left (see ``convert``). The library raises ``DeployKitError``; the CLI prints it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from convert import interrupt, labels
from convert.errors import DeployKitError
from convert.quiet import NATIVE_LOG_PREFIX
from convert.reference import Reference, load
from convert.stages import quantized as quantized_stage
from convert.stages.export import export_reference
from convert.stages.golden_file import write_golden
from convert.stages.manifest_file import write_manifest
from convert.stages.quantized import Quantized
from convert.stages.reference_run import run_reference, split
from convert.stages.sources import Sources, read_data
from convert.stages.tfjs import copy_page, write_graph, write_layers
from convert.stages.tflite_variants import write_tflite
from convert.stages.written import Progress, Written
from convert.tflite import Variant
from edge import manifest as manifest_mod
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
    labels: Path | None = None  # --labels FILE (convert.labels)
    image_scale: str | None = None  # --image-scale LOW..HIGH (convert.labels)


@dataclass
class ConvertResult:
    """What was written: the bundle path, its manifest, and one table row per artifact or skip."""

    bundle: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # a target without any artifact (``Written.missing_targets``)


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
        DeployKitError: bad model, bad DATA, existing output without --force, unwritable output, or
        converter failures that leave no artifact at all (one that fails is a skip in the manifest).
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
        work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
        staging: Path | None = None
        try:  # BaseException: a Ctrl+C (KeyboardInterrupt) leaves no staging nor work folder behind either
            with _python_temp_files_in(work):
                progress("Loading the model (safe_mode)")
                ref = load(Path(options.model), options.custom_objects)
                labels.check(ref, options.labels, options.image_scale)
                progress("Reading DATA")
                sources = read_data(ref, Path(options.data), options.target, options.features)
                staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "tmp"), dir=out.parent))
                with ref.objects_scope():  # copies of the model rebuild its custom layers
                    result = _build(options, ref, sources, staging, work, progress)
            _chmod_like_mkdir(staging)  # private (0700) while it is written, readable like a mkdir'd folder once done
            _replace(staging, out)
            result.bundle = Path(options.out)
            return result
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)  # after the swap: the old bundle, if it was exchanged
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _python_temp_files_in(work: Path) -> Iterator[None]:
    """Python's temporary files (``tempfile``'s default folder) go in ``work`` for the block: TensorFlow's
    autograph writes modules there and imports them, and Python caches their bytecode beside them (a
    ``__pycache__`` the libraries never remove), so nothing of the run is left in the shared temporary folder."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(work)
    try:
        yield
    finally:
        tempfile.tempdir = saved


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


def _build(options: ConvertOptions, ref: Reference, sources: Sources, staging: Path, work: Path,
           progress: Progress) -> ConvertResult:
    """Run the stages after reading DATA (``convert.stages``) into ``staging``, using ``work`` for scratch.

    Raises:
        DeployKitError: no artifact could be written (each one that failed is otherwise a skip in the manifest).
    """
    progress("Running the reference model on DATA and the golden inputs")
    run = run_reference(ref, sources)
    calibration = split(sources, run, options.seed)
    progress("Exporting the SavedModel")
    exported = export_reference(ref, work)
    quantized = Quantized()
    if any(v.quantized for v in options.variants):
        progress("Folding the input scaling into the first layer")
        folded, reason = quantized_stage.fold(exported, calibration.calibration_data, work)
        rounded = None
        if folded is not None:
            progress("GPTQ-rounding the int8 weights on DATA")
            rounded = quantized_stage.round_fold(folded, calibration.calibration_data, work)
        progress("Exporting the folded SavedModel")
        quantized = quantized_stage.quantized_sources(exported, folded, rounded, reason, work,
                                                      dynamic=Variant.DYNAMIC in options.variants)
    written = Written(staging, progress=progress)
    write_tflite(options.variants, ref, sources, run, calibration, exported, quantized, written, progress, work)
    write_golden(ref, run, written)
    write_graph(exported, written, progress, [s.name for s in ref.inputs])
    if options.layers_model:
        write_layers(ref, written, progress)
    copy_page(written, progress)
    progress("Writing the manifest")
    manifest = write_manifest(sanitize_name(options.name or ref.name), ref, sources, run, written,
                              model=Path(options.model), data=Path(options.data), target=options.target,
                              seed=options.seed,
                              annotate=lambda m: labels.annotate(m, ref, options.labels, options.image_scale))
    return ConvertResult(bundle=staging, manifest=manifest, rows=written.rows, warnings=written.missing_targets())
