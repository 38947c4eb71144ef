"""edge.inputs: payload checks and their statuses and messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import inputs as inputs_mod
from edge.inputs import InputError, RowParser, parse_json
from edge.server.messages import json_float as _json_float  # here, not in the test: its import outlasts hypothesis's deadline

FEATURES = [{"name": "rm"}, {"name": "tax"}, {"name": "age"}]
EXPECTED = "expected 3 values: rm, tax, age"


def parse(body: bytes, max_batch: int = 10):
    return RowParser(FEATURES, max_batch).payload(parse_json(body))


def test_course_row_object_and_rows() -> None:
    x, single = parse(b"[6, 250, 66.5]")
    assert single and x.tolist() == [[6, 250, 66.5]]
    x, single = parse(b'{"rm": 6, "tax": 250, "age": 66.5, "extra": "ignored"}')
    assert single and x.tolist() == [[6, 250, 66.5]]
    x, single = parse(b'[[6, 250, 66.5], {"rm": 7, "tax": 300, "age": 1}]')
    assert not single and x.tolist() == [[6, 250, 66.5], [7, 300, 1]]


@pytest.mark.parametrize("body, status, message", [
    (b"[6, 250", 400, "malformed JSON: Expecting ',' delimiter at line 1 column 8"),
    (b"", 400, "malformed JSON: the body is empty"),
    (b"\xff\xfe", 400, "malformed JSON: the body is not UTF-8"),
    (b"[6, 250]", 422, f"got 2 values, {EXPECTED}"),
    (b'[6, "250", 1]', 422, f'tax must be a number, got str "250"; {EXPECTED}'),
    (b"[6, true, 1]", 422, f"tax must be a number, got boolean true; {EXPECTED}"),
    (b"[6, null, 1]", 422, f"tax must be a number, got null null; {EXPECTED}"),
    (b"[6, 250, NaN]", 422, f"age must be a finite number, got nan; {EXPECTED}"),
    (b"[6, 250, Infinity]", 422, f"age must be a finite number, got nan; {EXPECTED}"),
    (b"[6, 250, 1e999]", 422, f"age must be a finite number, got inf; {EXPECTED}"),
    (b"[6, 250, 1" + b"0" * 400 + b"]", 422, f"age must be a finite number, got an integer of 401 digits; {EXPECTED}"),
    (b'{"rm": 6}', 422, f"missing feature(s) tax, age; {EXPECTED}"),
    (b"[]", 422, f"the list is empty; {EXPECTED}"),
    (b'"x"', 422, f"the body must be a list of values, an object or a list of rows, got str; {EXPECTED}"),
    (b"[[6, 250, 1], [6, 250]]", 422, f"row 2: got 2 values, {EXPECTED}"),  # rows numbered from 1, as in predict
    (b'[{"rm": 6, "tax": 250}, [6, 250, 1]]', 422, f"row 1: missing feature(s) age; {EXPECTED}"),
    (b"[" + b",".join([b"[1,2,3]"] * 11) + b"]", 413, "batch of 11 rows is over the limit of 10; send smaller batches"),
])
def test_bad_payloads(body: bytes, status: int, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse(body)
    assert info.value.status == status
    assert str(info.value) == message


@given(st.lists(st.one_of(st.integers(-10**400, 10**400), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                          st.none(), st.text(max_size=3)), min_size=0, max_size=5))
def test_quick_row_accepts_exactly_the_valid_single_rows(values: list) -> None:
    """The server's hot path never accepts what ``payload`` refuses, and agrees on what it accepts."""
    parser = RowParser(FEATURES, 10)
    quick = parser.quick_row(values)
    try:
        x, single = parser.payload(values)
    except InputError:
        assert quick is None
        return
    if quick is not None:
        assert single and x.tolist() == [quick]


@given(st.lists(st.one_of(st.integers(-10**400, 10**400), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                          st.none(), st.text(max_size=3)), min_size=0, max_size=5),
       st.sampled_from([", ", ",", " , "]))
def test_quick_body_is_quick_row_of_the_parsed_body(values: list, separator: str) -> None:
    """The server's one-row parser agrees with parse_json + quick_row on every body it is given, with
    orjson (the serve extra) and with the json module's scanner it falls back to."""
    parser = RowParser(FEATURES, 10)
    body = json.dumps(values, separators=(separator, ":")).encode()
    try:
        expected = parser.quick_row(parse_json(body))
    except InputError:
        expected = None
    for fast in (inputs_mod._orjson, None):
        saved, inputs_mod._orjson = inputs_mod._orjson, fast
        try:
            assert parser.quick_body(body) == expected
        finally:
            inputs_mod._orjson = saved


@pytest.mark.parametrize("body", [b" [1, 2, 3]", b"[1, 2, 3]\n", b"\xff", b"[" * 100_000, b"[1" + b"0" * 5000 + b", 2, 3]",
                                  b'{"rm": 1, "tax": 2, "age": 3}', b"[1, 2, 3] [4]", b""])
def test_quick_body_leaves_the_rest_to_the_full_parser(body: bytes) -> None:
    assert inputs_mod._orjson is not None  # the serve extra installs it
    parser = RowParser(FEATURES, 10)
    for fast in (inputs_mod._orjson, None):
        saved, inputs_mod._orjson = inputs_mod._orjson, fast
        try:
            if fast is not None and body in (b" [1, 2, 3]", b"[1, 2, 3]\n"):
                assert parser.quick_body(body) == [1.0, 2.0, 3.0]  # orjson takes surrounding whitespace
            else:
                assert parser.quick_body(body) is None
        finally:
            inputs_mod._orjson = saved


@given(st.floats(allow_nan=False, allow_infinity=False) | st.floats(-1e-3, 1e-3) | st.floats(1e15, 1e17)
       | st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_the_answer_float_is_what_json_dumps_writes(value: float) -> None:
    """The one-row answer formats its float with orjson where orjson and json agree, else repr: always json's text."""
    assert _json_float(value) == json.dumps(value).encode()


TOKENS = {"name": "tokens", "dtype": "int32", "shape": [None, 4], "vocabulary": {"size": 10, "layer": "embedding"}}
CATEGORY = {"name": "cat", "dtype": "float32", "shape": [None, 1], "vocabulary": {"size": 5, "layer": "embedding_1"}}
RANGE = "integers from 0 to 9 (the vocabulary of its Embedding 'embedding')"


@pytest.mark.parametrize("values, message", [
    ([[1, 2, 3, 10]], f"input 'tokens' must hold {RANGE}, got 10 at index [0, 3]"),
    ([[1, 2, 3, 4], [0, -1, 0, 0]], f"input 'tokens' must hold {RANGE}, got -1 at index [1, 1]"),
])
def test_token_ids_outside_the_vocabulary_are_refused(values, message) -> None:
    import numpy as np

    with pytest.raises(InputError) as info:
        inputs_mod.check_vocabulary({"tokens": np.asarray(values, dtype=np.int32)}, [TOKENS])
    assert (info.value.status, str(info.value)) == (422, message)


@pytest.mark.parametrize("value, shown", [(2.5, "2.5"), (-1.0, "-1"), (5.0, "5"), (float("nan"), "nan")])
def test_float_inputs_that_index_an_embedding_take_integers_in_range_only(value, shown) -> None:
    import numpy as np

    with pytest.raises(InputError) as info:
        inputs_mod.check_vocabulary({"cat": np.asarray([[1.0], [value]])}, [CATEGORY])
    assert str(info.value) == (f"input 'cat' must hold integers from 0 to 4 (the vocabulary of its Embedding "
                               f"'embedding_1'), got {shown} at index [1, 0]")
    assert inputs_mod.vocabulary_problem(value, CATEGORY) == (
        f"must be integers from 0 to 4 (the vocabulary of its Embedding 'embedding_1'), got {shown}")


def test_values_inside_the_vocabulary_and_inputs_without_one_pass() -> None:
    import numpy as np

    plain = {"name": "x", "dtype": "float32", "shape": [None, 1]}
    inputs_mod.check_vocabulary({"tokens": np.asarray([[0, 9, 3, 3]], dtype=np.int32), "cat": np.asarray([[4.0]]),
                                 "x": np.asarray([[-7.5]])}, [TOKENS, CATEGORY, plain])
    assert inputs_mod.vocabulary_problem(4.0, CATEGORY) is None


@pytest.mark.parametrize("text, want", [
    ("1", 1), ("1000", 1000), ("0001000", 1000), ("0" * 5000 + "7", 7), ("0", None), ("1001", None),
    ("9" * 5000, None), ("", None), ("-1", None), ("+1", None), (" 1", None), ("1_0", None), ("²", None),
    ("١", None), ("1e3", None),
])
def test_whole_number_never_converts_an_unbounded_string(text: str, want: int | None) -> None:
    from edge.inputs import whole_number

    assert whole_number(text, 1, 1000) == want
