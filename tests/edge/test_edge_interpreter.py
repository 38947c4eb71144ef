"""edge.interpreter: picking, the flatbuffer op reader, runtime-need checks."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from edge import interpreter as it
from edge import tflite_file
from edge.errors import EdgeError, RuntimeTooOld
from edge.runner import Predictor

from edge_helpers import rewrite_manifest


def test_pick_prefers_ai_edge_litert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(it.RUNTIME_ENV, raising=False)
    runtime = it.pick()
    assert runtime.name == "ai_edge_litert"
    assert runtime.version[0].isdigit()


def test_pick_unknown_runtime_is_a_clear_error() -> None:
    with pytest.raises(EdgeError, match="unknown runtime 'nope'; choose one of ai_edge_litert, tflite_runtime, tensorflow"):
        it.pick("nope")


VARIANTS = ["float32", "float16", "dynamic", "int8", "int16x8"]


def _schema_view(bundle: Path, variant: str) -> tuple[object, object, Path, dict[int, str]]:
    """LiteRT's generated schema module, the variant's model read through it, its path and the operator names
    by builtin code: the independent reader the kit's own is checked against."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    manifest = json.loads((bundle / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["format"] == "tflite" and a["variant"] == variant)
    path = bundle / artifact["path"]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return schema, schema.Model.GetRootAs(path.read_bytes(), 0), path, names


@pytest.mark.parametrize("variant", VARIANTS)
def test_tflite_ops_match_the_schema_reader(bundle: Path, variant: str) -> None:
    _, model, path, names = _schema_view(bundle, variant)
    expected = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        expected.add((names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())], code.Version()))
    ops = tflite_file.tflite_ops(path)
    assert ops == [{"name": n, "version": v} for n, v in sorted(expected)]
    assert "FULLY_CONNECTED" in {o["name"] for o in ops}


def test_tflite_min_runtime_reads_the_metadata(bundle: Path) -> None:
    version = tflite_file.tflite_min_runtime(bundle / "edge/model.fp32.tflite")
    assert version is None or tflite_file.parse_version(version) >= (1, 0, 0)


def test_tflite_ops_refuses_a_non_model(tmp_path: Path) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(EdgeError, match="is not a TFLite model"):
        tflite_file.tflite_ops(bad)


@pytest.mark.parametrize(
    "needs, runtime, version, ok",
    [
        ({}, "tflite_runtime", "2.14.0", True),
        ({"min_tflite_runtime": "2.14.0"}, "tflite_runtime", "2.14.0", True),
        ({"min_tflite_runtime": "2.15.0"}, "tflite_runtime", "2.14.0", False),
        ({"min_tflite_runtime": "1.14.0"}, "tflite_runtime", "2.14.0", True),
        ({"min_tflite_runtime": "2.18.0"}, "ai_edge_litert", "1.0.1", True),
        ({"min_tflite_runtime": "2.30.0"}, "ai_edge_litert", "2.3.0", False),
        ({"min_tflite_runtime": "garbage"}, "tflite_runtime", "2.14.0", True),
    ],
)
def test_can_run(needs: dict, runtime: str, version: str, ok: bool) -> None:
    artifact = {"path": "edge/model.fp32.tflite", "runtime": needs}
    result, reason = it.can_run(artifact, runtime, version)
    assert result is ok, reason
    if not ok:
        assert reason.startswith(f"edge/model.fp32.tflite needs TFLite runtime >= {needs['min_tflite_runtime']}")


def test_runtime_too_old_is_refused_before_loading(bundle_copy: Path) -> None:
    def bump(m: dict) -> None:
        for a in m["artifacts"]:
            a["runtime"] = {**(a.get("runtime") or {}), "min_tflite_runtime": "99.0.0"}

    rewrite_manifest(bundle_copy, bump)
    with pytest.raises(RuntimeTooOld, match=r"edge/model.fp32.tflite needs TFLite runtime >= 99.0.0, the installed interpreter is ai_edge_litert"):
        Predictor(bundle_copy, "float32")


def _patch_op_version(path: Path, op: str, version: int) -> None:
    """Rewrite one operator code's version field inside the flatbuffer (in place)."""
    buf = bytearray(path.read_bytes())
    model = tflite_file._model(path)
    for code in model.tables(tflite_file._MODEL_OPERATOR_CODES):
        number = max(code.scalar(tflite_file._OPCODE_BUILTIN, "i", 0), code.scalar(tflite_file._OPCODE_DEPRECATED, "b", 0))
        if tflite_file.op_name(number) == op:
            at = code._field(tflite_file._OPCODE_VERSION)
            assert at, "version field is stored"
            struct.pack_into("<i", buf, at, version)
    path.write_bytes(bytes(buf))


def test_op_version_the_runtime_lacks_is_runtime_too_old(bundle_copy: Path) -> None:
    from edge.manifest import sha256_file

    model = bundle_copy / "edge/model.int8.tflite"
    _patch_op_version(model, "FULLY_CONNECTED", 99)
    assert {"name": "FULLY_CONNECTED", "version": 99} in tflite_file.tflite_ops(model)

    def fix(m: dict) -> None:
        for a in m["artifacts"]:
            if a["path"] == "edge/model.int8.tflite":
                a["sha256"] = sha256_file(model)

    rewrite_manifest(bundle_copy, fix)
    with pytest.raises(RuntimeTooOld, match=r"edge/model.int8.tflite uses op FULLY_CONNECTED version 99, which ai_edge_litert [\d.]+ does not have"):
        Predictor(bundle_copy, "int8")


TENSOR_TYPE_NAMES = {"FLOAT32": "float32", "FLOAT16": "float16", "INT32": "int32", "UINT8": "uint8", "INT64": "int64",
                     "STRING": "string", "BOOL": "bool", "INT16": "int16", "INT8": "int8"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_tflite_kernels_match_the_schema_reader(bundle: Path, variant: str) -> None:
    schema, model, path, ops = _schema_view(bundle, variant)
    types = {v: TENSOR_TYPE_NAMES.get(k, k.lower()) for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    expected = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = ops[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            ins = tuple(types[graph.Tensors(i).Type()] if i >= 0 else None for i in op.InputsAsNumpy())
            outs = tuple(types[graph.Tensors(i).Type()] for i in op.OutputsAsNumpy())
            expected.add((name, code.Version(), ins, outs))
    got = {(k["name"], k["version"], tuple(k["inputs"]), tuple(k["outputs"])) for k in tflite_file.tflite_kernels(path)}
    assert got == expected
    assert len(tflite_file.tflite_kernels(path)) == len(expected)


def test_the_boston_bundle_needs_no_table_kernel(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["format"] == "tflite":
            assert tflite_file.kernel_needs(bundle / a["path"]) == []
            assert it.can_run(a, "tflite_runtime", "2.14.0")[0], a["path"]


GELU16 = {"op": "GELU", "input_type": "int16", "min_tflite_runtime": None, "min_ai_edge_litert": "1.3.0"}
RSQRT16 = {"op": "RSQRT", "input_type": "int16", "min_tflite_runtime": "2.15.0", "min_ai_edge_litert": "1.0.0"}
NOWHERE = {"op": "SQUARED_DIFFERENCE", "input_type": "int16", "min_tflite_runtime": None, "min_ai_edge_litert": None}
LOG2 = {"op": "LOG", "version": 2, "min_tflite_runtime": "2.15.0", "min_ai_edge_litert": "1.0.0"}
REL = "edge/model.int16x8.tflite"
CHECKED = "checked tflite-runtime 2.14, TensorFlow 2.19, ai-edge-litert 2.3.0"


@pytest.mark.parametrize(
    "need, runtime, version, reason",
    [
        (GELU16, "tflite_runtime", "2.14.0",
         f"{REL} runs GELU on int16 tensors, which needs ai-edge-litert >= 1.3.0 (no TensorFlow Lite release has that "
         f"kernel; {CHECKED}); the installed interpreter is tflite_runtime 2.14.0; use ai-edge-litert (64-bit OS) or "
         "another variant"),
        (GELU16, "tensorflow", "2.19.0",
         f"{REL} runs GELU on int16 tensors, which needs ai-edge-litert >= 1.3.0 (no TensorFlow Lite release has that "
         f"kernel; {CHECKED}); the installed interpreter is tensorflow 2.19.0; use ai-edge-litert (64-bit OS) or "
         "another variant"),
        (GELU16, "ai_edge_litert", "1.2.0",
         f"{REL} runs GELU on int16 tensors, which needs ai-edge-litert >= 1.3.0; the installed interpreter is "
         "ai_edge_litert 1.2.0; pip install -U ai-edge-litert or another variant"),
        (GELU16, "ai_edge_litert", "1.3.0", None),
        (RSQRT16, "tflite_runtime", "2.14.0",
         f"{REL} runs RSQRT on int16 tensors, which needs TFLite runtime >= 2.15.0; the installed interpreter is "
         "tflite_runtime 2.14.0; use ai-edge-litert (64-bit OS) or another variant"),
        (RSQRT16, "tensorflow", "2.15.0", None),
        (RSQRT16, "ai_edge_litert", "2.3.0", None),
        (LOG2, "tflite_runtime", "2.14.0",
         f"{REL} runs LOG version 2, which needs TFLite runtime >= 2.15.0; the installed interpreter is tflite_runtime "
         "2.14.0; use ai-edge-litert (64-bit OS) or another variant"),
        (NOWHERE, "ai_edge_litert", "2.3.0",
         f"{REL} runs SQUARED_DIFFERENCE on int16 tensors, which no TFLite runtime has a kernel for ({CHECKED}); "
         "use another variant"),
        (NOWHERE, "tflite_runtime", "2.14.0",
         f"{REL} runs SQUARED_DIFFERENCE on int16 tensors, which no TFLite runtime has a kernel for ({CHECKED}); "
         "use another variant"),
    ],
)
def test_can_run_checks_the_manifests_kernels(need: dict, runtime: str, version: str, reason: str | None) -> None:
    artifact = {"path": REL, "runtime": {"min_tflite_runtime": "2.3.0", "kernels": [need]}}
    ok, why = it.can_run(artifact, runtime, version)
    if reason is None:
        assert ok, why
    else:
        assert (ok, why) == (False, reason)
