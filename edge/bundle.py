"""Open a bundle as the edge runner sees it: the whole folder, or its ``edge/`` part + the two JSON files.

A Pi usually holds only ``manifest.json``, ``golden.json`` and ``edge/``; the web part's files are then
absent and are not checked. Passing the ``edge/`` folder itself or the ``manifest.json`` file also works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import manifest as mf
from edge.errors import BundleError

VARIANTS = ("float32", "float16", "dynamic", "int16x8", "int8")
"""Variants from most to least precise: the default is the first that passed parity."""

ALIASES = {"fp32": "float32", "fp16": "float16", "float": "float32", "f32": "float32", "f16": "float16",
           "int16": "int16x8", "dyn": "dynamic"}


def rejected(artifact: dict[str, Any]) -> bool:
    """Whether convert marked the artifact rejected (it missed its tolerance; never a default)."""
    return artifact.get("status") == "rejected"


def canonical_variant(name: str) -> str:
    """``fp32`` -> ``float32`` and the like.

    Raises:
        BundleError: an unknown variant name.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in VARIANTS:
        raise BundleError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)} (or fp32, fp16)")
    return key


@dataclass
class Bundle:
    """A validated manifest and the folder it was read from."""

    root: Path
    manifest: dict[str, Any]
    golden_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.golden_path = self.root / mf.GOLDEN

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        """Find and validate the manifest for ``path``.

        Raises:
            BundleError: no manifest there, or it is invalid.
        """
        path = Path(path)
        if path.is_file() and path.name == mf.MANIFEST:
            path = path.parent
        elif path.is_dir() and not (path / mf.MANIFEST).is_file() and (path.parent / mf.MANIFEST).is_file():
            path = path.parent  # the edge/ folder itself was given
        return cls(path, mf.load(path))

    @property
    def name(self) -> str:
        """The model's name (``boston``)."""
        return str(self.manifest["name"])

    def tflite_artifacts(self) -> list[dict[str, Any]]:
        """The manifest's TFLite artifacts."""
        return mf.artifacts_of(self.manifest, "tflite")

    def available_variants(self) -> list[str]:
        """The TFLite variants listed in the manifest, most precise first."""
        have = {a["variant"] for a in self.tflite_artifacts()}
        return [v for v in VARIANTS if v in have]

    def passed_parity(self, artifact: dict[str, Any], runtime_name: str | None = None) -> bool:
        """Whether ``deploykit verify`` recorded a pass for this artifact (on this runtime when recorded)."""
        parity = self.manifest.get("parity") or {}
        results = [r for r in parity.get("results") or [] if isinstance(r, dict) and r.get("artifact") == artifact["path"]]
        # verify records the runtime as "litert"/"tflite-runtime" and the module as "interpreter"
        def same(r: dict[str, Any]) -> bool:
            return runtime_name in (r.get("runtime"), r.get("interpreter"))

        if runtime_name and any(same(r) for r in results):
            results = [r for r in results if same(r)]
        return bool(results) and all(r.get("passed") is True for r in results)

    def default_variant(self, runtime_name: str | None = None) -> str:
        """The most precise variant that convert accepted and that passed parity, else ``float32``."""
        by_variant = {a["variant"]: a for a in self.tflite_artifacts() if not rejected(a)}
        for variant in VARIANTS:
            if variant in by_variant and self.passed_parity(by_variant[variant], runtime_name):
                return variant
        return "float32"

    def artifact(self, variant: str | None = None, runtime_name: str | None = None,
                 allow_rejected: bool = False) -> dict[str, Any]:
        """The TFLite artifact of a variant (default: ``default_variant``).

        Raises:
            BundleError: the bundle has no TFLite artifact of that variant, or convert rejected it (it missed
            its tolerance) and ``allow_rejected`` is false.
        """
        chosen = canonical_variant(variant) if variant is not None else self.default_variant(runtime_name)
        for artifact in self.tflite_artifacts():
            if artifact["variant"] == chosen:
                if rejected(artifact) and not allow_rejected:
                    why = " ".join(str(artifact.get("rejection") or "it missed its tolerance").split())[:300]
                    raise BundleError(f"the {chosen} artifact was rejected by convert ({why}); choose another --variant, "
                                      "or pass --allow-rejected to use it anyway")
                return artifact
        have = ", ".join(self.available_variants())
        if not have:
            raise BundleError("the bundle has no TFLite artifact: convert could not write one (`deploykit-edge info` "
                              "says why); change the model and convert it again, or use its web page")
        raise BundleError(f"the bundle has no TFLite {chosen} artifact (it has: {have}); pass --variant with one of those")

    def golden(self) -> dict[str, Any]:
        """The bundle's golden data.

        Raises:
            BundleError: golden.json is missing or malformed.
        """
        return mf.load_golden(self.root)

    def feature_names(self) -> list[str]:
        """Names of the tabular features, in manifest order ([] for non-tabular models)."""
        return [f["name"] for f in self.manifest.get("features") or []]
