"""The Open Inference Protocol v2 REST codec (edge/oip.py), checked against edge/oip.schema.json (the
protocol's REST objects) and against tritonclient's own request and response code."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest

from edge import oip
from edge.errors import EdgeError

MANIFEST = {"task": "regression", "inputs": [{"name": "features", "dtype": "float32", "shape": [None, 3]}],
            "outputs": [{"name": "medv", "key": "output_0", "dtype": "float32", "shape": [None, 1], "range": [5.0, 50.0]}]}
TWO = {"task": "classification",
       "inputs": [{"name": "a", "dtype": "float32", "shape": [None, 2]}, {"name": "mask", "dtype": "int8", "shape": [None, 2]}],
       "outputs": [{"name": "p", "key": "output_0", "dtype": "float32", "shape": [None, 2], "range": [0.0, 1.0]},
                   {"name": "q", "key": "output_1", "dtype": "float32", "shape": [None, 1], "range": [0.0, 1.0]}]}


def body(inputs: list[dict], **more: Any) -> bytes:
    return json.dumps({"inputs": inputs, **more}).encode()


def features(data: Any, shape: list[int] = [2, 3], datatype: str = "FP32", **more: Any) -> dict:
    return {"name": "features", "shape": shape, "datatype": datatype, "data": data, **more}


def decode(raw: bytes, manifest: dict = MANIFEST, max_batch: int = 100, header: str | None = None) -> oip.InferRequest:
    return oip.decode_request(raw, manifest, max_batch, header)


def refused(raw: bytes, manifest: dict = MANIFEST, header: str | None = None, max_batch: int = 100) -> tuple[int, str]:
    with pytest.raises(oip.OipError) as err:
        decode(raw, manifest, max_batch, header)
    return err.value.status, str(err.value)


def test_the_schema_is_a_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(oip.schema())


def test_flat_and_nested_data_decode_the_same() -> None:
    flat = decode(body([features([6, 250, 66.5, 5, 300, 20])], id="42"))
    nested = decode(body([features([[6, 250, 66.5], [5, 300, 20]])]))
    assert flat.id == "42" and nested.id is None and flat.rows == 2
    assert np.array_equal(flat.inputs["features"], nested.inputs["features"])
    assert flat.inputs["features"].tolist() == [[6, 250, 66.5], [5, 300, 20]]
    assert flat.outputs == ["output_0"] and flat.binary == set()


@pytest.mark.parametrize("raw, status, message", [
    (b"{", 400, "the request is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
    # Python's own words came through: "maximum recursion depth exceeded ...", "... sys.set_int_max_str_digits() ..."
    (b"[" * 100_000, 400, "the request is not valid JSON (nested too deeply)"),
    (b'{"inputs": [{"name": "features", "shape": [1, 1], "datatype": "FP32", "data": [' + b"9" * 5000 + b"]}]}", 400,
     "the request is not valid JSON (a number has too many digits)"),
    (b"\xff{}", 400, "the request is not valid JSON (not UTF-8)"),
    (b'{"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, NaN]}]}', 400,
     "the request is not valid JSON (NaN is not a JSON number)"),
    (json.dumps({"inputs": []}).encode(), 400, "the inference request is invalid at inputs: [] should be non-empty"),
    (json.dumps({"inputs": [{"name": "features", "shape": [1, 3]}]}).encode(), 400,
     "the inference request is invalid at inputs/0: 'datatype' is a required property"),
    (body([features([1, 2, 3], [1, 3], "FP99")]), 400, "the inference request is invalid at inputs/0/datatype: 'FP99' is "
     "not one of ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', "
     "'FP64', 'BYTES', 'BF16']"),
    (body([features([1, 2, 3], [1, -3])]), 400, "the inference request is invalid at inputs/0/shape/1: -3 is less than "
     "the minimum of 0"),
    (body([{**features([1, 2, 3], [1, 3]), "name": "x"}]), 400, "unknown input 'x'; the model takes ['features']"),
    (body([features([1, 2, 3], [1, 3]), features([1, 2, 3], [1, 3])]), 400, "an input is given twice"),
    (body([features([1, 2, 3], [1, 3], "FP64")]), 400, "input 'features' has datatype FP64, the model takes FP32"),
    (body([features([1, 2, 3, 4], [1, 4])]), 400, "input 'features' has shape [1, 4], the model takes [-1, 3] (-1: any size)"),
    (body([features([1, 2, 3], [3])]), 400, "input 'features' has shape [3], the model takes [-1, 3] (-1: any size)"),
    (body([features([1, 2, 3, 4, 5], [2, 3])]), 400, "input 'features' has 5 elements, its shape [2, 3] needs 6"),
    (body([features([[1, 2], [3, 4, 5]], [2, 3])]), 400, "input 'features': nested data does not match its shape "
     "[2, 3]; send it flat (row-major) or nested as the shape"),
    (body([features([[[1], 2, 3]], [1, 3])]), 400, "input 'features': data is nested deeper than its shape [1, 3]"),
    (body([features([1, True, 3], [1, 3])]), 400, "input 'features' is FP32: every element must be a number"),
    (body([features([1, "2", 3], [1, 3])]), 400, "input 'features' is FP32: every element must be a number"),
    (body([features([1, 2, 1e39], [1, 3])]), 400, "input 'features' must hold finite FP32 numbers (|x| <= 3.4e+38)"),
    (body([features([], [0, 3])]), 400, "the inputs have no rows"),
    (body([features([1, 2, 3], [1, 3])], outputs=[{"name": "medv"}]), 400,
     "unknown output 'medv'; the model gives ['output_0']"),
    (body([features([1, 2, 3], [1, 3])], outputs=[{"name": "output_0"}] * 2), 400, "output 'output_0' is asked twice"),
    (body([features([1, 2, 3], [1, 3])], parameters={"classification": 2}), 400,
     "the classification extension is not supported; ask for the output tensor itself"),
    (body([{k: v for k, v in features([1, 2, 3], [1, 3]).items() if k != "data"}]), 400, "input 'features' has no data"),
])
def test_bad_requests_are_one_line(raw: bytes, status: int, message: str) -> None:
    assert refused(raw) == (status, message)


def test_batches_over_the_limit_are_413() -> None:
    assert refused(body([features([1.0] * 30, [10, 3])]), max_batch=9) == (413, "batch of 10 rows is over the limit of 9")


def test_integer_and_bool_inputs_are_checked_by_type() -> None:
    ok = decode(body([{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1]},
                      {"name": "mask", "shape": [1, 2], "datatype": "INT8", "data": [1, -128]}]), TWO)
    assert ok.inputs["mask"].dtype == np.int8 and ok.inputs["mask"].tolist() == [[1, -128]]
    assert ok.outputs == ["output_0", "output_1"]
    for data in ([1, 128], [1, 1.0], [1, True]):
        raw = body([{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1]},
                    {"name": "mask", "shape": [1, 2], "datatype": "INT8", "data": data}])
        assert refused(raw, TWO) == (400, "input 'mask' is INT8: every element must be an integer from -128 to 127")
    assert refused(body([{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1]}]), TWO) == (
        400, "input 'mask' is missing; the model takes ['a', 'mask']")
    raw = body([{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1]},
                {"name": "mask", "shape": [2, 2], "datatype": "INT8", "data": [1, 1, 1, 1]}])
    assert refused(raw, TWO) == (400, "all inputs must have the same number of rows (the first dimension)")
    bools = {"task": "regression", "inputs": [{"name": "b", "dtype": "bool", "shape": [None, 2]}], "outputs": MANIFEST["outputs"]}
    assert decode(body([{"name": "b", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}]), bools).inputs["b"].tolist() == [[True, False]]
    assert refused(body([{"name": "b", "shape": [1, 2], "datatype": "BOOL", "data": [1, 0]}]), bools) == (
        400, "input 'b' is BOOL: every element must be true or false")


def binary_request(arrays: list[tuple[str, str, np.ndarray]], **more: Any) -> tuple[bytes, str]:
    """What Triton's binary tensor extension sends: the JSON part, then each input's little-endian bytes."""
    inputs = [{"name": n, "shape": list(a.shape), "datatype": dt, "parameters": {"binary_data_size": a.nbytes}}
              for n, dt, a in arrays]
    head = json.dumps({"inputs": inputs, **more}).encode()
    return head + b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for _, _, a in arrays), str(len(head))


def test_binary_inputs_and_outputs() -> None:
    x = np.array([[6, 250, 66.5], [5, 300, 20]], dtype=np.float32)
    raw, header = binary_request([("features", "FP32", x)], parameters={"binary_data_output": True})
    request = decode(raw, header=header)
    assert np.array_equal(request.inputs["features"], x) and request.binary == {"output_0"}
    y = np.array([[23.5], [19.25]], dtype=np.float32)
    out, length = oip.encode_response("boston", 2, "7", {"output_0": y}, MANIFEST, request)
    head = json.loads(out[:length])
    oip.validate(head, "inference_response")
    assert head["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [2, 1], "parameters": {"binary_data_size": 8}}]
    assert np.frombuffer(out[length:], dtype="<f4").tolist() == [23.5, 19.25]
    for bad in ("x", "9" * 5000, "+5", "1_0", "\u0665"):
        assert refused(raw, header=bad) == (400, "the Inference-Header-Content-Length header is not a byte count (digits only)")
    assert refused(raw, header=str(len(raw) + 1)) == (
        400, f"Inference-Header-Content-Length {len(raw) + 1} does not fit the body of {len(raw)} bytes")
    assert refused(raw + b"\0", header=header) == (400, "1 bytes after the JSON part belong to no input")
    assert refused(raw[:-1], header=header) == (
        400, "input 'features': binary_data_size 24 does not match its shape [2, 3] of FP32 or the bytes sent")
    nan, nheader = binary_request([("features", "FP32", np.array([[1, np.nan, 3]], dtype=np.float32))])
    assert refused(nan, header=nheader) == (400, "input 'features' must hold finite FP32 numbers")


def test_json_responses_and_metadata_follow_the_protocol() -> None:
    request = decode(body([features([6, 250, 66.5, 5, 300, 20])], outputs=[{"name": "output_0", "parameters": {"binary_data": False}}]))
    y = np.array([[23.41], [19.5]], dtype=np.float32)
    out, length = oip.encode_response("boston", 3, "abc", {"output_0": y}, MANIFEST, request,
                                      parameters={"prediction_ids": "a1,a2"})
    assert length is None
    answer = json.loads(out)
    oip.validate(answer, "inference_response")
    assert answer == {"model_name": "boston", "model_version": "3", "id": "abc", "outputs": [
        {"name": "output_0", "datatype": "FP32", "shape": [2, 1], "data": [float(np.float32(23.41)), 19.5]}],
        "parameters": {"prediction_ids": "a1,a2"}}
    meta = oip.model_metadata("boston", [1, 3], MANIFEST)
    oip.validate(meta, "metadata_model_response")
    assert meta == {"name": "boston", "versions": ["1", "3"], "platform": "tflite",
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}],
                    "outputs": [{"name": "output_0", "datatype": "FP32", "shape": [-1, 1]}]}
    oip.validate(oip.server_metadata("0.1.0"), "metadata_server_response")
    oip.validate(json.loads(oip.error_body("model 'x' not found")), "error_response")
    with pytest.raises(oip.OipError) as err:
        oip.validate({"model_name": "boston", "outputs": []}, "inference_response")
    assert str(err.value) == "the inference response is invalid at (top level): 'id' is a required property"
    with pytest.raises(EdgeError) as err2:
        oip.datatype_of("string")
    assert str(err2.value) == "dtype 'string' has no Open Inference Protocol datatype"


def test_tritonclient_requests_decode_and_our_responses_parse() -> None:
    """tritonclient's own request and response code (its default, the binary extension, and JSON)."""
    import tritonclient.http as http  # the test extra installs it (tritonclient[http] 2.66.0, constraints.txt)
    x = np.array([[6, 250, 66.5], [5, 300, 20]], dtype=np.float32)
    y = np.array([[23.41], [19.5]], dtype=np.float32)
    for binary in (True, False):
        tensor = http.InferInput("features", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = None if binary else [http.InferRequestedOutput("output_0", binary_data=False)]
        raw, json_size = http.InferenceServerClient.generate_request_body([tensor], outputs=outputs, request_id="r1")
        request = decode(raw, header=None if json_size is None else str(json_size))
        assert np.array_equal(request.inputs["features"], x) and request.id == "r1"
        out, length = oip.encode_response("boston", 1, request.id, {"output_0": y}, MANIFEST, request)
        assert (length is not None) == binary
        result = http.InferenceServerClient.parse_response_body(out, header_length=length)
        assert np.array_equal(result.as_numpy("output_0"), y) and result.get_response()["id"] == "r1"
