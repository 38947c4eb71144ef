"""The outcome of a parity run: one ``Result`` per artifact x runtime, the ``ParityReport`` and how it is saved
(parity.json, report.html and the ``parity`` record of manifest.json).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge import manifest as mf


@dataclass
class Result:
    """One artifact in one runtime."""

    artifact: str
    format: str
    variant: str
    runtime: str
    bytes: int
    tolerance: dict[str, Any]
    passed: bool = False
    status: str = "failed"        # passed | failed | rejected (by convert) | unsupported (declared, or a TFJS backend)
    note: str = ""                # why rejected / unsupported
    error: str = ""
    failures: list[str] = field(default_factory=list)
    runtime_version: str = ""
    interpreter: str = ""
    backend_used: str = ""
    tfjs_version: str = ""
    user_agent: str = ""
    golden: dict[str, Any] = field(default_factory=dict)   # per output metrics on golden.json
    per_row_abs: list[float] = field(default_factory=list)  # max |err| per golden row, over outputs
    sample: dict[str, Any] | None = None                   # same on the --data sample
    task_metric: dict[str, Any] | None = None              # MAE / accuracy vs labels (information only)

    def summary(self) -> dict[str, Any]:
        """The compact form recorded in manifest.json."""
        return {"artifact": self.artifact, "runtime": self.runtime, "interpreter": self.interpreter,
                "version": self.runtime_version, "passed": self.passed, "status": self.status,
                **{k: self.worst(k) for k in ("max_abs", "max_scaled", "range_fraction")},
                **({"note": self.note} if self.note else {}), **({"error": self.error} if self.error else {})}

    def worst(self, key: str) -> float | None:
        """The largest value of one golden metric over the outputs (None when no output has it)."""
        values = [m[key] for m in self.golden.values() if m.get(key) is not None]
        return max(values) if values else None


@dataclass
class ParityReport:
    """The outcome of ``verify_bundle``."""

    bundle: Path
    name: str
    runtimes: list[str]
    reference: str
    results: list[Result]
    at: str
    seconds: float = 0.0
    sample_rows: int = 0
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no artifact that convert accepted failed in a runtime that can run it."""
        return bool(self.results) and all(r.status != "failed" for r in self.results)

    def by_status(self, status: str) -> list[Result]:
        return [r for r in self.results if r.status == status]

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, "bundle": str(self.bundle), "name": self.name, "passed": self.passed,
                "at": self.at, "seconds": round(self.seconds, 3), "reference": self.reference,
                "runtimes": self.runtimes, "sample_rows": self.sample_rows, "environment": self.environment,
                "results": [asdict(r) for r in self.results]}

    def save(self, bundle: Path | None = None) -> None:
        """Write parity.json and report.html and record the outcome in manifest.json (+ web/manifest.json).

        Raises:
            BundleError: the updated manifest would not be valid (never expected).
        """
        from convert.parity.html import render

        root = Path(bundle or self.bundle)
        data = self.to_json()
        _atomic_write(root / "parity.json", json.dumps(data, indent=1, allow_nan=True))
        _atomic_write(root / "report.html", render(data))
        manifest = json.loads((root / mf.MANIFEST).read_text(encoding="utf-8"))
        manifest["parity"] = {"passed": self.passed, "at": self.at, "reference": self.reference,
                              "runtimes": self.runtimes, "report": "parity.json",
                              "results": [_finite(r.summary()) for r in self.results]}
        mf.validate(manifest)
        text = mf.dumps(manifest)
        _atomic_write(root / mf.MANIFEST, text)
        web_manifest = root / "web" / mf.MANIFEST
        if web_manifest.is_file():
            _atomic_write(web_manifest, text)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` atomically through a private temporary file, never through a symbolic link.

    Raises:
        DeployKitError: ``path`` or its folder is a symbolic link, or it cannot be written.
    """
    from convert.files import replace_file

    replace_file(path, text)

