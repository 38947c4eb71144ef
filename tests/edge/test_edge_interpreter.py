"""edge.interpreter: picking, the flatbuffer op reader, runtime-need checks."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from edge import interpreter as it
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


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8", "int16x8"])
def test_tflite_ops_match_the_schema_reader(bundle: Path, variant: str) -> None:
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    manifest = json.loads((bundle / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["format"] == "tflite" and a["variant"] == variant)
    path = bundle / artifact["path"]
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    expected = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        expected.add((names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())], code.Version()))
    ops = it.tflite_ops(path)
    assert ops == [{"name": n, "version": v} for n, v in sorted(expected)]
    assert "FULLY_CONNECTED" in {o["name"] for o in ops}


def test_tflite_min_runtime_reads_the_metadata(bundle: Path) -> None:
    version = it.tflite_min_runtime(bundle / "edge/model.fp32.tflite")
    assert version is None or it.parse_version(version) >= (1, 0, 0)


def test_tflite_ops_refuses_a_non_model(tmp_path: Path) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(EdgeError, match="is not a TFLite model"):
        it.tflite_ops(bad)


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
    model = it._model(path)
    for code in model.tables(it._MODEL_OPERATOR_CODES):
        number = max(code.scalar(it._OPCODE_BUILTIN, "i", 0), code.scalar(it._OPCODE_DEPRECATED, "b", 0))
        if it.op_name(number) == op:
            at = code._field(it._OPCODE_VERSION)
            assert at, "version field is stored"
            struct.pack_into("<i", buf, at, version)
    path.write_bytes(bytes(buf))


def test_op_version_the_runtime_lacks_is_runtime_too_old(bundle_copy: Path) -> None:
    from edge.manifest import sha256_file

    model = bundle_copy / "edge/model.int8.tflite"
    _patch_op_version(model, "FULLY_CONNECTED", 99)
    assert {"name": "FULLY_CONNECTED", "version": 99} in it.tflite_ops(model)

    def fix(m: dict) -> None:
        for a in m["artifacts"]:
            if a["path"] == "edge/model.int8.tflite":
                a["sha256"] = sha256_file(model)

    rewrite_manifest(bundle_copy, fix)
    with pytest.raises(RuntimeTooOld, match=r"edge/model.int8.tflite uses op FULLY_CONNECTED version 99, which ai_edge_litert [\d.]+ does not have"):
        Predictor(bundle_copy, "int8")
