"""The Open Inference Protocol (v2, "KServe v2") REST codec: typed tensors in, typed tensors out.

The objects follow ``kserve/open-inference-protocol``'s REST text (``edge/oip.schema.json`` restates
them as a JSON Schema, and the tests validate what this module writes against it):

* request ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "parameters"?, "data"}],
  "outputs"?: [{"name", "parameters"?}]}``; ``data`` row-major, flat or nested as the shape;
* response ``{"model_name", "model_version", "id", "parameters"?, "outputs": [{"name", "shape",
  "datatype", "data"}]}``; metadata ``{"name", "versions", "platform", "inputs", "outputs"}``; errors
  ``{"error": "..."}``.

Triton's binary tensor extension is read and written too, because ``tritonclient`` uses it by default:
a body whose JSON part is ``Inference-Header-Content-Length`` bytes long, followed by each input's raw
little-endian bytes (``parameters.binary_data_size``); outputs are written that way when the request
asks (``parameters.binary_data_output`` or an output's ``parameters.binary_data``).

Tensor names are the manifest's input names and output keys; the datatype must be the model's
(``datatype_of``), and every value must be of it (JSON numbers for FP*, integers in range for
INT*/UINT*, booleans for BOOL).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.inputs import whole_number

DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "FP16": "float16", "FP32": "float32", "FP64": "float64"}
"""OIP datatype -> numpy dtype name (BYTES and BF16 are refused: no bundle model takes them)."""
_BY_DTYPE = {v: k for k, v in DATATYPES.items()}
PLATFORM = "tflite"
HEADER_LENGTH = "inference-header-content-length"
FLOAT32_MAX = float(np.finfo(np.float32).max)


class OipError(EdgeError):
    """A request the protocol's rules refuse; ``status`` is the HTTP status (400 unless said)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """``edge/oip.schema.json``."""
    return json.loads(Path(__file__).with_name("oip.schema.json").read_text(encoding="utf-8"))


def validate(obj: Any, kind: str) -> None:
    """Check an object against one of the schema's definitions (``inference_request``, ...).

    Raises:
        OipError: the first violation, naming where.
    """
    import jsonschema

    root = schema()
    validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": root["$defs"]})
    error = next(iter(sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise OipError(f"the {kind.replace('_', ' ')} is invalid at {where}: {error.message[:200]}")


def datatype_of(dtype: str) -> str:
    """A manifest dtype (``float32``) -> the OIP datatype (``FP32``).

    Raises:
        EdgeError: a dtype the protocol has no name for.
    """
    try:
        return _BY_DTYPE[dtype]
    except KeyError:
        raise EdgeError(f"dtype {dtype!r} has no Open Inference Protocol datatype") from None


@dataclass
class InferRequest:
    """A decoded inference request: the model's inputs by name, what to answer, how."""

    id: Optional[str]
    inputs: dict[str, np.ndarray]
    rows: int
    outputs: list[str]
    binary: set[str] = field(default_factory=set)
    parameters: dict[str, Any] = field(default_factory=dict)


def _split(body: bytes, header_length: Optional[str]) -> tuple[Any, bytes]:
    if header_length is None:
        json_part, rest = body, b""
    else:
        n = whole_number(header_length.strip(), 0, 10**18)
        if n is None:
            raise OipError("the Inference-Header-Content-Length header is not a byte count (digits only)")
        if not 0 < n <= len(body):
            raise OipError(f"Inference-Header-Content-Length {n} does not fit the body of {len(body)} bytes")
        json_part, rest = body[:n], body[n:]

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(json_part.decode("utf-8"), parse_constant=refuse), rest
    except UnicodeDecodeError:
        raise OipError("the request is not valid JSON (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise OipError(f"the request is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise OipError("the request is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # refuse()'s, or an integer over Python's digit limit
        text = str(exc) if str(exc).endswith("is not a JSON number") else "a number has too many digits"
        raise OipError(f"the request is not valid JSON ({text})") from None


def _leaves(data: Any, shape: Sequence[int], name: str) -> list:
    """Flatten ``data`` (flat, or nested exactly as ``shape``) to its row-major elements.

    Raises:
        OipError: nesting that is neither flat nor the shape's.
    """
    if all(not isinstance(v, list) for v in data):
        return data
    out: list = []

    def walk(node: Any, depth: int) -> None:
        if depth == len(shape):
            if isinstance(node, list):
                raise OipError(f"input {name!r}: data is nested deeper than its shape {list(shape)}")
            out.append(node)
            return
        if not isinstance(node, list) or len(node) != shape[depth]:
            raise OipError(f"input {name!r}: nested data does not match its shape {list(shape)}; send it flat "
                           "(row-major) or nested as the shape")
        for child in node:
            walk(child, depth + 1)

    walk(data, 0)
    return out


def _typed(values: list, datatype: str, name: str) -> np.ndarray:
    """JSON elements -> an array of the datatype, each element checked for its type and range.

    Raises:
        OipError: an element of another type, out of range or not finite.
    """
    dtype = np.dtype(DATATYPES[datatype])
    if datatype == "BOOL":
        if not all(v is True or v is False for v in values):
            raise OipError(f"input {name!r} is BOOL: every element must be true or false")
        return np.asarray(values, dtype=bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not all(type(v) is int and info.min <= v <= info.max for v in values):
            raise OipError(f"input {name!r} is {datatype}: every element must be an integer from {info.min} to {info.max}")
        return np.asarray(values, dtype=dtype)
    if not all(type(v) in (int, float) for v in values):
        raise OipError(f"input {name!r} is {datatype}: every element must be a number")
    arr = np.asarray(values, dtype=np.float64)
    limit = float(np.finfo(dtype).max)
    if arr.size and not (np.all(np.isfinite(arr)) and float(np.abs(arr).max()) <= limit):
        raise OipError(f"input {name!r} must hold finite {datatype} numbers (|x| <= {limit:.3g})")
    return arr


def decode_request(body: bytes, manifest: dict[str, Any], max_batch: int,
                   header_length: Optional[str] = None) -> InferRequest:
    """Decode and check an inference request for a model (its manifest).

    Args:
        body: the HTTP body (JSON, or JSON + binary tensors with ``header_length``).
        header_length: the ``Inference-Header-Content-Length`` header's value, if any.

    Raises:
        OipError: 400 naming the problem (schema, unknown or missing input, datatype, shape, values,
        unknown output, a binary part that does not fit); 413 for more rows than ``max_batch``.
    """
    data, binary = _split(body, header_length)
    # the structure against the schema; the elements (possibly many thousands) by _leaves and _typed
    shallow = data
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        shallow = {**data, "inputs": [{**i, "data": [] if isinstance(i.get("data"), list) else i["data"]}
                                      if isinstance(i, dict) and "data" in i else i for i in data["inputs"]]}
    validate(shallow, "inference_request")
    specs = {s["name"]: s for s in manifest["inputs"]}
    names = [i["name"] for i in data["inputs"]]
    for name in names:
        if name not in specs:
            raise OipError(f"unknown input {name[:60]!r}; the model takes {sorted(specs)}")
    if len(set(names)) != len(names):
        raise OipError("an input is given twice")
    missing = [n for n in specs if n not in names]
    if missing:
        raise OipError(f"input {missing[0]!r} is missing; the model takes {sorted(specs)}")
    params = dict(data.get("parameters") or {})
    if "classification" in params:
        raise OipError("the classification extension is not supported; ask for the output tensor itself")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    rows = None
    for item in data["inputs"]:
        name, shape, datatype = item["name"], list(item["shape"]), item["datatype"]
        spec = specs[name]
        want = datatype_of(spec["dtype"])
        if datatype != want:
            raise OipError(f"input {name!r} has datatype {datatype}, the model takes {want}")
        dims = [None if d is None or d < 0 else int(d) for d in spec["shape"]]
        if len(shape) != len(dims) or any(w is not None and s != w for s, w in zip(shape[1:], dims[1:])) \
                or (dims and dims[0] is not None and shape[0] != dims[0]):
            shown = [-1 if d is None else d for d in dims]
            raise OipError(f"input {name!r} has shape {shape}, the model takes {shown} (-1: any size)")
        count = math.prod(shape)
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
            if type(size) is not int or size != count * dtype.itemsize or offset + size > len(binary):
                raise OipError(f"input {name!r}: binary_data_size {size!r} does not match its shape {shape} of "
                               f"{datatype} or the bytes sent")
            arr = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).astype(dtype.newbyteorder("="))
            offset += size
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise OipError(f"input {name!r} must hold finite {datatype} numbers")
        else:
            if "data" not in item:
                raise OipError(f"input {name!r} has no data")
            values = _leaves(item["data"], shape, name)
            if len(values) != count:
                raise OipError(f"input {name!r} has {len(values)} elements, its shape {shape} needs {count}")
            arr = _typed(values, datatype, name)
        inputs[name] = arr.reshape(shape)
        n = shape[0] if shape else 1
        if rows is None:
            rows = n
        elif n != rows:
            raise OipError("all inputs must have the same number of rows (the first dimension)")
    if offset != len(binary):
        raise OipError(f"{len(binary) - offset} bytes after the JSON part belong to no input")
    assert rows is not None
    if rows > max_batch:
        raise OipError(f"batch of {rows} rows is over the limit of {max_batch}", 413)
    if rows == 0:
        raise OipError("the inputs have no rows")
    keys = [o["key"] for o in manifest["outputs"]]
    binary_all = params.get("binary_data_output") is True
    wanted: list[str] = []
    binary_out: set[str] = set()
    for out in data.get("outputs") or []:
        if out["name"] not in keys:
            raise OipError(f"unknown output {out['name'][:60]!r}; the model gives {keys}")
        if out["name"] in wanted:
            raise OipError(f"output {out['name']!r} is asked twice")
        wanted.append(out["name"])
        oparams = out.get("parameters") or {}
        if "classification" in oparams:
            raise OipError("the classification extension is not supported; ask for the output tensor itself")
        if oparams.get("binary_data", binary_all) is True:
            binary_out.add(out["name"])
    if not wanted:
        wanted = keys
        binary_out = set(keys) if binary_all else set()
    return InferRequest(data.get("id"), inputs, rows, wanted, binary_out, params)


def encode_response(model_name: str, version: int, request_id: str, outputs: Mapping[str, np.ndarray],
                    manifest: dict[str, Any], request: InferRequest,
                    parameters: Optional[dict[str, Any]] = None) -> tuple[bytes, Optional[int]]:
    """The inference response for the outputs the request asked for, in the model's datatypes.

    Returns:
        ``(body, json_length)``: ``json_length`` is None for a plain JSON body, else the length of the
        JSON part (send it as ``Inference-Header-Content-Length``; the body is then
        ``application/octet-stream``).

    Raises:
        EdgeError: an output the model did not produce (a bug, not a request problem).
    """
    specs = {o["key"]: o for o in manifest["outputs"]}
    items = []
    raw: list[bytes] = []
    for key in request.outputs:
        if key not in outputs:
            raise EdgeError(f"the model produced no output {key!r}")
        dtype = np.dtype(specs[key]["dtype"])
        arr = np.asarray(outputs[key]).astype(dtype, copy=False)
        entry: dict[str, Any] = {"name": key, "datatype": datatype_of(specs[key]["dtype"]), "shape": list(arr.shape)}
        if key in request.binary:
            chunk = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            raw.append(chunk)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        items.append(entry)
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(version), "id": request_id, "outputs": items}
    if parameters:
        body["parameters"] = parameters
    text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if not raw:
        return text, None
    return text + b"".join(raw), len(text)


def model_metadata(name: str, versions: Sequence[int], manifest: dict[str, Any]) -> dict[str, Any]:
    """``GET /v2/models/NAME[/versions/N]``: the versions that may be asked for, the typed tensors."""
    def tensor(tname: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"name": tname, "datatype": datatype_of(spec["dtype"]),
                "shape": [-1 if d is None else int(d) for d in spec["shape"]]}

    return {"name": name, "versions": [str(v) for v in versions], "platform": PLATFORM,
            "inputs": [tensor(s["name"], s) for s in manifest["inputs"]],
            "outputs": [tensor(o["key"], o) for o in manifest["outputs"]]}


def server_metadata(version: str) -> dict[str, Any]:
    """``GET /v2``: the server's name, version and extensions (Triton's binary tensor data)."""
    return {"name": "deploykit-edge", "version": version, "extensions": ["binary_tensor_data"]}


def error_body(message: str) -> bytes:
    """The protocol's error object, ``{"error": "..."}``."""
    return json.dumps({"error": message}, separators=(",", ":")).encode("utf-8")
