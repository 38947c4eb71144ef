"""The kernel table (edge/_kernels.py): one model per entry, built with TF, refused by the kit where the table
says so, and shown to fail (or run) in the real runtime without the kit's check, so a wrong entry fails here.

tflite-runtime 2.14 runs in its own venv (convert.parity.envs, as `deploykit verify` does); ai-edge-litert is the
development environment's own interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edge import interpreter as it
from edge import tflite_file
from edge._kernels import KERNEL_NEEDS
from edge.errors import RuntimeTooOld

pytestmark = pytest.mark.slow

REL = "edge/model.int16x8.tflite"


def _models() -> dict[str, tuple[Callable[[], Any], str]]:
    """Entry key -> (Keras model builder, variant) that makes the converter emit that kernel."""
    import keras

    layers = keras.layers

    def one(shape: tuple[int, ...], f: Callable[[Any], Any]) -> Callable[[], Any]:
        def build() -> Any:
            x = keras.Input(shape, name="x")
            return keras.Model(x, f(x))
        return build

    def sq_diff() -> Any:
        a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
        return keras.Model([a, b], keras.ops.square(a - b))

    return {
        "GELU/int16": (one((8,), layers.Activation("gelu")), "int16x8"),
        "TILE/int16": (one((4, 4, 2), layers.UpSampling2D(2)), "int16x8"),  # nearest upsampling -> TILE
        "RSQRT/int16": (one((8,), lambda x: keras.ops.rsqrt(keras.ops.abs(x) + 1.0)), "int16x8"),
        "SQUARED_DIFFERENCE/int16": (sq_diff, "int16x8"),
        "LOG/v2": (one((8,), lambda x: keras.ops.log(keras.ops.abs(x) + 1.0)), "int8"),
    }


def _key(need: Any) -> str:
    return f"{need.op}/{need.input_type}" if need.input_type else f"{need.op}/v{need.version}"


def test_every_entry_has_a_model() -> None:
    assert sorted(_key(n) for n in KERNEL_NEEDS) == sorted(_models())


def _convert(model: Any, variant: str, work: Path) -> bytes:
    """The stock TFLite converter (what the table is about), float32 inputs and outputs."""
    import tensorflow as tf

    saved = work / "saved_model"
    model.export(str(saved), verbose=False)
    rng = np.random.default_rng(0)
    shapes = [(t.name, (1, *t.shape[1:])) for t in model.inputs]

    def representative() -> Any:
        for _ in range(32):
            yield {name: rng.normal(0, 2, shape).astype("float32") for name, shape in shapes}

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if variant == "int8"
        else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    return converter.convert()


@pytest.fixture(scope="module")
def kernel_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    out = {}
    for key, (build, variant) in _models().items():
        keras.utils.set_random_seed(0)
        work = tmp_path_factory.mktemp(key.replace("/", "_"))
        path = work / "model.tflite"
        path.write_bytes(_convert(build(), variant, work))
        out[key] = path
    return out


# The device's view: the kit's refusal (make_interpreter) and the bare interpreter without the kit's check.
PROBE = """
import json, sys
import numpy as np
from edge.errors import EdgeError
from edge.interpreter import make_interpreter, pick

runtime = pick(sys.argv[1])
out = {"version": runtime.version}
for key, path in json.loads(sys.argv[2]).items():
    try:
        make_interpreter(runtime, path, %r)
        kit = "loaded"
    except EdgeError as exc:
        kit = str(exc)
    try:
        bare = runtime.interpreter_class(model_path=path)
        bare.allocate_tensors()
        for d in bare.get_input_details():
            bare.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
        bare.invoke()
        raw = "ran"
    except Exception as exc:
        raw = "failed: " + " ".join(str(exc).split())[:200]
    out[key] = {"kit": kit, "raw": raw}
print(json.dumps(out))
""" % REL


def _probe(python: str, runtime: str, models: dict[str, Path]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} if "tflite" in runtime else None
    r = subprocess.run([python, "-c", PROBE, runtime, json.dumps({k: str(v) for k, v in models.items()})],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def on_2_14(kernel_models: dict[str, Path]) -> dict[str, Any]:
    from convert.parity.envs import ensure

    env = ensure("tflite-runtime")
    result = _probe(str(env.python), "tflite_runtime", kernel_models)
    assert result["version"] == "2.14.0"
    return result


@pytest.fixture(scope="module")
def on_litert(kernel_models: dict[str, Path]) -> dict[str, Any]:
    import sys

    return _probe(sys.executable, "ai_edge_litert", kernel_models)


CHECKED = "checked tflite-runtime 2.14, TensorFlow 2.19, ai-edge-litert 2.3.0"
ON_2_14 = {
    "GELU/int16": f"{REL} runs GELU on int16 tensors, which needs ai-edge-litert >= 1.3.0 (no TensorFlow Lite release "
                  f"has that kernel; {CHECKED}); the installed interpreter is tflite_runtime 2.14.0; use ai-edge-litert "
                  "(64-bit OS) or another variant",
    "TILE/int16": f"{REL} runs TILE on int16 tensors, which needs ai-edge-litert >= 2.1.3 (no TensorFlow Lite release "
                  f"has that kernel; {CHECKED}); the installed interpreter is tflite_runtime 2.14.0; use ai-edge-litert "
                  "(64-bit OS) or another variant",
    "RSQRT/int16": f"{REL} runs RSQRT on int16 tensors, which needs TFLite runtime >= 2.15.0; the installed interpreter "
                   "is tflite_runtime 2.14.0; use ai-edge-litert (64-bit OS) or another variant",
    "SQUARED_DIFFERENCE/int16": f"{REL} runs SQUARED_DIFFERENCE on int16 tensors, which no TFLite runtime has a kernel "
                                f"for ({CHECKED}); use another variant",
    "LOG/v2": f"{REL} runs LOG version 2, which needs TFLite runtime >= 2.15.0; the installed interpreter is "
              "tflite_runtime 2.14.0; use ai-edge-litert (64-bit OS) or another variant",
}


@pytest.mark.parametrize("key", sorted(ON_2_14))
def test_the_table_finds_the_kernel(kernel_models: dict[str, Path], key: str) -> None:
    need = next(n for n in KERNEL_NEEDS if _key(n) == key)
    found = tflite_file.kernel_needs(kernel_models[key])
    assert [f["op"] for f in found] == [need.op]
    assert found[0]["min_tflite_runtime"] == need.tflite and found[0]["min_ai_edge_litert"] == need.ai_edge_litert


@pytest.mark.parametrize("key", sorted(ON_2_14))
def test_tflite_runtime_2_14_refuses_with_the_kits_message(on_2_14: dict[str, Any], key: str) -> None:
    assert on_2_14[key]["kit"] == ON_2_14[key]
    # the entry is true: without the kit's check, 2.14 loads the model and fails (at prepare or first invoke)
    assert on_2_14[key]["raw"].startswith("failed: "), on_2_14[key]["raw"]


@pytest.mark.parametrize("key", sorted(ON_2_14))
def test_litert_runs_what_the_table_allows(on_litert: dict[str, Any], key: str) -> None:
    if key == "SQUARED_DIFFERENCE/int16":  # no runtime has the int16 kernel: the kit refuses, the bare run fails
        assert on_litert[key]["kit"] == ON_2_14[key]
        assert on_litert[key]["raw"].startswith("failed: SquaredDifference only supports FLOAT32 and INT32")
        return
    assert on_litert[key] == {"kit": "loaded", "raw": "ran"}


def test_an_older_litert_is_refused_from_the_manifest() -> None:
    need = {"op": "TILE", "input_type": "int16", "min_tflite_runtime": None, "min_ai_edge_litert": "2.1.3"}
    artifact = {"path": REL, "runtime": {"min_tflite_runtime": "2.3.0", "kernels": [need]}}
    ok, reason = it.can_run(artifact, "ai_edge_litert", "2.1.0")
    assert not ok
    assert reason == (f"{REL} runs TILE on int16 tensors, which needs ai-edge-litert >= 2.1.3; the installed "
                      "interpreter is ai_edge_litert 2.1.0; pip install -U ai-edge-litert or another variant")
    assert it.can_run(artifact, "ai_edge_litert", "2.3.0")[0]
    ok, reason = it.can_run(artifact, "tensorflow", "2.19.0")
    assert not ok and reason.startswith(f"{REL} runs TILE on int16 tensors, which needs ai-edge-litert >= 2.1.3 (no ")


def test_convert_records_the_needs_in_the_manifest(kernel_models: dict[str, Path]) -> None:
    from convert.stages.tflite_variants import runtime_of as _runtime
    from convert.tflite import operators

    gelu = _runtime(kernel_models["GELU/int16"], operators(kernel_models["GELU/int16"].read_bytes()))
    assert gelu["kernels"] == [{"op": "GELU", "input_type": "int16", "min_tflite_runtime": None,
                                "min_ai_edge_litert": "1.3.0"}]
    rsqrt = _runtime(kernel_models["RSQRT/int16"], operators(kernel_models["RSQRT/int16"].read_bytes()))
    # the converter's own metadata says 1.13.0; the table raises it
    assert tflite_file.tflite_metadata(kernel_models["RSQRT/int16"])["min_runtime_version"].rstrip(b"\0") == b"1.13.0"
    assert rsqrt["min_tflite_runtime"] == "2.15.0"
    artifact = {"path": REL, "runtime": rsqrt}
    assert not it.can_run(artifact, "tflite_runtime", "2.14.0")[0]
    assert it.can_run(artifact, "ai_edge_litert", "2.3.0")[0]


def test_make_interpreter_refuses_before_creating_the_interpreter(kernel_models: dict[str, Path]) -> None:
    runtime = it.Runtime("tflite_runtime", "2.14.0", "2.14.0", lambda **kw: pytest.fail("the interpreter was created"))
    with pytest.raises(RuntimeTooOld) as caught:
        it.make_interpreter(runtime, kernel_models["GELU/int16"], REL)
    assert str(caught.value) == ON_2_14["GELU/int16"]
