"""convert's stages (``convert.stages``): each artifact succeeds or is skipped with its reason, never the bundle,
and progress names every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convert.errors import DeployKitError
from edge import manifest as manifest_mod

pytestmark = pytest.mark.slow

BUCKETIZE = ("tensorflowjs cannot convert this model to a graph model: Unsupported Ops in the model before "
             "optimization Bucketize")


@pytest.fixture(scope="module")
def buckets(tmp_path_factory) -> tuple[Path, Path]:
    """A model tensorflowjs 4.22 cannot convert to a graph model (Discretization runs TF's Bucketize, which TFJS
    lacks) and TFLite can (BUCKETIZE is a builtin), with its DATA."""
    import keras

    folder = tmp_path_factory.mktemp("buckets")
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    bins = keras.layers.Discretization(bin_boundaries=[-1.0, 0.0, 1.0], output_mode="int", name="bins")(x)
    embedded = keras.layers.Flatten()(keras.layers.Embedding(4, 3, name="emb")(bins))
    model = keras.Model(x, keras.layers.Dense(1, name="head")(embedded), name="buckets")
    model.save(folder / "buckets.keras")
    np.savez(folder / "buckets.npz", x=np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32))
    return folder / "buckets.keras", folder / "buckets.npz"


def _convert(buckets: tuple[Path, Path], out: Path, variants, **extra):
    from convert.pipeline import ConvertOptions, convert

    seen: list[str] = []
    model, data = buckets
    result = convert(ConvertOptions(model=model, data=data, out=out, variants=variants, **extra), seen.append)
    return result, seen


def test_an_op_tensorflowjs_lacks_skips_the_graph_model_and_keeps_the_tflite_artifacts(buckets, tmp_path, monkeypatch):
    """A TFJS graph conversion that fails is a skip with its reason; the bundle keeps the TFLite artifacts."""
    from convert.tflite import Variant

    monkeypatch.delenv("DEPLOYKIT_DEBUG", raising=False)
    result, seen = _convert(buckets, tmp_path / "bundle", (Variant.FP32, Variant.INT8))
    manifest = manifest_mod.load(tmp_path / "bundle")
    manifest_mod.check_all_files(tmp_path / "bundle", manifest)
    assert [(a["format"], a["variant"]) for a in manifest["artifacts"]] == [("tflite", "float32"), ("tflite", "int8")]
    graph, layers = manifest["skipped"]
    assert graph == {"format": "tfjs_graph", "reason": BUCKETIZE}
    assert layers["format"] == "tfjs_layers" and "Discretization ('bins')" in layers["reason"]
    assert "graph model is still written" not in layers["reason"]  # it is not: the reason must be true
    assert {"artifact": "web/model/graph/", "format": "tfjs_graph", "variant": "float32", "bytes": None,
            "note": f"not written: {BUCKETIZE}"} in result.rows
    assert not (tmp_path / "bundle" / "web" / "model" / "graph").exists()
    assert result.warnings == [f"no TFJS model was written, so the web page cannot run this bundle (only "
                               f"deploykit-edge can): {BUCKETIZE}"]
    # one progress line per stage: fold, rounding and the folded export are no longer inside "Exporting"
    assert seen == ["Loading the model (safe_mode)", "Reading DATA",
                    "Running the reference model on DATA and the golden inputs", "Exporting the SavedModel",
                    "Folding the input scaling into the first layer", "GPTQ-rounding the int8 weights on DATA",
                    "Exporting the folded SavedModel", "Converting TFLite float32", "Converting TFLite int8",
                    "Judging TFLite int8 on calibration and held-out rows", "Converting the TFJS graph model",
                    "Writing the TFJS layers model", "Copying the web page", "Writing the manifest"]


def test_a_stage_that_fails_is_skipped_with_its_reason_and_the_rest_is_written(buckets, tmp_path, monkeypatch):
    from convert import tfjs_graph
    from convert.stages import tflite_variants
    from convert.tflite import Variant

    monkeypatch.delenv("DEPLOYKIT_DEBUG", raising=False)
    real = tflite_variants.convert_variant

    def convert_variant(source, variant, path, calibration):
        if variant is Variant.FP16:
            raise DeployKitError("forced float16 failure")
        return real(source, variant, path, calibration)

    def graph_fails(saved_model, out_dir, input_names=()):
        out_dir.mkdir(parents=True)
        (out_dir / "model.json").write_text("{")  # half-written: must not stay in the bundle
        raise RuntimeError("forced\ngraph failure")

    monkeypatch.setattr(tflite_variants, "convert_variant", convert_variant)
    monkeypatch.setattr(tfjs_graph, "write_graph_model", graph_fails)
    result, _ = _convert(buckets, tmp_path / "bundle", (Variant.FP32, Variant.FP16), layers_model=False)
    manifest = manifest_mod.load(tmp_path / "bundle")
    manifest_mod.check_all_files(tmp_path / "bundle", manifest)
    assert [(a["format"], a["variant"]) for a in manifest["artifacts"]] == [("tflite", "float32")]
    assert manifest["skipped"] == [{"format": "tflite", "variant": "float16", "reason": "forced float16 failure"},
                                   {"format": "tfjs_graph", "reason": "unexpected RuntimeError: forced"}]
    assert not (tmp_path / "bundle" / "edge" / "model.fp16.tflite").exists()
    assert not (tmp_path / "bundle" / "web" / "model" / "graph").exists()
    assert "web/model/graph/model.json" not in manifest["files"]


def test_a_convert_where_every_artifact_fails_names_each_reason_and_writes_nothing(buckets, tmp_path, monkeypatch):
    from convert import tfjs_graph
    from convert.stages import tflite_variants
    from convert.tflite import Variant

    monkeypatch.delenv("DEPLOYKIT_DEBUG", raising=False)

    def fails(*args):
        raise DeployKitError("forced")

    monkeypatch.setattr(tflite_variants, "convert_variant", fails)
    monkeypatch.setattr(tfjs_graph, "write_graph_model", fails)
    with pytest.raises(DeployKitError) as error:
        _convert(buckets, tmp_path / "bundle", (Variant.FP32,), layers_model=False)
    assert str(error.value) == "no artifact could be written (tflite float32: forced; tfjs_graph: forced)"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def half(tmp_path_factory) -> tuple[Path, Path]:
    """A model built under the mixed_float16 policy (as trained on a GPU): its Dense layers compute in float16,
    which the TFLite converter cannot convert with builtins; tensorflowjs can."""
    import keras

    folder = tmp_path_factory.mktemp("half")
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = keras.Input((3,), name="x")
        model = keras.Model(x, keras.layers.Dense(1, name="head")(keras.layers.Dense(4, name="hidden")(x)), name="half")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.save(folder / "half.keras")
    np.savez(folder / "half.npz", x=np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))
    return folder / "half.keras", folder / "half.npz"


def test_no_tflite_artifact_is_a_failed_step_and_a_warning_that_the_edge_runner_cannot_serve_it(half, tmp_path,
                                                                                                 monkeypatch):
    from tests.helpers import run_cli

    monkeypatch.delenv("DEPLOYKIT_DEBUG", raising=False)
    model, data = half
    result = run_cli("convert", model, "--data", data, "--out", tmp_path / "bundle")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for variant in ("float32", "float16", "dynamic", "int8", "int16x8"):
        assert any(line.startswith(f"✗ Converting TFLite {variant}: not written (") for line in lines), result.stderr
    assert not [line for line in lines if line.startswith("✓ Converting TFLite")], result.stderr
    assert "✓ Converting the TFJS graph model (" in result.stderr
    warnings = [line for line in lines if line.startswith("Warning: ")]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(
        "Warning: no TFLite artifact was written, so deploykit-edge cannot serve this bundle (only the web page can): "
        "the TFLite converter cannot make float32: 'tf.MatMul' op is neither a custom op nor a flex op (at "), warnings
    assert "on float16 tensors). TFLite has no float16 kernel for it: re-save a mixed_float16 model under the " \
           "float32 dtype policy" in warnings[0]
    assert "Error" not in result.stderr and "Traceback" not in result.stderr
    manifest = manifest_mod.load(tmp_path / "bundle")
    assert [a["format"] for a in manifest["artifacts"]] == ["tfjs_graph"]
    assert not list((tmp_path / "bundle" / "edge").glob("*.tflite"))
