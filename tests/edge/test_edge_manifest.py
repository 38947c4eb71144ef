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


@pytest.mark.parametrize("change, message", [
    (lambda f: f[2].update(index=5), "features/2: feature 'age' takes value 5 of input 'features', which has 3 per row"),
    (lambda f: f[0].update(index=10**30), f"features/0: feature 'rm' takes value {10**30} of input 'features', which has 3 per row"),
    (lambda f: f[1].update(input="nope"), "features/1: feature 'tax' reads input 'nope', which the model does not have"),
    (lambda f: f[2].update(index=1), "features/2: feature 'age' takes value 1 of input 'features', as another feature does"),
    (lambda f: f[1].update(name="rm"), "features/1: two features are named 'rm'"),
])
def test_features_that_do_not_match_the_inputs(bundle: Path, change, message: str) -> None:
    """Each passed the schema and selftest, then every prediction was a 500 (an index out of bounds) or, worse,
    an answer computed from the wrong columns."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    mf.validate(manifest)
    change(manifest["features"])
    with pytest.raises(BundleError) as e:
        mf.validate(manifest)
    assert str(e.value) == f"manifest.json is invalid at {message}; re-create the bundle with `deploykit convert`"


def test_dumps_puts_each_list_of_numbers_on_one_line() -> None:
    """A reference sample was one number a line (a 3-feature Boston manifest: 47 KB, the page fetches it)."""
    manifest = {"a": [1, 2.5, -3e-05, None], "b": {"shape": [None, 3]}, "s": ["x", "y"], "e": [],
                "n": [[1, 2], [3, 4]], "t": "[\n 1,\n 2\n]"}
    text = mf.dumps(manifest)
    assert json.loads(text) == manifest
    assert '"a": [1, 2.5, -3e-05, null]' in text and '"shape": [null, 3]' in text and '[1, 2],' in text
    assert '"s": [\n  "x",\n  "y"\n ]' in text  # strings keep their lines


@pytest.mark.parametrize("labels, message", [
    (["a", "b"], "outputs/0/labels: 2 labels for an output of 1 columns"),
])
def test_labels_that_are_not_one_per_output_column(bundle: Path, labels: list[str], message: str) -> None:
    """3 labels for 4 classes passed the self-test; :classify was then a 500 (IndexError) for the fourth class."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["outputs"][0]["labels"] = labels
    with pytest.raises(BundleError) as e:
        mf.validate(manifest)
    assert str(e.value) == f"manifest.json is invalid at {message}; re-create the bundle with `deploykit convert --labels`"
    manifest["outputs"][0]["labels"] = ["only"]
    with pytest.raises(BundleError):  # the schema's own rule: at least 2
        mf.validate(manifest)
