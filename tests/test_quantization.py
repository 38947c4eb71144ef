"""Quantized variants judged at convert time (convert.acceptance), the int8 mixed-precision search
(convert.mixed_precision), and the fold of SavedModel sources (convert.fold.fold_saved_model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edge import manifest as manifest_mod
from tests.helpers import BOSTON_CSV, run_cli

QUANTIZED = ("dynamic", "int8", "int16x8")


def _tflite(bundle: Path) -> dict[str, dict]:
    return {a["variant"]: a for a in manifest_mod.load(bundle)["artifacts"] if a["format"] == "tflite"}


def _litert(path: Path, inputs: dict[str, np.ndarray], transforms) -> dict[str, np.ndarray]:
    """An independent run (LiteRT, row by row) of an artifact, fed as the runner feeds it."""
    from ai_edge_litert.interpreter import Interpreter

    from edge.transform import apply

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    fed = apply(transforms, inputs)
    total = len(next(iter(fed.values())))
    rows = [runner(**{k: v[i:i + 1] for k, v in fed.items()}) for i in range(total)]
    return {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}


def _held_out(bundle: Path, data: dict[str, np.ndarray], seed: int | None = None) -> dict[str, np.ndarray]:
    from convert.acceptance import split_rows

    golden = json.loads((bundle / "golden.json").read_text())
    g = {k: np.asarray(v, dtype=data[k].dtype) for k, v in golden["inputs"].items()}
    _, held = split_rows(data, g, seed)
    return {k: v[held] for k, v in data.items()}


def _layernorm_mlp(out: Path) -> tuple[Path, Path]:
    """A Keras-guide style regressor: Dense + LayerNormalization twice (plain int8 misses 1%: 2.7%)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (1200, 8)).astype("float32")
    y = (np.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3] + 0.5 * x[:, 3:4]).astype("float32")
    inputs = keras.Input((8,), name="x")
    # every layer named: automatic names count up per process and other tests assert theirs
    h = keras.layers.Dense(64, activation="relu", name="ln_dense_1")(inputs)
    h = keras.layers.LayerNormalization(name="ln_norm_1")(h)
    h = keras.layers.Dense(64, activation="relu", name="ln_dense_2")(h)
    h = keras.layers.LayerNormalization(name="ln_norm_2")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="y")(h), name="layernorm_mlp")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    model.save(out / "ln.keras")
    np.savez(out / "ln.npz", x=x)
    return out / "ln.keras", out / "ln.npz"


def _conv1d(out: Path) -> tuple[Path, Path]:
    """A Conv1D regressor over 32 steps of 2 channels."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rng.normal(0, 1, (1200, 8))  # the same draws as the LayerNorm model's DATA come first
    seq = rng.normal(0, 1, (1000, 32, 2)).astype("float32")
    target = (seq[:, :, 0].mean(1, keepdims=True) * 3 + np.abs(seq[:, :, 1]).max(1, keepdims=True)).astype("float32")
    inputs = keras.Input((32, 2), name="seq")
    h = keras.layers.Conv1D(16, 5, activation="relu", name="c1_conv_1")(inputs)
    h = keras.layers.Conv1D(16, 5, activation="relu", name="c1_conv_2")(h)
    h = keras.layers.GlobalMaxPooling1D(name="c1_pool")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="c1_out")(h), name="conv1d")
    model.compile("adam", "mse")
    model.fit(seq, target, epochs=10, verbose=0)
    model.save(out / "c1.keras")
    np.savez(out / "c1.npz", seq=seq)
    return out / "c1.keras", out / "c1.npz"


# --- the split and the manifest fields ---------------------------------------------------------------------------

def test_every_fifth_row_is_held_apart_except_golden_rows():
    from convert.acceptance import HELD_OUT_EVERY, split_rows

    data = {"x": np.arange(100, dtype=np.float32).reshape(50, 2)}
    golden = {"x": data["x"][[0, 10, 20]]}
    calibration, held = split_rows(data, golden, seed=3)
    offset = int(np.random.default_rng(3).integers(HELD_OUT_EVERY))
    assert held.tolist() == [i for i in range(offset, 50, 5) if i not in (0, 10, 20)]
    assert sorted(calibration.tolist() + held.tolist()) == list(range(50))
    again = split_rows(data, golden, seed=3)
    assert [a.tolist() for a in again] == [calibration.tolist(), held.tolist()], "the split is deterministic"
    tiny = {"x": np.zeros((9, 2), np.float32)}
    assert split_rows(tiny, {}, seed=None)[1].tolist() == [], "nothing is held out of fewer than 10 rows"


def test_a_verdict_without_held_out_rows_says_so():
    """It said "0.000% on 0 held-out rows", as if unseen rows had been judged."""
    from convert.acceptance import Verdict

    calibration = {"rows": 16, "range_fraction": 0.002, "top1": None, "passed": True, "failures": []}
    none = {"rows": 0, "range_fraction": 0.0, "top1": None, "passed": True, "failures": []}
    assert Verdict(calibration, none).summary() == (
        "max error 0.200% on 16 calibration rows; no held-out rows (DATA's rows all went to calibration: under 10 "
        "rows, or each a golden row; pass more rows to judge unseen ones)")
    assert Verdict(calibration, {**none, "rows": 4}).summary() == (
        "max error 0.200% on 16 calibration rows, 0.000% on 4 held-out rows")


def test_schema_requires_a_rejection_exactly_when_rejected(boston_linear_bundle):
    import jsonschema

    manifest = manifest_mod.load(boston_linear_bundle)
    int8 = next(a for a in manifest["artifacts"] if a["variant"] == "int8")
    schema = json.loads((Path(manifest_mod.__file__).parent / "manifest.schema.json").read_text())
    jsonschema.validate(manifest, schema)
    int8["status"] = "rejected"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)
    int8["rejection"] = "misses its bound (max error 1.200% on 442 calibration rows, 0.900% on 97 held-out rows)"
    jsonschema.validate(manifest, schema)
    int8["status"] = "accepted"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)
    del int8["rejection"]
    int8["measured"]["held_out"]["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)


@pytest.mark.parametrize("which", ["mlp", "linear"])
def test_boston_bundles_are_accepted_all_integer(which, request):
    bundle = request.getfixturevalue(f"boston_{which}_bundle")
    tflite = _tflite(bundle)
    assert {v: a["status"] for v, a in tflite.items()} == dict.fromkeys(tflite, "accepted")
    for variant in QUANTIZED:
        artifact = tflite[variant]
        measured = artifact["measured"]
        assert measured["calibration"]["rows"] > 400 and measured["held_out"]["rows"] > 90
        assert max(m["range_fraction"] for m in measured.values()) <= 0.01
        assert measured["held_out"]["top1"] is None, "a regression has no top-1"
        assert re.search(r"accepted: max error \d\.\d{3}% on \d+ calibration rows, \d\.\d{3}% on \d+ held-out rows$",
                         artifact["note"]), artifact["note"]
        assert "rejection" not in artifact
    for variant in ("int8", "int16x8"):
        assert tflite[variant]["integer_only"] is True
        assert tflite[variant]["float_ops"] == [] and tflite[variant]["float_ops_bytes"] == 0
    assert tflite["dynamic"]["integer_only"] is False, "dynamic range computes in float"
    assert "measured" not in tflite["float32"], "float variants are judged by verify, not measured at convert time"


# --- the mixed-precision search -----------------------------------------------------------------------------------

def test_layernorm_int8_is_accepted_after_keeping_operators_in_float(tmp_path):
    """Plain int8 of a LayerNorm MLP misses 1% (2.7% on calibration rows); the search keeps some operators in float
    and the artifact holds the bound on rows calibration never saw, measured here again with LiteRT."""
    import keras

    from convert.mixed_precision import integer_only

    model_path, data_path = _layernorm_mlp(tmp_path)
    result = run_cli("convert", model_path, "--data", data_path, "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    int8 = _tflite(tmp_path / "b")["int8"]
    assert int8["status"] == "accepted"
    assert int8["float_ops"] and int8["integer_only"] is False
    assert int8["float_ops_bytes"] > 0
    match = re.search(r"accepted after (\d+) of (\d+) operators kept in float by the mixed-precision search "
                      r"\(\+[\d,]+ bytes vs all-integer; max error (\d\.\d{3})% on \d+ calibration rows, "
                      r"(\d\.\d{3})% on \d+ held-out rows\)$", int8["note"])
    assert match, int8["note"]
    assert int(match[1]) == len(int8["float_ops"]) < int(match[2])
    assert not integer_only((tmp_path / "b" / int8["path"]).read_bytes())
    data = {"x": np.load(data_path)["x"]}
    held = _held_out(tmp_path / "b", data)
    reference = keras.models.load_model(model_path).predict(held["x"], verbose=0)
    actual = _litert(tmp_path / "b" / int8["path"], held, int8["input_transform"])["output_0"]
    lo, hi = manifest_mod.load(tmp_path / "b")["outputs"][0]["range"]
    error = float(np.abs(actual - reference).max()) / (hi - lo)
    assert error <= 0.01, f"held-out error {error:.3%} > 1%"
    assert error == pytest.approx(int8["measured"]["held_out"]["range_fraction"], rel=0.05, abs=2e-4)


def test_a_variant_that_cannot_hold_is_written_rejected_with_its_numbers(tmp_path):
    """Conv1D regressor: int8 holds after the search; int16x8 (no search: TF's int16x8 quantizer takes no
    float list) misses on held-out rows (1.65% measured) and is still written, marked rejected."""
    model_path, data_path = _conv1d(tmp_path)
    result = run_cli("convert", model_path, "--data", data_path, "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    tflite = _tflite(tmp_path / "b")
    assert tflite["int8"]["status"] == "accepted" and tflite["int8"]["float_ops"]
    int16 = tflite["int16x8"]
    assert int16["status"] == "rejected"
    assert (tmp_path / "b" / int16["path"]).is_file(), "a rejected artifact is still written"
    held = int16["measured"]["held_out"]["range_fraction"]
    calib = int16["measured"]["calibration"]["range_fraction"]
    assert held > 0.01
    rows = int16["measured"]["held_out"]["rows"], int16["measured"]["calibration"]["rows"]
    name = manifest_mod.load(tmp_path / "b")["outputs"][0]["name"]
    assert int16["rejection"] == (
        f"misses its bound (max error {calib:.3%} on {rows[1]} calibration rows, {held:.3%} on {rows[0]} held-out rows); "
        f"held-out rows: {name}: max error {held:.3%} of the output range > 1% (the mixed-precision search covers "
        "int8 only: TF's int16x8 quantizer takes no list of operators to keep in float)")
    assert int16["note"].endswith("rejected: " + int16["rejection"])
    assert "rejected: misses its bound" in result.stdout, "the convert table shows the verdict"


def test_int8_that_the_search_cannot_fix_in_its_budget_is_rejected(tmp_path, monkeypatch):
    """With no trials left the LayerNorm int8 stays as the converter made it and is rejected with its numbers."""
    from convert import mixed_precision
    from convert.mixed_precision import integer_only
    from convert.pipeline import ConvertOptions, convert
    from convert.tflite import Variant

    model_path, data_path = _layernorm_mlp(tmp_path)
    monkeypatch.setattr(mixed_precision, "MAX_TRIALS", 0)
    monkeypatch.setattr(mixed_precision, "MAX_PROBES", 2)
    result = convert(ConvertOptions(model=model_path, data=data_path, out=tmp_path / "b", variants=(Variant.INT8,),
                                    layers_model=False))
    int8 = next(a for a in result.manifest["artifacts"] if a["variant"] == "int8")
    assert int8["status"] == "rejected" and int8["float_ops"] == [] and int8["float_ops_bytes"] == 0
    # the converter itself leaves the LayerNorm's NEG in float: integer_only says what the file holds
    assert int8["integer_only"] is integer_only((tmp_path / "b" / int8["path"]).read_bytes()) is False
    assert re.fullmatch(r"misses its bound \(max error \d\.\d{3}% on \d+ calibration rows, \d\.\d{3}% on \d+ held-out "
                        r"rows\); (calibration|held-out) rows: y: .*; with up to \d+ operators in float the mixed-precision search "
                        r"measured at best \d\.\d{3}% \(0 trials, \d+ s\); searched from all \d+ operators in float with "
                        r"the weights before GPTQ rounding: at best \d\.\d{3}% \(0 trials, \d+ s\)", int8["rejection"]), int8["rejection"]
    assert int8["measured"]["calibration"]["range_fraction"] > 0.01


def test_search_keeps_the_fewest_of_a_ranking_and_respects_its_budget():
    """The search on a synthetic rule: the bound holds iff operators b and d are both in float."""
    from convert.mixed_precision import search

    verdict, quantize, accept = _rule({"b", "d"}, miss=lambda nodes: 0.02 - 0.001 * len(nodes))

    plain = verdict(False, 0.03)
    result = search(["a", "b", "c", "d", "e", "f"], quantize, accept, b"", plain)
    assert result.passed and sorted(result.float_ops) == ["b", "d"]
    assert result.trials <= 12
    starved = search(["a", "b", "c", "d", "e", "f"], quantize, accept, b"", plain, max_trials=2)
    assert not starved.passed and starved.float_ops == [] and starved.trials == 2
    assert starved.best_failure.error == pytest.approx(0.018)


def test_search_grows_faster_when_its_time_would_not_reach_the_end_of_the_ranking(monkeypatch):
    """Trials of 10 s in a 65 s budget: doubling (1, 2, 4, ... 512) cannot reach the 400 operators the rule needs
    in float, so the prefix grows faster and the budget ends on a passing set; with time to spare it doubles."""
    from convert import mixed_precision
    from convert.acceptance import Verdict
    from convert.mixed_precision import _grow, search

    assert [_grow(k, 400, 10.0, 1e6) for k in (1, 2, 64)] == [2, 4, 128]  # time enough: doubling
    assert _grow(1, 400, 10.0, 40.0) == 20 and _grow(1, 400, 10.0, 10.0) == 400  # 2 steps left, then 1
    assert _grow(1, 6, 0.0, 0.0) == 2  # nothing measured yet: doubling

    clock = [0.0]
    monkeypatch.setattr(mixed_precision.time, "monotonic", lambda: clock[0])

    def verdict(ok: bool) -> Verdict:
        m = {"rows": 1, "range_fraction": 0.005 if ok else 0.05, "top1": None, "passed": ok, "failures": [] if ok else ["x"]}
        return Verdict(dict(m), dict(m))

    def quantize(nodes: list[str]) -> bytes:
        clock[0] += 10.0
        return str(len(nodes)).encode()

    ranked = [f"op{i}" for i in range(400)]
    result = search(ranked, quantize, lambda fb: verdict(int(fb) >= 400), b"", verdict(False), max_seconds=65.0)
    assert result.passed and len(result.float_ops) == 400 and result.trials == 7  # 1, 20, 90, 400, then 3 halvings
    doubling = search(ranked, quantize, lambda fb: verdict(int(fb) >= 400), b"", verdict(False), max_trials=7)
    assert not doubling.passed, "7 doublings end at 64 operators"


def _rule(needed: set[str], miss=lambda nodes: 0.05):
    """A synthetic quantizer and judge: the variant is the sorted float set; it passes iff ``needed`` is in it
    (error 0.005), else its error is ``miss(float set)``."""
    from convert.acceptance import Verdict

    def verdict(ok: bool, error: float) -> Verdict:
        m = {"rows": 1, "range_fraction": error, "top1": None, "passed": ok, "failures": [] if ok else ["x"]}
        return Verdict(dict(m), dict(m))

    def quantize(nodes: list[str]) -> bytes:
        return ",".join(sorted(nodes)).encode()

    def accept(flatbuffer: bytes) -> Verdict:
        nodes = set(flatbuffer.decode().split(",")) - {""}
        return verdict(needed <= nodes, 0.005 if needed <= nodes else miss(nodes))

    return verdict, quantize, accept


def test_search_from_every_operator_in_float_gives_groups_back_to_int8():
    """The second search starts with all 64 operators in float and gives them back in groups: it keeps exactly the
    3 the rule needs, in far fewer trials than one per operator; nothing passing in float means one trial."""
    from convert.mixed_precision import search

    ops = [f"op{i}" for i in range(64)]
    verdict, quantize, accept = _rule({"op1", "op40", "op62"})
    result = search(ops, quantize, accept, b"", verdict(False, 0.3), max_trials=64, first=len(ops), groups=True)
    assert result.passed and sorted(result.float_ops) == ["op1", "op40", "op62"]
    assert result.trials < 40, result.trials
    one_by_one = search(ops, quantize, accept, b"", verdict(False, 0.3), max_trials=200, first=len(ops))
    assert sorted(one_by_one.float_ops) == ["op1", "op40", "op62"] and one_by_one.trials > result.trials
    _, _, never = _rule({"not an operator"})
    hopeless = search(ops, quantize, never, b"plain", verdict(False, 0.3), first=len(ops), groups=True)
    assert not hopeless.passed and hopeless.flatbuffer == b"plain" and hopeless.trials == 1
    assert hopeless.best_failure.error == pytest.approx(0.05)


def test_group_drops_stop_at_the_budget_with_a_passing_set():
    """With 5 trials the group drops end early, but on a set that passed."""
    from convert.mixed_precision import _drop_groups

    calls = []

    def passes(nodes: list[str]) -> bool:
        calls.append(len(nodes))
        return {"a", "c"} <= set(nodes)

    assert _drop_groups(list("abcdefgh"), passes, lambda: True) == ["a", "c"]
    calls.clear()
    kept = _drop_groups(list("abcdefgh"), passes, lambda: len(calls) < 3)
    assert {"a", "c"} <= set(kept) and len(calls) == 3 and len(kept) < 8, (kept, calls)
    assert _drop_groups(["a"], passes, lambda: True) == ["a"]


def test_the_second_search_runs_on_the_exact_weights_from_every_operator(monkeypatch):
    """``_exact_search`` quantizes the model it is given (the unrounded calibration), adds the operators the
    ranking lacks, and a quantization that raises counts as the plain model (no exception escapes)."""
    from convert import mixed_precision, tflite_int8

    seen: list[tuple[bytes, list[str]]] = []
    verdict, _, accept = _rule({"conv", "tail"})

    def quantize_calibrated(model: bytes, nodes: list[str] | None = None, numeric_verify: bool = False) -> bytes:
        seen.append((model, sorted(nodes or [])))
        if "broken" in (nodes or []) and len(nodes or []) == 1:
            raise RuntimeError("")
        return ",".join(sorted(nodes or [])).encode()

    monkeypatch.setattr(tflite_int8, "quantize_calibrated", quantize_calibrated)
    monkeypatch.setattr(mixed_precision, "operator_outputs", lambda model: ["conv", "add", "tail"])
    result = mixed_precision._exact_search(b"exact", ["add", "conv"], b"", verdict(False, 0.2), accept)
    assert result.passed and sorted(result.float_ops) == ["conv", "tail"], result.float_ops
    assert result.ranked == ["add", "conv", "tail"] and seen[0] == (b"exact", ["add", "conv", "tail"])
    assert {model for model, _ in seen} == {b"exact"}


# --- SavedModel sources -------------------------------------------------------------------------------------------

def test_the_courses_savedmodel_export_gets_the_fold_and_int8_within_one_percent(boston_linear, tmp_path):
    """``deploykit train --model linear``, exported as the course does (Keras 3 ``model.export``)."""
    import keras

    keras.models.load_model(boston_linear).export(str(tmp_path / "sm"), verbose=False)
    result = run_cli("convert", tmp_path / "sm", "--data", BOSTON_CSV, "--target", "medv", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    tflite = _tflite(tmp_path / "b")
    int8 = tflite["int8"]
    assert int8["status"] == "accepted" and int8["integer_only"] is True
    assert int8["note"].startswith("per-feature input scaling (folded into the SavedModel's medv")
    assert re.search(r"; int8 weights GPTQ-rounded on DATA \(medv\w*\);", int8["note"]), int8["note"]
    assert "GPTQ" not in tflite["dynamic"]["note"], "dynamic converts from the fold before rounding"
    assert all(tflite[v]["input_transform"] for v in QUANTIZED)
    data = np.genfromtxt(BOSTON_CSV, delimiter=",", names=True)
    rows = np.stack([data["rm"], data["tax"], data["age"]], axis=1).astype(np.float32)
    reference = keras.models.load_model(boston_linear).predict(rows, verbose=0)
    lo, hi = manifest_mod.load(tmp_path / "b")["outputs"][0]["range"]
    for variant in QUANTIZED:
        actual = _litert(tmp_path / "b" / tflite[variant]["path"], {"features": rows}, tflite[variant]["input_transform"])
        error = float(np.abs(actual["output_0"] - reference).max()) / (hi - lo)
        assert error <= 0.01, f"{variant}: {error:.3%} of the output range > 1%"


def test_keras2_savedmodels_fold_and_say_why_when_they_cannot(tmp_path):
    """A Keras 2 ``model.save`` SavedModel folds into its first Dense; one whose input goes through a
    Normalization first says that this is why it does not."""
    import keras
    import tf_keras

    rng = np.random.default_rng(0)
    data = np.genfromtxt(BOSTON_CSV, delimiter=",", names=True)
    rows = np.stack([data["rm"], data["tax"], data["age"]], axis=1).astype(np.float32)
    k2 = tf_keras.Sequential([tf_keras.layers.Dense(8, activation="relu", input_shape=(3,), name="dense"),
                              tf_keras.layers.Dense(1, name="out")], name="k2")
    k2.set_weights([w + rng.normal(0, 0.01, w.shape).astype(np.float32) for w in k2.get_weights()])
    k2.save(str(tmp_path / "k2"))
    result = run_cli("convert", tmp_path / "k2", "--data", BOSTON_CSV, "--target", "medv", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    int8 = _tflite(tmp_path / "b")["int8"]
    assert re.match(r"per-feature input scaling \(folded into the SavedModel's (dense\w*)\); "
                    r"int8 weights GPTQ-rounded on DATA \(\1\);", int8["note"]), int8["note"]
    assert int8["status"] == "accepted"

    norm = keras.layers.Normalization(axis=-1, name="k3_norm")
    norm.adapt(rows)
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1, name="k3_out")(norm(inputs)), name="k3")
    model.export(str(tmp_path / "norm"), verbose=False)
    result = run_cli("convert", tmp_path / "norm", "--data", BOSTON_CSV, "--target", "medv", "--out", tmp_path / "n")
    assert result.returncode == 0, result.stderr
    note = _tflite(tmp_path / "n")["int8"]["note"]
    assert note.startswith("inputs not standardised (input 'features' is first read by a Sub ("), note
    assert "), not by a Dense (MatMul + bias))" in note


def _token_classifier(tmp_path: Path) -> tuple[Path, Path]:
    """Embedding(40) -> GlobalAveragePooling1D -> Dense softmax over int32 token rows (the zoo's embedding_bag)."""
    import keras

    keras.utils.set_random_seed(47)
    rng = np.random.default_rng(47)
    ids = rng.integers(1, 40, (600, 20))
    ids[np.arange(20)[None, :] >= rng.integers(10, 21, 600)[:, None]] = 0
    diff = (ids == 5).sum(1) - (ids == 9).sum(1)
    label = np.where(diff > 0, 0, np.where(diff < 0, 1, 2)).astype("int32")
    tokens = keras.Input((20,), dtype="int32", name="tokens")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(40, 16)(tokens))
    model = keras.Model(tokens, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(ids.astype("int32"), label, epochs=2, batch_size=32, verbose=0)
    model.save(tmp_path / "tokens.keras")
    np.savez(tmp_path / "tokens.npz", tokens=ids.astype("int32"), label=label)
    return tmp_path / "tokens.keras", tmp_path / "tokens.npz"


def test_the_gather_copy_looks_up_the_same_rows_bit_for_bit(tmp_path):
    import keras

    from convert.int16_tokens import gather_copy

    model_path, data_path = _token_classifier(tmp_path)
    model = keras.models.load_model(model_path)
    ids = np.load(data_path)["tokens"]
    copy = gather_copy(model)
    assert type(copy.layers[1]).__name__ == "GatherEmbedding"
    np.testing.assert_array_equal(copy.predict(ids, verbose=0), model.predict(ids, verbose=0))
    assert gather_copy(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])) is None


def test_int16x8_is_written_for_integer_token_inputs(tmp_path):
    """TF's 16x8 quantizer stopped at "Empty min/max for tensor serving_default_tokens" (the int32 ops of
    Keras's negative-id wrap-around); converted from the gather copy, int16x8 is written and judged."""
    import keras

    from convert.tflite import operators

    model_path, data_path = _token_classifier(tmp_path)
    result = run_cli("convert", model_path, "--data", data_path, "--target", "label", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    manifest = manifest_mod.load(tmp_path / "b")
    assert not [s for s in manifest["skipped"] if s.get("variant") == "int16x8"], manifest["skipped"]
    int16 = _tflite(tmp_path / "b")["int16x8"]
    ops = {op["name"] for op in operators((tmp_path / "b" / int16["path"]).read_bytes())}
    assert "GATHER" in ops and not ops & {"LESS", "SELECT_V2"}
    held = _held_out(tmp_path / "b", {"tokens": np.load(data_path)["tokens"]})
    reference = keras.models.load_model(model_path).predict(held["tokens"], verbose=0)
    actual = _litert(tmp_path / "b" / int16["path"], held, int16["input_transform"])["output_0"]
    lo, hi = manifest["outputs"][0]["range"]
    error = float(np.abs(actual - reference).max()) / (hi - lo)
    print(f"int16x8 token model: held-out error {error:.4%} of the output range; status {int16['status']}")
    assert error == pytest.approx(int16["measured"]["held_out"]["range_fraction"], rel=0.05, abs=2e-4)
    assert int16["status"] == "accepted" and error <= 0.01
