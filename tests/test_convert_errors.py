"""Bad input to ``deploykit convert``/``train``: one line ``Error: ...``, exit 1, no traceback, no bundle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.helpers import BOSTON_CSV, run_cli


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


# ------------------------------------------------------------------ clear refusals, before any export

CUSTOM_LAYERS = '''
import keras


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def swishy(x):
    return x * keras.ops.sigmoid(x)
'''


@pytest.fixture
def custom_model(tmp_path) -> Path:
    """A .keras model with a custom layer class (Scale) and a custom activation function (swishy), saved from
    the module ``mylayers`` (tmp_path/mylayers.py)."""
    import importlib.util
    import sys

    import keras

    (tmp_path / "mylayers.py").write_text(CUSTOM_LAYERS)
    spec = importlib.util.spec_from_file_location("mylayers", tmp_path / "mylayers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mylayers"] = module
    try:
        spec.loader.exec_module(module)
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,), name="features")
        h = module.Scale(0.01)(keras.layers.Dense(4, activation=module.swishy)(inputs))
        keras.Model(inputs, keras.layers.Dense(1)(h)).save(tmp_path / "custom.keras")
    finally:
        del sys.modules["mylayers"]
    return tmp_path / "custom.keras"


def test_custom_objects_without_the_flag_name_the_classes_and_the_flag(tmp_path, custom_model):
    result = convert(custom_model, BOSTON_CSV, tmp_path / "b", "--target", "medv")
    assert assert_clean_error(result) == (
        "Error: model custom.keras uses the custom function 'swishy' and class 'Scale' (module mylayers), which "
        "Keras cannot load without their code; pass the Python file that defines them with --custom-objects FILE.py")
    assert_nothing_written(tmp_path, tmp_path / "b")


def test_custom_objects_load_from_the_users_file_named_in_the_provenance(tmp_path, custom_model):
    import hashlib
    import json

    result = convert(custom_model, BOSTON_CSV, tmp_path / "b", "--target", "medv",
                     "--custom-objects", tmp_path / "mylayers.py")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["provenance"]["custom_objects"] == {
        "file": "mylayers.py", "sha256": hashlib.sha256((tmp_path / "mylayers.py").read_bytes()).hexdigest(),
        "objects": ["Scale", "swishy"]}
    written = {a["variant"] for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert written == {"float32", "float16", "dynamic", "int8", "int16x8"}  # the folded copies rebuilt Scale too
    verify = run_cli("verify", tmp_path / "b", "--model", custom_model, "--custom-objects", tmp_path / "mylayers.py",
                     "--runtimes", "litert")
    assert verify.returncode == 0, verify.stderr + verify.stdout
    assert "Error: model custom.keras uses the custom function 'swishy'" in run_cli(
        "verify", tmp_path / "b", "--model", custom_model, "--runtimes", "litert").stderr


def test_a_custom_objects_file_that_fails_or_lacks_a_class(tmp_path, custom_model):
    (tmp_path / "broken.py").write_text("import keras\n\nraise RuntimeError('no GPU here')\n")
    result = convert(custom_model, BOSTON_CSV, tmp_path / "b", "--custom-objects", tmp_path / "broken.py")
    assert assert_clean_error(result) == (
        "Error: --custom-objects broken.py failed to import (line 3): RuntimeError: no GPU here")
    (tmp_path / "partial.py").write_text(CUSTOM_LAYERS.split("\n\ndef swishy")[0])
    result = convert(custom_model, BOSTON_CSV, tmp_path / "b", "--custom-objects", tmp_path / "partial.py")
    assert assert_clean_error(result) == (
        "Error: --custom-objects partial.py does not define the function 'swishy' that model custom.keras uses; "
        "define or import it there")
    assert_nothing_written(tmp_path, tmp_path / "b")


def _saved_model(folder: Path, spec, fn) -> Path:
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(fn, input_signature=[spec])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.f})
    return folder


def _signature_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    import keras
    import tensorflow as tf

    complex_out = _saved_model(tmp_path / "complex_out", tf.TensorSpec([None, 3], tf.float32, name="features"),
                               lambda features: {"z": tf.complex(features, features)})
    string_in = _saved_model(tmp_path / "string_in", tf.TensorSpec([None], tf.string, name="text"),
                             lambda text: {"n": tf.shape(text)})
    scalar_in = _saved_model(tmp_path / "scalar_in", tf.TensorSpec([], tf.float32, name="x"), lambda x: {"y": x * 2.0})
    inputs = keras.Input((3,), batch_size=2, name="features")
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(tmp_path / "batch2.keras")
    return [
        (complex_out, "Error: model complex_out: output 'z' is complex64, which TFLite and TFJS models cannot give; "
                      "return its real and imaginary parts as two float32 tensors (keras.ops.real / keras.ops.imag) "
                      "and re-save"),
        (string_in, "Error: model string_in: input 'text' is string, and TFLite builtins and TFJS graph models take "
                    "numbers only; move the text preprocessing (TextVectorization, StringLookup) out of the model, "
                    "feed it the token ids (int32) and re-save"),
        (scalar_in, "Error: model scalar_in: input 'x' is a scalar (shape []), with no batch dimension to hold rows; "
                    "give it one (keras.Input(shape=(1,)) takes one value per row) and re-save"),
        (tmp_path / "batch2.keras", "Error: model batch2.keras: input 'features' has a fixed batch of 2 (shape [2, 3]); "
                                    "the kit feeds any number of rows: re-save the model with the batch left open "
                                    "(keras.Input(shape=(3,)), no batch_size)"),
    ]


def test_unsupported_dtypes_and_signatures_without_a_batch_are_refused_before_any_export(tmp_path):
    for model, message in _signature_cases(tmp_path):
        result = convert(model, BOSTON_CSV, tmp_path / "b", "--target", "medv")
        assert assert_clean_error(result) == message
        assert "Exporting" not in result.stderr and "Reading DATA" not in result.stderr, result.stderr
        assert_nothing_written(tmp_path, tmp_path / "b")


def test_an_input_name_tensorflow_cannot_export_is_refused_before_any_export(tmp_path):
    import keras

    names = ["sq ft", "age-years", "Zip.Code"]  # the two others export as they are (TFLite keeps them)
    inputs = [keras.Input((1,), name=n) for n in names]
    keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Concatenate()(inputs))).save(tmp_path / "columns.keras")
    data = tmp_path / "columns.csv"
    data.write_text("sq ft,age-years,Zip.Code,price\n" + "".join(f"{i},{i % 7},{i % 3},{i * 2}\n" for i in range(40)))
    result = convert(tmp_path / "columns.keras", data, tmp_path / "b", "--target", "price")
    assert assert_clean_error(result) == (
        "Error: model columns.keras: input 'sq ft' has a name TensorFlow cannot export as a model input (letters, "
        "digits and . _ - > / \\ only, starting with a letter, digit or .); rename the input "
        "(keras.Input(..., name='sq_ft')) and re-save, and rename its DATA column or .npz array too if it has the "
        "input's name")
    assert "Exporting" not in result.stderr and "Reading DATA" not in result.stderr, result.stderr
    assert_nothing_written(tmp_path, tmp_path / "b")


def test_input_names_are_checked_by_tensorflows_rule_and_the_advice_is_a_name_that_passes():
    from convert.refusals import VALID_INPUT_NAME, _name_advice

    for fine in ("x", "age-years", "Zip.Code", "1st", ".x", "a>b", "features_2"):
        assert _name_advice(fine) is None, fine
    for bad, fixed in (("sq ft", "sq_ft"), ("_x", "x"), ("-x", "x"), ("température", "temperature"), ("x:0", "x_0"),
                       ("a$b", "a_b"), ("日本", "x")):
        advice = _name_advice(bad)
        assert advice is not None and f"name={fixed!r}" in advice, (bad, advice)
        assert VALID_INPUT_NAME.match(fixed)


def test_a_keras_load_failure_is_cut_at_a_word_never_inside_one():
    from convert.reference import _short

    text = "Could not deserialize class 'Functional' because " + "its parent module cannot be imported " * 10
    short = _short(text)
    assert short.endswith(" …") and len(short) <= 202
    assert text.startswith(short[:-2]) and text[len(short) - 2] == " "
