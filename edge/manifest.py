"""Read, validate and check a bundle's ``manifest.json`` (the contract between converter and runners).

The schema lives beside this module (``manifest.schema.json``) and is used both when ``deploykit
convert`` writes a manifest and whenever a runner reads one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from edge.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
GOLDEN = "golden.json"
_VALIDATED: set[str] = set()  # manifest texts that passed ``validate`` in this process (``load`` checks each once)


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The manifest's JSON Schema (version ``SCHEMA_VERSION``)."""
    return json.loads((Path(__file__).with_name("manifest.schema.json")).read_text(encoding="utf-8"))


def validate(manifest: Any) -> None:
    """Validate a manifest object against the schema.

    Raises:
        BundleError: unknown schema version, or the first schema violation, as one line.
    """
    import jsonschema

    if not isinstance(manifest, dict):
        raise BundleError("manifest.json is not a JSON object; re-create the bundle with `deploykit convert`")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"manifest.json has schema_version {version!r}, this deploykit reads version {SCHEMA_VERSION}; "
            "re-create the bundle with this deploykit's `deploykit convert` or upgrade deploykit"
        )
    validator = jsonschema.Draft202012Validator(schema())
    error = next(iter(sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BundleError(f"manifest.json is invalid at {where}: {error.message}")
    _check_features(manifest)
    _check_labels(manifest)


def _check_labels(manifest: dict[str, Any]) -> None:
    """Class names (``convert --labels``) are on the first output only, one per column of its rows.

    Raises:
        BundleError: labels on another output, or a count that is not the output's width (a class without a
            name was a 500 on ``:classify``).
    """
    for i, output in enumerate(manifest["outputs"]):
        labels = output.get("labels")
        if labels is None:
            continue
        width = _row_size(output["shape"]) if len(output["shape"]) > 1 else None
        problem = None
        if i != 0:
            problem = "labels name the columns of the first output only"
        elif width is not None and len(labels) != width:
            problem = f"{len(labels)} labels for an output of {width} columns"
        if problem:
            raise BundleError(f"manifest.json is invalid at outputs/{i}/labels: {problem}; "
                              "re-create the bundle with `deploykit convert --labels`")


def _check_features(manifest: dict[str, Any]) -> None:
    """What the schema cannot say of ``features``: each names an input of the model and a value of it that
    exists (``index`` below the input's values per row), no two take the same value, no two share a name.

    Raises:
        BundleError: the first feature that breaks one of these, as one line.
    """
    sizes = {spec["name"]: _row_size(spec["shape"]) for spec in manifest["inputs"]}
    names: set[str] = set()
    taken: set[tuple[str, int]] = set()
    for i, feature in enumerate(manifest.get("features") or []):
        name, source, index = feature["name"], feature["input"], feature["index"]
        problem = None
        if source not in sizes:
            problem = f"feature {name!r} reads input {source!r}, which the model does not have"
        elif sizes[source] is not None and not 0 <= index < sizes[source]:
            problem = f"feature {name!r} takes value {index} of input {source!r}, which has {sizes[source]} per row"
        elif (source, index) in taken:
            problem = f"feature {name!r} takes value {index} of input {source!r}, as another feature does"
        elif name in names:
            problem = f"two features are named {name!r}"
        if problem:
            raise BundleError(f"manifest.json is invalid at features/{i}: {problem}; "
                              "re-create the bundle with `deploykit convert`")
        names.add(name)
        taken.add((source, index))


def _row_size(shape: list[int | None]) -> int | None:
    """Values in one row of a tensor of ``shape`` (batch first); None when a dimension is open."""
    dims = shape[1:]
    return None if None in dims else math.prod(dims)


_NUMBER_LIST = re.compile(r"\[\n\s*(-?[0-9][0-9.eE+-]*|null)((?:,\n\s*(?:-?[0-9][0-9.eE+-]*|null))*)\n\s*\]")


def dumps(manifest: dict[str, Any]) -> str:
    """The text of ``manifest.json`` as every writer writes it: indented one space a level, with each list of
    numbers on one line (a reference sample is 1,000 numbers: one line, not 1,000). Raises nothing."""
    text = json.dumps(manifest, indent=1)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\n\s*", m.group(1) + m.group(2))) + "]", text)


def safe_join(root: Path, relpath: str) -> Path:
    """Resolve a path read from a manifest inside ``root``, refusing anything that escapes it.

    Raises:
        BundleError: absolute paths, ``..`` components, or symlinks that lead outside ``root``.
    """
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relpath or not relpath:
        raise BundleError(f"manifest.json names an unsafe path {relpath!r}; re-create the bundle")
    root_resolved = root.resolve()
    target = (root_resolved / Path(*pure.parts)).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise BundleError(f"manifest.json path {relpath!r} leaves the bundle; re-create the bundle")
    return target


def _not_json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _read_json(path: Path, what: str, text: str | None = None) -> Any:
    """Parse a bundle JSON file strictly (or ``text``, already read from it): UTF-8, no NaN/Infinity, not
    nested absurdly deep.

    Raises:
        BundleError: naming the file and what is wrong.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8") if text is None else text, parse_constant=_not_json_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{what} is not valid JSON ({exc}); re-create the bundle") from None
    except RecursionError:
        raise BundleError(f"{what} is not valid JSON (nested too deeply); re-create the bundle") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise BundleError(f"{what} is not valid JSON ({str(exc)[:120]}); re-create the bundle") from None


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(bundle: Path) -> dict[str, Any]:
    """Load and validate ``bundle/manifest.json``.

    Raises:
        BundleError: the folder is missing or not a bundle, the JSON is broken, or it fails the schema.
    """
    bundle = Path(bundle)
    if bundle.exists() and not bundle.is_dir():
        raise BundleError(f"{str(bundle)!r} is a file, not a bundle folder; pass the folder `deploykit convert` wrote")
    if not bundle.is_dir():
        raise BundleError(f"bundle folder {str(bundle)!r} does not exist; pass the folder `deploykit convert` wrote")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{str(bundle)!r} is not a deploykit bundle (no manifest.json); pass the folder `deploykit convert` wrote"
        )
    try:
        text: str | None = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = None  # _read_json names the problem
    manifest = _read_json(path, f"manifest.json in {str(bundle)!r}", text)
    if text is None or text not in _VALIDATED:  # start-up reads a bundle's manifest twice (scan, Bundle.open)
        validate(manifest)
        if text is not None:
            if len(_VALIDATED) >= 64:
                _VALIDATED.clear()
            _VALIDATED.add(text)
    return manifest


def check_file(bundle: Path, relpath: str, expected_sha256: str, expected_bytes: int | None = None) -> Path:
    """Check that one bundle file exists and matches its recorded sha256; return its path.

    Raises:
        BundleError: the file is missing, truncated or altered (the message names the file).
    """
    path = safe_join(Path(bundle), relpath)
    if not path.is_file():
        raise BundleError(f"bundle file {relpath} is missing; copy the whole bundle again or re-create it")
    if expected_bytes is not None and path.stat().st_size != expected_bytes:
        raise BundleError(
            f"bundle file {relpath} has {path.stat().st_size} bytes, the manifest says {expected_bytes} "
            "(truncated or altered); copy the bundle again or re-create it"
        )
    if sha256_file(path) != expected_sha256:
        raise BundleError(
            f"bundle file {relpath} does not match its sha256 in manifest.json (tampered or corrupted); "
            "copy the bundle again or re-create it"
        )
    return path


def check_all_files(bundle: Path, manifest: dict[str, Any], only_prefix: str | None = None) -> None:
    """Check every artifact and listed file against the manifest's sha256, before anything runs.

    ``only_prefix`` limits the check to paths under it (``"edge/"`` on a Pi holding only that part).

    Raises:
        BundleError: on the first file that is missing or does not match (the message names it), or a
        ``web/manifest.json`` that is not a copy of ``manifest.json``.
    """
    for artifact in manifest["artifacts"]:
        if only_prefix is None or artifact["path"].startswith(only_prefix):
            check_file(bundle, artifact["path"], artifact["sha256"], artifact["bytes"])
    for relpath, digest in sorted(manifest.get("files", {}).items()):
        if only_prefix is None or relpath.startswith(only_prefix):
            check_file(bundle, relpath, digest)
    copy = Path(bundle) / "web" / MANIFEST
    # the page's copy of the manifest cannot list its own sha256: it must be the same bytes as manifest.json
    if only_prefix is None and copy.is_file() and copy.read_bytes() != (Path(bundle) / MANIFEST).read_bytes():
        raise BundleError("bundle file web/manifest.json differs from manifest.json (tampered or stale); "
                          "copy the bundle again or re-create it")


def load_golden(bundle: Path) -> dict[str, Any]:
    """Load ``bundle/golden.json``.

    Raises:
        BundleError: the file is missing or malformed.
    """
    path = Path(bundle) / GOLDEN
    if not path.is_file():
        raise BundleError(f"{str(Path(bundle))!r} has no golden.json; copy it with the bundle or re-create the bundle")
    golden = _read_json(path, "golden.json")
    if not isinstance(golden, dict) or not {"inputs", "outputs"} <= set(golden):
        raise BundleError("golden.json lacks 'inputs' or 'outputs'; re-create the bundle")
    for part in ("inputs", "outputs"):
        if not isinstance(golden[part], dict):
            raise BundleError(f"golden.json {part!r} is not an object of named arrays; re-create the bundle")
        for name, values in golden[part].items():
            if not _numeric_array(values):
                raise BundleError(
                    f"golden.json {part[:-1]} {name!r} is not a rectangular array of numbers; re-create the bundle"
                )
    twins = golden.get("twins", {})
    if not isinstance(twins, dict) or not all(isinstance(t, dict) for t in twins.values()):
        raise BundleError("golden.json 'twins' is not an object of per-variant outputs; re-create the bundle")
    for variant, outputs in twins.items():
        for name, values in outputs.items():
            if not _numeric_array(values):
                raise BundleError(f"golden.json twin {variant!r} output {name!r} is not a rectangular array of numbers; "
                                  "re-create the bundle")
    return golden


def golden_twin(golden: dict[str, Any], variant: str) -> dict[str, Any] | None:
    """The precision twin's outputs on the golden inputs for a variant (``float16``), or None."""
    return golden.get("twins", {}).get(variant)


def _numeric_array(values: Any) -> bool:
    """Whether a JSON value is a non-empty, rectangular (nested) list of numbers (or booleans, for bool inputs)."""
    import numpy as np

    def numbers_only(v: Any) -> bool:
        if isinstance(v, list):
            return all(numbers_only(item) for item in v)
        return isinstance(v, (int, float))

    if not isinstance(values, list) or not values or not numbers_only(values):
        return False
    try:
        np.asarray(values, dtype=np.float64)
    except (ValueError, OverflowError):
        return False
    return True


def artifacts_of(manifest: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """The manifest's artifacts of one format (``tflite``, ``tfjs_graph``, ``tfjs_layers``)."""
    return [a for a in manifest["artifacts"] if a["format"] == fmt]


def output_names(manifest: dict[str, Any]) -> dict[str, str]:
    """``{output key: the name an answer gives it}``: the model's own output name (``price``), else the key
    (``output_0``) when the name is missing or two outputs share it."""
    outputs = manifest["outputs"]
    names = [o.get("name") or o["key"] for o in outputs]
    unique = len(set(names)) == len(names)
    return {o["key"]: (n if unique else o["key"]) for o, n in zip(outputs, names)}
