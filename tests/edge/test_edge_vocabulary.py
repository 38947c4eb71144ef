"""Inputs that index an Embedding: convert records the vocabulary, the runner refuses values outside it.

Two real bundles (``convert.pipeline.convert``, float32 TFLite only, to keep it short): int32 token rows
into Embedding(10), and a tabular model whose ``cat`` column (float) indexes Embedding(5). Real servers and
the real ``deploykit-edge predict``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_helpers import PYTHON, Server, run

pytestmark = pytest.mark.slow


def _convert(model_path: Path, data: Path, target: str, out: Path) -> Path:
    from convert.pipeline import ConvertOptions, convert
    from convert.tflite import Variant

    convert(ConvertOptions(model=model_path, data=data, out=out, target=target, variants=(Variant.FP32,),
                           layers_model=False))
    return out


@pytest.fixture(scope="module")
def token_bundle(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("tokens")
    tokens = keras.Input((4,), dtype="int32", name="tokens")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 4, name="embedding")(tokens))
    model = keras.Model(tokens, keras.layers.Dense(1)(h))
    model.save(root / "tokens.keras")
    ids = np.random.default_rng(0).integers(0, 10, (64, 4)).astype(np.int32)
    np.savez(root / "tokens.npz", tokens=ids, y=ids.sum(1).astype(np.float32))
    return _convert(root / "tokens.keras", root / "tokens.npz", "y", root / "bundle")


@pytest.fixture(scope="module")
def category_bundle(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(4)
    root = tmp_path_factory.mktemp("category")
    x, cat = keras.Input((1,), name="x"), keras.Input((1,), name="cat")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(5, 2, name="colour")(cat))
    model = keras.Model([x, cat], keras.layers.Dense(1)(keras.layers.Concatenate()([x, embedded])))
    model.save(root / "category.keras")
    rng = np.random.default_rng(1)
    with open(root / "category.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "cat", "y"])
        for _ in range(64):
            writer.writerow([round(float(rng.normal()), 3), int(rng.integers(0, 5)), round(float(rng.normal()), 3)])
    return _convert(root / "category.keras", root / "category.csv", "y", root / "bundle")


def test_convert_records_the_vocabulary_of_each_input_that_indexes_an_embedding(token_bundle, category_bundle) -> None:
    tokens = json.loads((token_bundle / "manifest.json").read_text())["inputs"]
    assert tokens == [{"name": "tokens", "dtype": "int32", "shape": [None, 4],
                       "vocabulary": {"size": 10, "layer": "embedding"}}]
    inputs = {i["name"]: i for i in json.loads((category_bundle / "manifest.json").read_text())["inputs"]}
    assert inputs["cat"]["vocabulary"] == {"size": 5, "layer": "colour"}
    assert "vocabulary" not in inputs["x"]


TOKEN_RANGE = "input 'tokens' must hold integers from 0 to 9 (the vocabulary of its Embedding 'embedding')"
CAT_RANGE = "input 'cat' must hold integers from 0 to 4 (the vocabulary of its Embedding 'colour')"


def test_the_server_answers_422_for_token_ids_outside_the_vocabulary(token_bundle) -> None:
    server = Server(token_bundle)
    try:
        name = json.loads((token_bundle / "manifest.json").read_text())["name"]
        route = f"/v1/models/{name}:predict"
        status, body = server.json("POST", route, {"instances": [[1, 2, 3, 9]]})
        assert status == 200, body
        for instances, message in (([[1, 2, 3, 10]], f"{TOKEN_RANGE}, got 10 at index [0, 3]"),  # was HTTP 500
                                   ([[1, 2, 3, 4], [-1, 0, 0, 0]], f"{TOKEN_RANGE}, got -1 at index [1, 0]")):  # was 200
            assert server.json("POST", route, {"instances": instances}) == (422, {"success": False, "error": message})
        assert server.json("POST", route, {"inputs": {"tokens": [[0, 0, 0, 12]]}}) == (
            422, {"success": False, "error": f"{TOKEN_RANGE}, got 12 at index [0, 3]"})
    finally:
        server.stop()


def test_the_server_answers_422_for_a_category_outside_the_vocabulary(category_bundle) -> None:
    server = Server(category_bundle)
    try:
        assert server.json("POST", "/predict_json", {"x": 0.5, "cat": 4})[0] == 200
        for cat, shown in ((2.5, "2.5"), (-1, "-1"), (5, "5")):  # fractional and negative answered 200 before
            assert server.json("POST", "/predict_json", {"x": 0.5, "cat": cat}) == (
                422, {"success": False, "error": f"{CAT_RANGE}, got {shown} at index [0, 0]"})
    finally:
        server.stop()


def test_batch_predict_names_the_row_and_column_outside_the_vocabulary(category_bundle, tmp_path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x,cat\n0.5,1\n0.5,7\n0.1,2.5\n", encoding="utf-8")
    result = run([PYTHON, "-m", "edge", "predict", str(category_bundle), "--input", str(rows),
                  "--output", str(tmp_path / "out.csv")])
    assert result.returncode == 1
    vocabulary = "must be integers from 0 to 4 (the vocabulary of its Embedding 'colour')"
    lines = [line for line in result.stderr.splitlines() if line.startswith(("bad row", "Error"))]
    assert lines == [f"bad row: row 2 (line 3), column cat: {vocabulary}, got 7",
                     f"bad row: row 3 (line 4), column cat: {vocabulary}, got 2.5",
                     "Error: 2 of 3 rows could not be predicted (listed above); the other 1 was written"]
