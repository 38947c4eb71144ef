"""Bad input to ``deploykit convert``/``train``: one line ``Error: ...``, exit 1, no traceback, no bundle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.conftest import BOSTON_CSV, run_cli


def assert_clean_error(result, *fragments: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
    return error_lines[0]


def assert_nothing_written(folder: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{out.name}.")], "a staging folder was left"


def convert(model, data, out, *extra):
    return run_cli("convert", model, "--data", data, "--out", out, *extra)


@pytest.fixture
def csv(tmp_path):
    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


def test_missing_model_file(tmp_path):
    result = convert(tmp_path / "nope.keras", BOSTON_CSV, tmp_path / "b")
    assert_clean_error(result, "nope.keras", "does not exist")
    assert_nothing_written(tmp_path, tmp_path / "b")


def test_directory_that_is_not_a_saved_model(tmp_path):
    (tmp_path / "folder").mkdir()
    result = convert(tmp_path / "folder", BOSTON_CSV, tmp_path / "b")
    assert_clean_error(result, "is not a SavedModel (no saved_model.pb)")


def test_h5_file_is_refused(tmp_path):
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    result = convert(tmp_path / "model.h5", BOSTON_CSV, tmp_path / "b")
    assert_clean_error(result, "legacy HDF5 file, which cannot be loaded safely", ".keras")


def test_lambda_layer_is_refused_under_safe_mode(tmp_path):
    import keras

    inputs = keras.Input(shape=(3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    model.save(tmp_path / "lambda.keras")
    result = convert(tmp_path / "lambda.keras", BOSTON_CSV, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "Lambda layer", "safe_mode", "arbitrary code")
    assert_nothing_written(tmp_path, tmp_path / "b")


def test_corrupt_keras_zip(tmp_path, boston_linear):
    data = boston_linear.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    result = convert(tmp_path / "cut.keras", BOSTON_CSV, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "cut.keras", "not a valid .keras file")
    (tmp_path / "junk.keras").write_bytes(b"not a zip at all")
    assert_clean_error(convert(tmp_path / "junk.keras", BOSTON_CSV, tmp_path / "b"), "junk.keras", "corrupt")


def test_columns_that_do_not_match_name_missing_and_extra(tmp_path, csv, boston_linear):
    data = csv("rm,tax,crim,medv\n" + "6,250,0.1,20\n" * 20)
    result = convert(boston_linear, data, tmp_path / "b", "--target", "medv", "--features", "rm,tax,age")
    assert_clean_error(result, "missing age", "extra crim")
    data = csv("rm,tax,medv\n" + "6,250,20\n" * 20, "two.csv")
    result = convert(boston_linear, data, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "3 features", "feature columns found: rm, tax")
    assert_nothing_written(tmp_path, tmp_path / "b")


def test_non_numeric_cell(tmp_path, csv, boston_linear):
    data = csv("rm,tax,age,medv\n" + "6,250,66.5,20\n" * 5 + "6,abc,66.5,20\n" + "6,250,66.5,20\n" * 10)
    result = convert(boston_linear, data, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "'abc'", "column 'tax'", "at row 6 (line 7);")


def test_nan_cell(tmp_path, csv, boston_linear):
    data = csv("rm,tax,age,medv\n" + "6,250,66.5,20\n" * 12 + "NaN,250,66.5,20\n")
    result = convert(boston_linear, data, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "'NaN'", "column 'rm'")
    data = csv("rm,tax,age,medv\n" + "6,250,66.5,20\n" * 12 + "6,,66.5,20\n", "empty.csv")
    assert_clean_error(convert(boston_linear, data, tmp_path / "b", "--target", "medv"), "column 'tax'")


def test_too_few_rows_for_calibration(tmp_path, csv, boston_linear):
    data = csv("rm,tax,age,medv\n" + "6,250,66.5,20\n" * 3)
    result = convert(boston_linear, data, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "DATA has 3 rows", "at least 10")


def test_existing_output_without_force(tmp_path, boston_linear):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    result = convert(boston_linear, BOSTON_CSV, tmp_path / "b", "--target", "medv")
    assert_clean_error(result, "already exists", "--force")
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


def test_output_that_cannot_be_written(tmp_path, boston_linear):
    result = convert(boston_linear, BOSTON_CSV, "/sys/deploykit-bundle", "--target", "medv")
    assert_clean_error(result, "cannot write to '/sys'")
    result = convert(boston_linear, BOSTON_CSV, tmp_path / "no" / "such" / "b", "--target", "medv")
    assert_clean_error(result, "does not exist; create it first")


def test_unknown_target_column(tmp_path, boston_linear):
    result = convert(boston_linear, BOSTON_CSV, tmp_path / "b", "--target", "price")
    assert_clean_error(result, "--target 'price' is not a column", "rm, tax, age, medv")


def test_train_refuses_a_non_keras_path(tmp_path):
    result = run_cli("train", "--out", tmp_path / "model.h5")
    assert_clean_error(result, "--out must end in .keras")


def test_the_native_log_is_removed_unless_something_unexpected_happened(tmp_path: Path) -> None:
    """The CLI sends TensorFlow's C++ output to a temp log; a clean run or a clear error leaves none behind."""
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("deploykit-native-*.log"))
    result = run_cli("verify", tmp_path)  # not a bundle: a clear error
    assert result.returncode == 1 and result.stderr.startswith("Error: ")
    assert set(Path(tempfile.gettempdir()).glob("deploykit-native-*.log")) <= before
