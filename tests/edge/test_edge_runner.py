"""edge.runner.Predictor on a real bundle with the real interpreter."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge import selftest, threads
from edge.bundle import Bundle
from edge.errors import BundleError, EdgeError
from edge.runner import Predictor

from edge_helpers import ENV, REPO, rewrite_manifest


def golden(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    g = json.loads((bundle / "golden.json").read_text())
    return np.asarray(g["inputs"]["features"]), np.asarray(g["outputs"]["output_0"])


@pytest.mark.parametrize("variant", ["float32", "fp32", "float16", "fp16", "dynamic"])
def test_float_variants_pass_selftest(bundle: Path, variant: str) -> None:
    result = selftest.run(Predictor(bundle, variant))
    assert result["passed"], result["failures"]


def test_course_row_gets_the_keras_prediction(bundle: Path) -> None:
    x, ref = golden(bundle)
    g = json.loads((bundle / "golden.json").read_text())
    course = g["kinds"].index("course")
    assert x[course].tolist() == [6.0, 250.0, 66.5]
    y = Predictor(bundle).predict_rows([[6, 250, 66.5]])
    assert y.shape == (1, 1)
    assert abs(y[0, 0] - ref[course, 0]) <= 1e-5 * abs(ref[course, 0])


def test_quantized_variant_applies_the_input_transform(bundle: Path) -> None:
    p = Predictor(bundle, "int8")
    assert p.transforms and p.transforms[0]["kind"] == "standardize"
    x, ref = golden(bundle)
    data_rows = [i for i, k in enumerate(json.loads((bundle / "golden.json").read_text())["kinds"]) if k == "data"]
    y = p.predict_rows(x[data_rows])
    span = np.ptp(ref)  # without the transform the int8 model is off by tens of medv
    assert np.max(np.abs(y - ref[data_rows])) < 0.05 * span


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8", "int16x8"])
def test_predict_row_is_bit_identical_to_the_batch_path(bundle: Path, variant: str) -> None:
    """The server's one-row path (plain-float transform, reused buffer) feeds the model what the batch path does."""
    p = Predictor(bundle, variant)
    x, _ = golden(bundle)
    batch = p.predict_rows(x)
    rows = np.array([p.predict_row(r) for r in x.tolist()])
    assert rows.dtype == batch.dtype and np.array_equal(rows, batch)
    p.predict_rows(x[:3])  # a batch in between resizes the input; the row path must resize back
    assert np.array_equal(p.predict_row(x[0].tolist()), batch[0])


@pytest.mark.parametrize("runtime", ["ai_edge_litert", "tensorflow"])
@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8", "int16x8"])
def test_predict_value_is_bit_identical_to_the_batch_path(bundle: Path, variant: str, runtime: str) -> None:
    """The server's one-value path (tensors written and read in place) gives the batch path's float32,
    also when batches and one-row calls interleave (the in-place views are dropped and rebuilt)."""
    p = Predictor(bundle, variant, runtime=runtime)
    x, _ = golden(bundle)
    batch = p.predict_rows(x)
    values = [p.predict_value(r) for r in x.tolist()]
    assert p._session().view is not None  # the Boston graph is static: the in-place path was taken
    assert all(type(v) is float for v in values)
    assert np.array_equal(np.array(values), batch[:, 0].astype(np.float64))
    for i, r in enumerate(x.tolist()[:6]):  # batch, row, value, batch, ... on one interpreter
        assert np.array_equal(p.predict_rows(x[:3]), batch[:3])
        assert p.predict_value(r) == float(batch[i, 0])
        assert np.array_equal(p.predict_row(r), batch[i])
        assert p.predict_value(r) == float(batch[i, 0])
    assert selftest.run(p)["passed"]  # the public API still runs after in-place calls


PREDICT_VALUE_CHECK = """
import json, sys
import numpy as np
from edge.runner import Predictor
bundle = sys.argv[1]
x = np.asarray(json.load(open(bundle + "/golden.json"))["inputs"]["features"])
for variant in ["float32", "float16", "dynamic", "int8", "int16x8"]:
    p = Predictor(bundle, variant)
    batch = p.predict_rows(x)
    values = [p.predict_value(r) for r in x.tolist()]
    in_place = type(p._session().view).__name__ == "_RowView"
    print(json.dumps([p.runtime.name, variant, in_place, values == batch[:, 0].astype(np.float64).tolist()]))
"""


@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
def test_predict_value_in_the_device_runtimes(bundle: Path, runtime: str) -> None:
    """The in-place path on the interpreters a Pi runs (the parity engine's venvs: LiteRT, and tflite-runtime
    2.14 with numpy < 2), without TensorFlow: taken for every variant, and bit-identical to the batch path."""
    from convert.parity.envs import ensure

    env = ensure(runtime)
    out = subprocess.run([str(env.python), "-c", PREDICT_VALUE_CHECK, str(bundle)], capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line[1] for line in lines] == ["float32", "float16", "dynamic", "int8", "int16x8"]
    assert all(line[0] == env.module and line[2] and line[3] for line in lines), lines


def test_predict_value_without_views_falls_back(bundle: Path) -> None:
    """A graph with an operator outside STATIC_SHAPE_OPS never gets in-place views; same numbers."""
    p = Predictor(bundle, "float32")
    p._ops = p._ops | {"RESHAPE"}
    x, _ = golden(bundle)
    batch = p.predict_rows(x)
    assert [p.predict_value(r) for r in x.tolist()] == batch[:, 0].astype(np.float64).tolist()
    assert p._session().view is None and p._session().view_possible is False


@pytest.mark.parametrize("variant", ["float32", "int8"])  # int8 has a standardize transform, float32 none
def test_predict_value_beyond_float32_is_what_predict_row_gives(bundle: Path, variant: str) -> None:
    """A value the in-place pack cannot take falls back to predict_row on the row as given (transformed once)."""
    p = Predictor(bundle, variant)
    p.predict_value([6.0, 250.0, 66.5])  # the view exists
    row = [6.0, 1e39, 66.5]
    with np.errstate(over="ignore"):
        want = float(p.predict_row(row).reshape(-1)[0])
        got = p.predict_value(row)
    assert got == want or (np.isnan(got) and np.isnan(want))
    assert p.predict_value([6.0, 250.0, 66.5]) == float(p.predict_rows([[6.0, 250.0, 66.5]])[0, 0])


def test_predict_value_refuses_a_model_with_several_values(bundle_copy: Path) -> None:
    p = Predictor(bundle_copy, "float32")
    p.one_value = False
    with pytest.raises(EdgeError, match="is not one value per row; use predict_row"):
        p.predict_value([6, 250, 66.5])


def test_default_variant_follows_parity(bundle_copy: Path) -> None:
    assert Predictor(bundle_copy).variant == "float32"  # parity null -> float32

    def parity(passed: dict[str, bool]):
        def change(m: dict) -> None:
            m["parity"] = {"passed": False, "results": [
                {"artifact": f"edge/model.{name}.tflite", "runtime": "ai_edge_litert", "passed": ok}
                for name, ok in passed.items()]}
        return change

    rewrite_manifest(bundle_copy, parity({"fp32": False, "fp16": True, "int8": True}))
    assert Predictor(bundle_copy).variant == "float16"
    rewrite_manifest(bundle_copy, parity({"fp32": False, "fp16": False, "int8": True}))
    assert Predictor(bundle_copy).variant == "int8"
    rewrite_manifest(bundle_copy, parity({"fp32": False}))
    assert Predictor(bundle_copy).variant == "float32"


def test_pi_layout_edge_folder_plus_json(bundle: Path, tmp_path: Path) -> None:
    pi = tmp_path / "pi"
    pi.mkdir()
    shutil.copytree(bundle / "edge", pi / "edge")
    for name in ("manifest.json", "golden.json"):
        shutil.copy(bundle / name, pi / name)
    assert selftest.run(Predictor(pi))["passed"]
    assert Predictor(pi / "edge").variant == "float32"  # the edge/ folder itself also works


def test_unknown_variant(bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"unknown variant 'int4'; choose one of float32, float16, dynamic, int16x8, int8 \(or fp32, fp16\)"):
        Predictor(bundle, "int4")


def test_tampered_tflite_is_refused_and_named(bundle_copy: Path) -> None:
    path = bundle_copy / "edge/model.fp32.tflite"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"^bundle file edge/model.fp32.tflite does not match its sha256 in manifest.json \(tampered or corrupted\)"):
        Predictor(bundle_copy, "float32")


def test_truncated_tflite_is_refused_and_named(bundle_copy: Path) -> None:
    path = bundle_copy / "edge/model.fp32.tflite"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"^bundle file edge/model.fp32.tflite has 1000 bytes, the manifest says \d+ \(truncated or altered\)"):
        Predictor(bundle_copy, "float32")


@pytest.mark.parametrize("change, message", [
    (lambda m: m["inputs"][0].__setitem__("shape", [None, 4]),
     "manifest.json does not match edge/model.fp32.tflite: input 'features' has shape [None, 3] in the model, [None, 4] in the manifest"),
    (lambda m: [m["inputs"][0].__setitem__("name", "x"), *(f.__setitem__("input", "x") for f in m["features"])],
     "manifest.json does not match edge/model.fp32.tflite: the model's inputs are ['features'], the manifest's ['x']"),
    (lambda m: m["outputs"][0].__setitem__("key", "y"),
     "manifest.json does not match edge/model.fp32.tflite: the model's outputs are ['output_0'], the manifest's ['y']"),
    (lambda m: m["outputs"][0].__setitem__("dtype", "int32"),
     "manifest.json does not match edge/model.fp32.tflite: output 'output_0' is float32 in the model, int32 in the manifest"),
])
def test_manifest_that_does_not_match_the_model(bundle_copy: Path, change, message: str) -> None:
    rewrite_manifest(bundle_copy, change)
    with pytest.raises(BundleError) as info:
        Predictor(bundle_copy, "float32")
    assert str(info.value).startswith(message)


def test_missing_golden_is_named(bundle_copy: Path) -> None:
    (bundle_copy / "golden.json").unlink()
    with pytest.raises(BundleError, match="has no golden.json; copy it with the bundle or re-create the bundle"):
        selftest.run(Predictor(bundle_copy))


def test_concurrent_threads_get_correct_answers(bundle: Path) -> None:
    p = Predictor(bundle)
    rng = np.random.default_rng(0)
    rows = np.stack([rng.uniform(4, 8.5, 400), rng.uniform(190, 700, 400), rng.uniform(3, 100, 400)], axis=1)
    expected = p.predict_rows(rows)  # one batch, one thread

    def one(i: int) -> float:
        return float(p.predict_rows(rows[i : i + 1])[0, 0])

    def value(i: int) -> float:  # each thread's interpreter has its own in-place view
        return p.predict_value(rows[i].tolist())

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(len(rows)) ) )
        values = list(pool.map(value, range(len(rows))))
    np.testing.assert_allclose(got, expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(values, expected[:, 0], rtol=1e-6)


def test_bad_shapes_are_edge_errors(bundle: Path) -> None:
    p = Predictor(bundle)
    with pytest.raises(EdgeError, match=r"rows must have 3 values \(rm, tax, age\), got shape \[1, 2\]"):
        p.predict_rows([[1, 2]])
    with pytest.raises(EdgeError, match=r"input 'features' is missing"):
        p.predict({})


def test_edge_never_imports_tensorflow(bundle: Path) -> None:
    code = ("import sys; from edge.runner import Predictor; from edge import server, cli, selftest;"
            "p = Predictor(sys.argv[1]); p.predict_rows([[6, 250, 66.5]]); selftest.run(p);"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'pandas', 'convert', 'keras', 'rich')];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code, str(bundle)], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ interpreter threads ("auto")

AUTO = re.compile(r"auto: (\d+) threads?, ([0-9.e+-]+) ms a prediction \((.*)\)$")


def test_auto_threads_keep_one_for_a_fast_model(bundle: Path) -> None:
    """The Boston MLP answers in microseconds: under the 1 ms threshold, so 1 thread, and the reason says so."""
    p = Predictor(bundle, num_threads=None)
    match = AUTO.match(p.threads_reason)
    assert match and p.num_threads == 1, p.threads_reason
    assert match.group(1) == "1" and float(match.group(2)) < 1.0 and match.group(3) == "under 1 ms"
    assert p.describe()["threads"] == 1


def test_auto_threads_over_the_threshold_try_every_cpu(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the threshold at 0 every model is "slow": it is timed again with every CPU and keeps them only
    when that was at least 10 % faster; the reason gives both times (on one CPU it says so)."""
    monkeypatch.setattr(threads, "AFTER", 0.0)
    cpus = len(os.sched_getaffinity(0))
    p = Predictor(bundle, num_threads=None)
    match = AUTO.match(p.threads_reason)
    assert match, p.threads_reason
    assert int(match.group(1)) == p.num_threads
    if cpus == 1:
        assert p.num_threads == 1 and match.group(3) == "1 CPU"
    elif p.num_threads == cpus:
        one = float(re.fullmatch(r"1 thread: ([0-9.e+-]+) ms", match.group(3)).group(1))  # type: ignore[union-attr]
        assert float(match.group(2)) <= one * threads.GAIN
    else:
        found = re.fullmatch(rf"{cpus} threads were not 10 % faster: ([0-9.e+-]+) ms", match.group(3))
        assert p.num_threads == 1 and found, p.threads_reason
        assert float(found.group(1)) > float(match.group(2)) * threads.GAIN * 0.999  # 3 digits shown
    x, y = golden(bundle)  # the interpreter it ends with still answers
    np.testing.assert_allclose(p.predict_rows(x), y, rtol=1e-5, atol=1e-5)
    assert p._session().interpreter is not None


def test_threads_given_are_kept_and_not_timed(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "time_one", lambda p: pytest.fail("timed although --threads was given"))
    p = Predictor(bundle, num_threads=3)
    assert (p.num_threads, p.threads_reason) == (3, "--threads")
