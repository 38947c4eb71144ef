"""The tolerance rules can fail: broken artifacts, each in its real runtime, must FAIL the rule of their variant.

Mutations (the artifact files are changed and their sha256 updated, so only the numbers can catch them):

* one kernel scaled by 1.01 (float32: the scaled rule; float16: the precision twin) and by 1.05 (quantized:
  int8's own grid step is max|w|/127, 0.8 % of the largest weight, so a 1 % kernel change is at the level of
  int8's rounding and below what a 1 %-of-range bound can promise to see; 5 % is well above it);
* a wrong input transform (the quantized artifacts' per-feature scaling with two columns swapped; the float32
  artifact given a transform it was not made for);
* the outputs of a two-output model swapped in the artifact's signature;
* every artifact replaced by the same model trained with another seed.

The faithful artifacts of the same bundles pass (first test), so each failure is the mutation's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from convert.parity.engine import verify_bundle
from edge import manifest as mf
from tests.helpers import BOSTON_CSV, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TFLITE = {"float32": "edge/model.fp32.tflite", "float16": "edge/model.fp16.tflite", "dynamic": "edge/model.dynamic.tflite",
          "int8": "edge/model.int8.tflite", "int16x8": "edge/model.int16x8.tflite"}
QUANTIZED = ("dynamic", "int8", "int16x8")


# --------------------------------------------------------------------------- mutating .tflite files


def _model(data: bytes) -> Any:
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))


def _pack(model: Any) -> bytes:
    from convert.tflite_fp16 import serialize

    return serialize(model)


def _const(model: Any, tensor: Any, dtype: str) -> np.ndarray:
    return np.frombuffer(np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes(), dtype=dtype).copy()


def scale_first_kernel(data: bytes, factor: float) -> bytes:
    """The first FULLY_CONNECTED kernel multiplied by ``factor``, whatever its storage (float32, float16 behind a
    DEQUANTIZE, or int8 with a scale)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = _model(data)
    graph = model.subgraphs[0]
    producers = {int(o): op for op in graph.operators for o in op.outputs}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        tensor = graph.tensors[op.inputs[1]]
        source = producers.get(int(op.inputs[1]))
        if source is not None and tensor.type == schema.TensorType.FLOAT32:  # float16 weights behind a DEQUANTIZE
            tensor = graph.tensors[source.inputs[0]]
        if tensor.type == schema.TensorType.FLOAT32:
            values = _const(model, tensor, "<f4") * np.float32(factor)
        elif tensor.type == schema.TensorType.FLOAT16:
            values = (_const(model, tensor, "<f2").astype(np.float32) * factor).astype("<f2")
        elif tensor.type in (schema.TensorType.INT8, schema.TensorType.INT16):
            tensor.quantization.scale = [float(s) * factor for s in tensor.quantization.scale]
            return _pack(model)
        else:
            raise AssertionError(f"unexpected kernel type {tensor.type}")
        model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)
        return _pack(model)
    raise AssertionError("no FULLY_CONNECTED kernel")


def swap_signature_outputs(data: bytes) -> bytes:
    """The serving signature's first two outputs answer each other's tensors."""
    model = _model(data)
    outputs = model.signatureDefs[0].outputs
    outputs[0].tensorIndex, outputs[1].tensorIndex = outputs[1].tensorIndex, outputs[0].tensorIndex
    return _pack(model)


def replace_file(bundle: Path, rel: str, data: bytes) -> None:
    """Write a file of the bundle and record its new sha256 and size, so only the numbers can tell."""
    path = bundle / rel
    path.write_bytes(data)
    manifest = json.loads((bundle / mf.MANIFEST).read_text())
    for artifact in manifest["artifacts"]:
        if artifact["path"] == rel:
            artifact.update(sha256=mf.sha256_file(path), bytes=path.stat().st_size)
    if rel in manifest["files"]:
        manifest["files"][rel] = mf.sha256_file(path)
    write_manifest(bundle, manifest)


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1)
    (bundle / mf.MANIFEST).write_text(text)
    (bundle / "web" / mf.MANIFEST).write_text(text)


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((bundle / mf.MANIFEST).read_text())
    change(manifest)
    write_manifest(bundle, manifest)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def seed7_bundle(boston_build) -> Path:
    """The Boston MLP trained with another seed, converted the same way."""
    return boston_build("mlp", seed=7)[1]


@pytest.fixture(scope="module")
def two_head_bundle(tmp_path_factory) -> Path:
    """A Boston model with two outputs of the same shape (a price and a price-per-room head)."""
    import keras

    work = tmp_path_factory.mktemp("heads")
    keras.utils.set_random_seed(3)
    inp = keras.Input((3,), name="features")
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Normalization(mean=[6.3, 408.0, 68.6],
                                                                              variance=[0.49, 28400.0, 790.0])(inp))
    model = keras.Model(inp, [keras.layers.Dense(1, name="price")(h),
                              keras.layers.Dense(1, name="per_room", bias_initializer="ones")(h)])
    model.save(work / "heads.keras")
    result = run_cli("convert", work / "heads.keras", "--data", BOSTON_CSV, "--target", "medv", "--out", work / "b")
    assert result.returncode == 0, result.stderr
    return work / "b"


def _copy(src: Path, tmp_path: Path, name: str = "b") -> Path:
    return Path(shutil.copytree(src, tmp_path / name))


def _results(bundle: Path, runners, runtimes: str = "litert") -> dict[str, Any]:
    report = verify_bundle(bundle, runtimes=runtimes, runners=runners, save=False)
    return {r.artifact: r for r in report.results}


# --------------------------------------------------------------------------- the rules pass faithful artifacts


def test_faithful_artifacts_pass(bundle_copy: Path, two_head_bundle: Path, runners, tmp_path: Path) -> None:
    for bundle in (bundle_copy, _copy(two_head_bundle, tmp_path)):
        results = _results(bundle, runners, "litert,chromium-cpu")
        assert results and all(r.status == "passed" for r in results.values()), {
            k: r.failures or r.error for k, r in results.items() if r.status != "passed"}


# --------------------------------------------------------------------------- each mutation fails each rule


@pytest.mark.parametrize("variant,factor", [("float32", 1.01), ("float16", 1.01), ("dynamic", 1.05), ("int8", 1.05),
                                            ("int16x8", 1.05)])
def test_a_scaled_kernel_fails(bundle_copy: Path, runners, variant: str, factor: float) -> None:
    rel = TFLITE[variant]
    replace_file(bundle_copy, rel, scale_first_kernel((bundle_copy / rel).read_bytes(), factor))
    result = _results(bundle_copy, runners)[rel]
    assert result.error == ""
    assert result.status == "failed", result.golden
    if variant == "float16":  # the twin is what sees it: the range bound alone would not
        [metrics] = result.golden.values()
        assert metrics["twin_scaled"] > 1e-5
        assert any("precision twin" in f for f in result.failures), result.failures


def test_a_scaled_kernel_fails_with_the_reference_noise_in_the_bound(bundle_copy: Path, runners) -> None:
    """The float32 bound adds twice the output's reference noise; with the largest noise convert records
    (1e-3 of scale, convert.reference_noise.MAX_NOISE) the bound is 2.01e-3, and a 1 % kernel change still fails."""
    from convert.reference_noise import MAX_NOISE

    manifest = json.loads((bundle_copy / mf.MANIFEST).read_text())
    [output] = manifest["outputs"]
    assert 0 <= output["reference_noise"] < 1e-6  # measured by convert on the Boston MLP (float64 run)

    def noisiest(m: dict[str, Any]) -> None:
        m["outputs"][0]["reference_noise"] = MAX_NOISE

    edit_manifest(bundle_copy, noisiest)
    rel = TFLITE["float32"]
    assert _results(bundle_copy, runners)[rel].status == "passed"  # the faithful artifact
    replace_file(bundle_copy, rel, scale_first_kernel((bundle_copy / rel).read_bytes(), 1.01))
    result = _results(bundle_copy, runners)[rel]
    assert result.error == ""
    assert result.status == "failed", result.golden
    [metrics] = result.golden.values()
    assert metrics["reference_noise"] == MAX_NOISE
    assert metrics["max_scaled"] > metrics["max_scaled_allowed"] == pytest.approx(1e-5 + 2 * MAX_NOISE)
    assert any("the reference's own float32 noise 0.001" in f for f in result.failures), result.failures


def test_a_wrong_input_transform_fails(bundle_copy: Path, runners) -> None:
    def swap_columns(manifest: dict[str, Any]) -> None:
        for artifact in manifest["artifacts"]:
            if artifact["variant"] in QUANTIZED:
                [t] = artifact["input_transform"]
                t["mean"][0], t["mean"][1] = t["mean"][1], t["mean"][0]
                t["std"][0], t["std"][1] = t["std"][1], t["std"][0]
            elif artifact["format"] == "tflite" and artifact["variant"] == "float32":
                artifact["input_transform"] = [{"kind": "standardize", "input": "features",
                                                "mean": [6.0, 400.0, 70.0], "std": [1.0, 1.0, 1.0]}]
    edit_manifest(bundle_copy, swap_columns)
    results = _results(bundle_copy, runners)
    for variant in QUANTIZED + ("float32",):
        assert results[TFLITE[variant]].status == "failed", (variant, results[TFLITE[variant]].golden)


def test_swapped_outputs_fail(two_head_bundle: Path, runners, tmp_path: Path) -> None:
    bundle = _copy(two_head_bundle, tmp_path)
    for rel in TFLITE.values():
        replace_file(bundle, rel, swap_signature_outputs((bundle / rel).read_bytes()))
    # the graph model: the two output nodes trade names, so each output key reads the other head
    manifest = json.loads((bundle / mf.MANIFEST).read_text())
    [graph_artifact] = [a for a in manifest["artifacts"] if a["format"] == "tfjs_graph"]
    first, second = (node.split(":")[0] for node in list(graph_artifact["io"]["outputs"].values())[:2])
    graph = json.loads((bundle / "web/model/graph/model.json").read_text())
    nodes = {n["name"]: n for n in graph["modelTopology"]["node"]}
    nodes[first]["name"], nodes[second]["name"] = second, first
    replace_file(bundle, "web/model/graph/model.json", json.dumps(graph).encode())
    results = _results(bundle, runners, "litert,chromium-cpu")
    for rel in list(TFLITE.values()) + ["web/model/graph/model.json"]:
        assert results[rel].status == "failed", (rel, results[rel].golden, results[rel].error)


def test_a_model_of_another_seed_fails_every_rule(bundle_copy: Path, seed7_bundle: Path, runners) -> None:
    for rel in TFLITE.values():
        replace_file(bundle_copy, rel, (seed7_bundle / rel).read_bytes())
    for path in (seed7_bundle / "web/model/graph").iterdir():
        replace_file(bundle_copy, f"web/model/graph/{path.name}", path.read_bytes())
    results = _results(bundle_copy, runners, "litert,chromium-cpu")
    assert set(results) >= set(TFLITE.values()) | {"web/model/graph/model.json"}
    for rel in list(TFLITE.values()) + ["web/model/graph/model.json"]:
        assert results[rel].status == "failed", (rel, results[rel].golden)
