"""edge.manifest reads bundle JSON strictly: NaN, absurd nesting, a file as the bundle, non-numeric golden data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge import manifest as mf
from edge.errors import BundleError


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "b"
    root.mkdir()
    return root


def test_manifest_with_nan_or_absurd_nesting(tiny_bundle: Path) -> None:
    (tiny_bundle / "manifest.json").write_text('{"schema_version": 1, "x": NaN}')
    with pytest.raises(BundleError) as e:
        mf.load(tiny_bundle)
    assert str(e.value) == f"manifest.json in {str(tiny_bundle)!r} is not valid JSON (NaN is not a JSON number); re-create the bundle"
    (tiny_bundle / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(BundleError) as e:
        mf.load(tiny_bundle)
    assert str(e.value) == f"manifest.json in {str(tiny_bundle)!r} is not valid JSON (nested too deeply); re-create the bundle"


def test_a_file_given_as_the_bundle(tiny_bundle: Path) -> None:
    (tiny_bundle / "golden.json").write_text("{}")
    with pytest.raises(BundleError) as e:
        mf.load(tiny_bundle / "golden.json")
    assert str(e.value) == (f"{str(tiny_bundle / 'golden.json')!r} is a file, not a bundle folder; "
                            "pass the folder `deploykit convert` wrote")


@pytest.mark.parametrize("golden, message", [
    ({"inputs": {"features": [["a", "b", "c"]]}, "outputs": {"o": [[1.0]]}},
     "golden.json input 'features' is not a rectangular array of numbers; re-create the bundle"),
    ({"inputs": {"features": [[1, 2, 3], [1]]}, "outputs": {"o": [[1.0]]}},
     "golden.json input 'features' is not a rectangular array of numbers; re-create the bundle"),
    ({"inputs": {"features": [[1, 2, 3]]}, "outputs": {"o": []}},
     "golden.json output 'o' is not a rectangular array of numbers; re-create the bundle"),
    ({"inputs": [1, 2], "outputs": {}}, "golden.json 'inputs' is not an object of named arrays; re-create the bundle"),
])
def test_golden_that_is_not_numeric(tiny_bundle: Path, golden: dict, message: str) -> None:
    """golden.json arrays that are not rectangular arrays of numbers are a BundleError naming the array."""
    (tiny_bundle / "golden.json").write_text(json.dumps(golden))
    with pytest.raises(BundleError) as e:
        mf.load_golden(tiny_bundle)
    assert str(e.value) == message
