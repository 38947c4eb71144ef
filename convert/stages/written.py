"""What the artifact stages have written so far: the manifest's artifacts and skips, and the table rows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from convert import interrupt
from convert.errors import DeployKitError
from edge import manifest as manifest_mod
from edge.tolerance import for_variant

Progress = Callable[[str], None]


@dataclass
class Written:
    """The staging folder's artifacts (manifest records), skips (format, variant, reason) and table rows."""

    staging: Path
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    progress: Progress | None = None  # a skip marks its progress step as not written (``convert.show.Steps``)

    def add(self, rel: str, fmt: str, variant: str, *, transforms: list[dict[str, Any]], io: dict[str, Any],
            runtime: dict[str, Any], shrinks: bool | None, note: str, judged: dict[str, Any] | None = None,
            fp32_bytes: int | None = None, extra_bytes: int = 0) -> dict[str, Any]:
        """Record the artifact at ``staging/rel`` (its size and sha256 read now) and its table row; return the record.
        ``judged`` holds convert's verdict on a TFLite artifact (status, measured, ...)."""
        path = self.staging / rel
        artifact = {
            "path": rel, "format": fmt, "variant": variant,
            "bytes": path.stat().st_size, "sha256": manifest_mod.sha256_file(path),
            "tolerance": for_variant(variant), "input_transform": list(transforms), "runtime": runtime,
            "io": io, "shrinks": shrinks, "note": note, **(judged or {}),
        }
        self.artifacts.append(artifact)
        total = artifact["bytes"] + extra_bytes
        ratio = f"{fp32_bytes / total:.2f}x" if fp32_bytes and variant != "float32" and fmt == "tflite" else ""
        self.rows.append({"artifact": rel, "format": fmt, "variant": variant, "bytes": total, "ratio": ratio,
                          "note": note})
        return artifact

    def skip(self, fmt: str, reason: str, where: str, variant: str | None = None, row_variant: str = "float32",
             not_written: bool = True) -> None:
        """Record that ``fmt`` (``variant``) was not written, and why; ``where`` is the table's artifact column."""
        self.skipped.append({"format": fmt, **({"variant": variant} if variant else {}), "reason": reason})
        mark = getattr(self.progress, "skipped", None)
        if not_written and callable(mark):
            mark()
        self.rows.append({"artifact": where, "format": fmt, "variant": variant or row_variant, "bytes": None,
                          "note": ("not written: " + reason) if not_written else reason})

    def note_row(self, where: str, fmt: str, variant: str, note: str) -> None:
        """A table row that is neither an artifact nor a skip (the golden file's float16 twin, say)."""
        self.rows.append({"artifact": where, "format": fmt, "variant": variant, "bytes": None, "note": note})

    def missing_targets(self) -> list[str]:
        """One line for each target that got no artifact although another did: no TFLite artifact (the edge
        runner cannot serve the bundle), no TFJS model (the page cannot run it); each with the first reason."""
        formats = {a["format"] for a in self.artifacts}
        lines = []
        for target, fmts, what in (("TFLite artifact", ("tflite",), "deploykit-edge cannot serve this bundle"),
                                   ("TFJS model", ("tfjs_graph", "tfjs_layers"), "the web page cannot run this bundle")):
            if formats & set(fmts):
                continue
            reason = next((s["reason"] for s in self.skipped if s["format"] in fmts), "")
            others = "the web page" if target.startswith("TFLite") else "deploykit-edge"
            lines.append(f"no {target} was written, so {what} (only {others} can)" + (f": {reason}" if reason else ""))
        return lines if formats else []

    def require_one(self) -> None:
        """Raises DeployKitError naming every skip when no artifact was written (a bundle needs one)."""
        if not self.artifacts:
            reasons = "; ".join(f"{s['format']}{' ' + s['variant'] if 'variant' in s else ''}: {s['reason']}"
                                for s in self.skipped)
            raise DeployKitError(f"no artifact could be written ({reasons})")


def failure(exc: BaseException) -> str:
    """The skip reason of an artifact whose stage raised ``exc``: a DeployKitError's own message, else the
    exception's type and first line. Raises KeyboardInterrupt for a Ctrl+C a library turned into an error,
    and re-raises ``exc`` under DEPLOYKIT_DEBUG=1 (for its traceback)."""
    interrupt.check()
    if isinstance(exc, DeployKitError):
        return str(exc)
    if os.environ.get("DEPLOYKIT_DEBUG"):
        raise exc
    first = (str(exc).strip().splitlines() or [""])[0]
    text = " ".join(first.split())[:200]
    return f"unexpected {type(exc).__name__}{': ' + text if text else ''}"
