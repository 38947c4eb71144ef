"""Turn request payloads into checked feature rows; every rejection is an ``InputError`` with a status.

Accepted by ``/predict_json`` for a tabular model with features ``rm, tax, age``:

* ``[6, 250, 66.5]``                          one row  -> ``{"prediction": x, "success": true}``
* ``{"rm": 6, "tax": 250, "age": 66.5}``      one row  -> same
* ``[[6, 250, 66.5], {"rm": ...}, ...]``      rows     -> ``{"predictions": [...], "success": true}``

Values must be JSON numbers (not strings, not booleans) and finite: ``NaN``, ``Infinity`` and ``1e999``
(which parses to infinity) are refused with 422.
"""

from __future__ import annotations

import json
import json.scanner
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from edge.errors import EdgeError

try:  # optional (in the serve extra): a faster JSON parser for the one-row fast path, quick_body
    import orjson as _orjson
except ImportError:  # pragma: no cover - the json module's scanner does the same, a little slower
    _orjson = None


class InputError(EdgeError):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reject_constant(name: str) -> float:
    # NaN / Infinity / -Infinity literals (not standard JSON) parse, then fail the finiteness check.
    return float("nan")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN = json.scanner.make_scanner(_DECODER)  # the decoder's own C scanner: one value at an offset, no wrapper
FLOAT32_MAX = 3.4028234663852886e38  # the models take float32: a larger value would become infinity


def whole_number(text: str, low: int, high: int) -> Optional[int]:
    """``text`` as a whole number from ``low`` to ``high`` (ASCII digits, leading zeros allowed); None for
    anything else. A number longer than ``high``'s digits is never converted (``int`` raises ValueError
    over 4300 digits, and non-ASCII digits such as ``²`` pass ``str.isdigit`` but not ``int``)."""
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > len(str(high)):
        return None
    number = int(digits)
    return number if low <= number <= high else None


def parse_json(body: bytes) -> Any:
    """Parse a JSON body.

    Raises:
        InputError: 400 for malformed JSON or a body that is not UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(400, "malformed JSON: the body is not UTF-8") from None
    if not text.strip():
        raise InputError(400, "malformed JSON: the body is empty")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InputError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # an integer literal over Python's digit limit (sys.get_int_max_str_digits)
        raise InputError(422, "a number in the body has too many digits; send ordinary numbers") from None
    except RecursionError:
        raise InputError(400, "malformed JSON: nested too deeply") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RowParser:
    """Checks rows against the manifest's features."""

    def __init__(self, features: Sequence[dict[str, Any]], max_batch: int = 1000) -> None:
        self.names = [f["name"] for f in features]
        self.n = len(self.names)
        self.max_batch = max_batch
        self.expected = f"expected {len(self.names)} values: {', '.join(self.names)}"

    def _value(self, value: Any, name: str, where: str) -> float:
        if not _is_number(value):
            kind = "null" if value is None else type(value).__name__
            if isinstance(value, bool):
                kind = "boolean"
            raise InputError(422, f"{where}{name} must be a number, got {kind} {json.dumps(value)[:40]}; {self.expected}")
        try:
            number = float(value)
        except OverflowError:  # an integer literal too large for a float
            raise InputError(422, f"{where}{name} must be a finite number, got an integer of {len(str(abs(value)))} digits; "
                                  f"{self.expected}") from None
        if math.isfinite(number) and abs(number) > FLOAT32_MAX:
            raise InputError(422, f"{where}{name} must be within the float32 range (|x| <= 3.4e38), got {value!r}; "
                                  f"{self.expected}")
        if not math.isfinite(number):
            raise InputError(422, f"{where}{name} must be a finite number, got {value!r}; {self.expected}")
        return number

    def quick_row(self, data: Any) -> list[float] | None:
        """The row of the common request, a flat list of finite JSON numbers of the right length; else None.

        A cheap path for the course's ``[6, 250, 66.5]``: anything it does not accept goes through
        ``payload``, which names the problem. Never raises.
        """
        if type(data) is not list or len(data) != self.n:
            return None
        row = []
        for v in data:
            t = type(v)
            if t is int:
                try:
                    v = float(v)
                except OverflowError:
                    return None
            elif t is not float:
                return None
            if v - v != 0.0 or v > FLOAT32_MAX or v < -FLOAT32_MAX:  # NaN, +-inf, beyond float32
                return None
            row.append(v)
        return row

    def quick_body(self, body: bytes) -> list[float] | None:
        """``quick_row(parse_json(body))`` without its error handling: orjson when it is installed, else
        the json decoder's scanner straight on the body (no surrounding whitespace). None for anything
        ``quick_row`` would not take or that is not plain JSON; ``parse_json`` and ``payload`` then name
        the problem. Never raises."""
        if _orjson is not None:
            try:
                return self.quick_row(_orjson.loads(body))
            except (ValueError, RecursionError):  # not UTF-8, malformed, NaN/Infinity/1e999, deep nesting
                return None
        try:
            text = body.decode("utf-8")
            data, end = _SCAN(text, 0)
        except (StopIteration, ValueError, RecursionError):  # not UTF-8, malformed, an over-long integer, deep nesting
            return None
        return self.quick_row(data) if end == len(text) else None

    def row(self, item: Any, where: str = "") -> list[float]:
        """One row from a list of values or an object keyed by feature name.

        Raises:
            InputError: 422 for a wrong count, a missing feature, a non-number or a non-finite number.
        """
        if isinstance(item, dict):
            missing = [n for n in self.names if n not in item]
            if missing:
                raise InputError(422, f"{where}missing feature(s) {', '.join(missing)}; {self.expected}")
            return [self._value(item[n], n, where) for n in self.names]
        if isinstance(item, list):
            if len(item) != len(self.names):
                raise InputError(422, f"{where}got {len(item)} values, {self.expected}")
            return [self._value(v, n, where) for v, n in zip(item, self.names)]
        kind = "null" if item is None else type(item).__name__
        raise InputError(422, f"{where}a row must be a list or an object, got {kind}; {self.expected}")

    def payload(self, data: Any) -> tuple[np.ndarray, bool]:
        """Rows of a ``/predict_json`` payload and whether it was a single row.

        Raises:
            InputError: 422 for bad rows or an empty list, 413 for more rows than ``max_batch``.
        """
        if isinstance(data, dict):
            return np.asarray([self.row(data)], dtype=np.float64), True
        if isinstance(data, list):
            if not data:
                raise InputError(422, f"the list is empty; {self.expected}")
            if all(not isinstance(v, (list, dict)) for v in data):
                return np.asarray([self.row(data)], dtype=np.float64), True
            return self.rows(data), False
        kind = "null" if data is None else type(data).__name__
        raise InputError(422, f"the body must be a list of values, an object or a list of rows, got {kind}; {self.expected}")

    def rows(self, items: Any) -> np.ndarray:
        """A list of rows.

        Raises:
            InputError: 413 when over ``max_batch``; 422 for a bad row (the message names it, 1-based:
            ``row 1`` is the list's first item, as in ``deploykit-edge predict``).
        """
        if not isinstance(items, list) or not items:
            raise InputError(422, f"expected a non-empty list of rows; {self.expected}")
        if len(items) > self.max_batch:
            raise InputError(413, f"batch of {len(items)} rows is over the limit of {self.max_batch}; send smaller batches")
        return np.asarray([self.row(item, f"row {i}: ") for i, item in enumerate(items, start=1)], dtype=np.float64)


_INT_RANGE = {"int8": (-2**7, 2**7 - 1), "uint8": (0, 2**8 - 1), "int16": (-2**15, 2**15 - 1),
              "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}


def _describe(item: Any) -> str:
    if isinstance(item, bool):
        return f"boolean {json.dumps(item)}"
    if isinstance(item, str):
        return f"str {json.dumps(item)[:40]}"
    if item is None:
        return "null"
    if isinstance(item, (int, float)):
        return json.dumps(item)[:40]
    return "an object" if isinstance(item, dict) else type(item).__name__


def _check_leaves(value: Any, name: str, dtype: str) -> None:
    """Every leaf of a nested list is a JSON number of the input's dtype: no string, no boolean (a bool
    input takes booleans only), and an integer in range for an integer input.

    Raises:
        InputError: 422 naming the input, its dtype and the first wrong value.
    """
    ints = _INT_RANGE.get(dtype)
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is list:
            stack.extend(reversed(item))  # depth first, in order: the message names the first wrong value
        elif dtype == "bool":
            if kind is not bool:
                raise InputError(422, f"input {name!r} must hold booleans (bool), got {_describe(item)}")
        elif kind is not int and kind is not float:
            raise InputError(422, f"input {name!r} must hold numbers ({dtype}), got {_describe(item)}")
        elif ints is not None and ((kind is float and not item.is_integer()) or not ints[0] <= item <= ints[1]):
            raise InputError(422, f"input {name!r} must hold integers from {ints[0]} to {ints[1]} ({dtype}), "
                                  f"got {_describe(item)}")


def check_tensor(value: Any, name: str, shape: Sequence[int | None], dtype: str,
                 model_dtype: str | None = None) -> np.ndarray:
    """A nested list for a non-tabular input (TF Serving shape), checked for shape and finiteness (and the
    float32 range when the model input, ``model_dtype`` or else ``dtype``, is float32); its leaves must be
    JSON numbers of the model input's dtype (``_check_leaves``).

    Raises:
        InputError: 422 for ragged, non-numeric (strings and booleans included), non-finite, out-of-range
        or wrongly shaped values.
    """
    _check_leaves(value, name, model_dtype or dtype)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise InputError(422, f"input {name!r} must hold finite numbers only") from None
    except (ValueError, TypeError):
        raise InputError(422, f"input {name!r} must be a (nested) list of numbers of shape {list(shape)}") from None
    if arr.dtype == object or not np.all(np.isfinite(arr)):
        raise InputError(422, f"input {name!r} must hold finite numbers only")
    if (model_dtype or dtype) == "float32" and arr.size and float(np.abs(arr).max()) > FLOAT32_MAX:
        raise InputError(422, f"input {name!r} must be within the float32 range (|x| <= 3.4e38)")
    want = list(shape)
    if arr.ndim != len(want) or any(w is not None and a != w for a, w in zip(arr.shape[1:], want[1:])):
        raise InputError(422, f"input {name!r} has shape {list(arr.shape)}, the model takes {want}")
    return arr.astype(dtype)


def _vocabulary_range(spec: Mapping[str, Any]) -> str:
    vocabulary = spec["vocabulary"]
    return (f"integers from 0 to {int(vocabulary['size']) - 1} (the vocabulary of its Embedding "
            f"{str(vocabulary.get('layer', ''))!r})")


def _value_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def vocabulary_problem(value: float, spec: Mapping[str, Any]) -> str | None:
    """What is wrong with one value for an input that indexes an Embedding (``spec["vocabulary"]``), or None
    when it is an integer from 0 to ``size - 1``: "must be integers from 0 to 39 (...), got -1"."""
    size = int(spec["vocabulary"]["size"])
    if 0 <= value < size and float(value).is_integer():
        return None
    return f"must be {_vocabulary_range(spec)}, got {_value_text(value)}"


def check_vocabulary(inputs: Mapping[str, Any], specs: Sequence[Mapping[str, Any]]) -> None:
    """Every value of an input that indexes an Embedding (the manifest's ``vocabulary``) is an integer from 0
    to ``size - 1``: out of range, a gather out of bounds in TFLite and a zero row in TFJS; negative or
    fractional, a silently wrong answer. Inputs without a vocabulary, or not in ``inputs``, are not looked at.

    Raises:
        InputError: 422 naming the input, the valid range and the first wrong value with its index
        (``[row, position]``, counted from 0 as in the array).
    """
    for spec in specs:
        if not spec.get("vocabulary") or spec["name"] not in inputs:
            continue
        values = np.asarray(inputs[spec["name"]])
        size = int(spec["vocabulary"]["size"])
        if values.dtype.kind in "iub":
            bad = (values < 0) | (values >= size)
        else:
            values = values.astype(np.float64)
            bad = ~((values >= 0) & (values < size) & (np.floor(values) == values))  # NaN is bad too
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(422, f"input {spec['name']!r} must hold {_vocabulary_range(spec)}, got "
                                  f"{_value_text(values[where])} at index {list(where)}")
