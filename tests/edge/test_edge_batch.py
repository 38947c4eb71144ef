"""edge.batch: the output columns of `deploykit-edge predict`, every output of a multi-output model included."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import numpy as np

from edge.batch import predict_file, prediction_columns
from edge.manifest import output_names


def test_prediction_columns() -> None:
    assert prediction_columns(["medv"], [1]) == ["prediction"]
    assert prediction_columns(["probs"], [3]) == ["prediction_0", "prediction_1", "prediction_2"]
    assert prediction_columns(["price", "kind"], [1, 3]) == ["price", "kind_0", "kind_1", "kind_2"]


def test_output_names_are_the_models_own_unless_missing_or_shared() -> None:
    assert output_names({"outputs": [{"key": "output_0", "name": "price"}, {"key": "output_1", "name": "kind"}]}) == {
        "output_0": "price", "output_1": "kind"}
    assert output_names({"outputs": [{"key": "output_0", "name": "dense"}, {"key": "output_1", "name": "dense"}]}) == {
        "output_0": "output_0", "output_1": "output_1"}


class TwoHeads:
    """A stand-in predictor: features a, b -> price (a + b) and kind (three values)."""

    manifest = {"features": [{"name": "a", "input": "x", "index": 0}, {"name": "b", "input": "x", "index": 1}],
                "inputs": [{"name": "x"}],
                "outputs": [{"key": "output_0", "name": "price"}, {"key": "output_1", "name": "kind"}]}
    output_keys = ["output_0", "output_1"]
    bundle = SimpleNamespace(feature_names=lambda: ["a", "b"])

    def rows_to_inputs(self, x: np.ndarray) -> dict[str, Any]:
        return {"x": x}

    def predict(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        return {"output_0": x.sum(axis=1, keepdims=True), "output_1": np.tile([0.25, 0.5, 0.25], (len(x), 1))}


def test_every_output_of_a_multi_output_model_is_written() -> None:
    """Only the first output was written: a 3-value head was dropped without a word."""
    sink = io.StringIO()
    result = predict_file(TwoHeads(), io.StringIO("a,b,id\n1,2,x\n3,4,y\n"), sink)
    assert result.predicted == 2
    assert sink.getvalue().splitlines() == ["row,a,b,id,price,kind_0,kind_1,kind_2,error",
                                            "1,1,2,x,3.0,0.25,0.5,0.25,", "2,3,4,y,7.0,0.25,0.5,0.25,"]
