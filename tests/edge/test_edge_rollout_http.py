"""The safe rollout over HTTP on loopback: a real `deploykit-edge serve MODELS/` with two real Boston bundles
(linear and MLP) and a deliberately broken one, every answer read by a client as a user's would be."""

from __future__ import annotations

import csv
import http.client
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest
from scipy import stats

from edge.runner import Predictor
from edge_helpers import Server, metric


@pytest.fixture(scope="session")
def linear_bundle(boston_linear_bundle: Path) -> Path:
    """The course's linear Boston bundle (tests/conftest.py: made once per set of sources, cached)."""
    return boston_linear_bundle


@pytest.fixture(scope="session")
def golden_rows(bundle: Path) -> list[list[float]]:
    return json.loads((bundle / "golden.json").read_text())["inputs"]["features"]


@pytest.fixture(scope="session")
def offline(bundle: Path, linear_bundle: Path, golden_rows: list) -> dict[str, list[float]]:
    """Each model's prediction of each golden row, computed here, outside the server."""
    return {"linear": [Predictor(linear_bundle).predict_value(r) for r in golden_rows],
            "mlp": [Predictor(bundle).predict_value(r) for r in golden_rows]}


def broken(source: Path, dest: Path) -> Path:
    """A copy of a bundle whose manifest's output range is moved to [1000, 2000]: it loads and passes its
    self-test, but every answer it gives fails the output check."""
    shutil.copytree(source, dest)
    path = dest / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["outputs"][0]["range"] = [1000.0, 2000.0]
    path.write_text(json.dumps(manifest))
    return dest


def write_config(models: Path, model: dict[str, Any], poll: float = 0.2) -> None:
    """Write MODELS/rollout.json (its mtime moved forward, so a rewrite within a clock tick is noticed)."""
    path = models / "rollout.json"
    path.write_text(json.dumps({"schema_version": 1, "poll_seconds": poll, "models": {"boston": model}}))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (int(time.time()) % 1000 + 1)))


class Client:
    """One keep-alive connection, as a user's client."""

    def __init__(self, server: Server) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def post(self, path: str, payload: Any, headers: Optional[dict] = None) -> tuple[int, dict, Any]:
        self.conn.request("POST", path, body=json.dumps(payload),
                          headers={"Content-Type": "application/json", **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)

    def get(self, path: str) -> tuple[int, Any]:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if resp.getheader("content-type", "").startswith("application/json") else data

    def close(self) -> None:
        self.conn.close()


def wait_for(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "boston").mkdir(parents=True)
    return root


def test_hot_swap_under_load_drops_and_mixes_nothing(server_factory, models: Path, bundle: Path, linear_bundle: Path,
                                                      golden_rows: list, offline: dict) -> None:
    """A client posts throughout while version 2 arrives, becomes stable, is moved back and is removed:
    every request is answered 200, and each answer is exactly its version's prediction for its row."""
    shutil.copytree(linear_bundle, models / "boston" / "1")
    write_config(models, {"labels": {"stable": 1}})
    server = server_factory(models)
    expected = {1: offline["linear"], 2: offline["mlp"]}
    stop = threading.Event()
    answers: list[tuple[int, int, float, str]] = []
    failures: list[str] = []

    def client() -> None:
        c = Client(server)
        i = 0
        try:
            while not stop.is_set():
                k = i % len(golden_rows)
                try:
                    status, headers, body = c.post("/predict_json", golden_rows[k])
                    if status != 200:
                        failures.append(f"{status} {body}")
                    else:
                        assert int(headers["x-model-version"]) == body["model_version"]
                        answers.append((k, body["model_version"], body["prediction"], body["id"]))
                except Exception as exc:  # noqa: BLE001 - counted, asserted empty
                    failures.append(repr(exc))
                    c.close()
                    c = Client(server)
                i += 1
        finally:
            c.close()

    thread = threading.Thread(target=client)
    thread.start()
    try:
        wait_for(lambda: len(answers) > 50)
        shutil.copytree(bundle, models / "boston" / "2.tmp")
        os.rename(models / "boston" / "2.tmp", models / "boston" / "2")
        write_config(models, {"labels": {"stable": 2}})
        wait_for(lambda: answers and answers[-1][1] == 2)
        n = len(answers)
        wait_for(lambda: len(answers) > n + 50)
        write_config(models, {"labels": {"stable": 1}})
        wait_for(lambda: answers[-1][1] == 1)
        shutil.rmtree(models / "boston" / "2")
        c = Client(server)
        wait_for(lambda: {v["version"]: v["state"] for v in c.get("/v1/models/boston")[1]["model_version_status"]}
                 .get("2") == "END")
        c.close()
        n = len(answers)
        wait_for(lambda: len(answers) > n + 50)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert {v for _, v, _, _ in answers} == {1, 2}
    assert all(value == expected[version][k] for k, version, value, _ in answers)
    assert len({pid for *_, pid in answers}) == len(answers)
    text = server.request("GET", "/metrics")[2].decode()
    assert metric(text, "deploykit_model_version_state", model="boston", version="2", state="END") == 1.0
    served = sum(metric(text, "deploykit_model_answers_total", model="boston", version=v) or 0 for v in ("1", "2"))
    assert served == len(answers)
    code, err = server.stop()
    assert "deploykit-edge: boston 2: AVAILABLE" in err and "deploykit-edge: boston 2: UNLOADING (its folder was removed)" in err


def test_canary_share_is_within_binomial_bounds_and_sticky(server_factory, models: Path, bundle: Path,
                                                            linear_bundle: Path, golden_rows: list) -> None:
    shutil.copytree(linear_bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    write_config(models, {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.25}})
    server = server_factory(models)
    c = Client(server)
    n = 2000
    versions = [c.post("/predict_json", golden_rows[i % len(golden_rows)])[2]["model_version"] for i in range(n)]
    hits = versions.count(2)
    lo, hi = int(stats.binom.ppf(5e-7, n, 0.25)), int(stats.binom.isf(5e-7, n, 0.25))
    assert lo <= hits <= hi, (hits, lo, hi)
    for key in ("alice", "bob", "carol", "dave", "erin"):
        seen = {c.post("/predict_json", golden_rows[0], {"x-client-key": key})[1]["x-model-version"] for _ in range(20)}
        assert len(seen) == 1, (key, seen)
    # a version or label in the path reaches that version, never the canary's draw
    for _ in range(20):
        status, headers, body = c.post("/v1/models/boston/labels/canary:predict", {"instances": [golden_rows[0]]})
        assert status == 200 and headers["x-model-version"] == "2"
        status, headers, body = c.post("/v1/models/boston/versions/1:predict", {"instances": [golden_rows[0]]})
        assert status == 200 and headers["x-model-version"] == "1"
    c.close()


def test_a_bad_canary_fails_over_and_is_rolled_back(server_factory, models: Path, bundle: Path,
                                                    linear_bundle: Path, golden_rows: list, offline: dict) -> None:
    """Version 3 (broken: every answer fails the output check) is the canary for every request; the
    fallback (version 1, the linear model) answers instead, and after ``min_requests`` canary requests the
    rollback monitor takes the canary out: the stable version answers from then on."""
    shutil.copytree(linear_bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    broken(bundle, models / "boston" / "3")
    write_config(models, {"labels": {"stable": 2, "canary": 3}, "canary": {"share": 1.0}, "fallback": 1,
                          "rollback": {"window": 20, "min_requests": 10, "max_output_check_failures": 0.5}})
    server = server_factory(models)
    c = Client(server)
    for i in range(10):
        status, headers, body = c.post("/predict_json", golden_rows[i])
        assert status == 200 and headers["x-fallback"] == "true" and headers["x-model-version"] == "1"
        assert body["prediction"] == offline["linear"][i] and body["fallback"] is True
        assert body["fallback_reason"].startswith("output 'output_0' is ")
        assert body["fallback_reason"].endswith("outside the manifest's range widened by the margin 0.1 ([900, 2100])")
    for i in range(10, 20):
        status, headers, body = c.post("/predict_json", golden_rows[i])
        assert status == 200 and "x-fallback" not in headers and body["model_version"] == 2
        assert body["prediction"] == offline["mlp"][i]
    status, headers, body = c.post("/v1/models/boston/labels/canary:predict", {"instances": [golden_rows[0]]})
    assert status == 503 and body["error"].startswith("label 'canary' of model 'boston' points to no AVAILABLE "
                                                      "version: version 3 was rolled back (")
    text = server.request("GET", "/metrics")[2].decode()
    assert metric(text, "deploykit_model_rollbacks_total", model="boston") == 1.0
    assert metric(text, "deploykit_model_fallbacks_total", model="boston") == 10.0
    assert metric(text, "deploykit_model_output_check_failures_total", model="boston", version="3") == 10.0
    assert metric(text, "deploykit_model_answers_total", model="boston", version="1") == 10.0
    c.close()
    _, err = server.stop()
    assert "deploykit-edge: rollback: model 'boston' canary version 3 taken out: " in err


def test_a_version_that_fails_to_load_stays_out_with_its_reason(server_factory, models: Path, bundle: Path) -> None:
    shutil.copytree(bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    artifact = json.loads((bundle / "manifest.json").read_text())["artifacts"][0]["path"]
    with open(models / "boston" / "2" / artifact, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    write_config(models, {"labels": {"stable": 1}})
    server = server_factory(models)
    status, body = server.json("GET", "/v1/models/boston")
    assert status == 200
    entry = {e["version"]: e for e in body["model_version_status"]}["2"]
    assert entry["state"] == "END" and entry["status"]["error_code"] == "UNKNOWN"
    assert "sha256" in entry["status"]["error_message"]
    status, ready = server.json("GET", "/readyz")
    assert status == 200 and ready["failed_versions"][0]["version"] == 2
    status, body = server.json("POST", "/v1/models/boston/versions/2:predict", {"instances": [[6, 250, 66.5]]})
    assert status == 503 and body["error"].startswith("version 2 of model 'boston' is END: ")
    text = server.request("GET", "/metrics")[2].decode()
    assert metric(text, "deploykit_model_version_state", model="boston", version="2", state="END") == 1.0


def test_shadow_disagreement_is_the_offline_difference(server_factory, models: Path, bundle: Path,
                                                       linear_bundle: Path, golden_rows: list, offline: dict,
                                                       tmp_path: Path) -> None:
    """The MLP answers, the linear model shadows every request: the shadow log holds, per prediction id,
    exactly the absolute difference of the two models on that row computed offline."""
    shutil.copytree(linear_bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    write_config(models, {"labels": {"stable": 2}, "shadow": {"version": 1, "share": 1.0}})
    logs = tmp_path / "logs"
    server = server_factory(models, log_dir=logs)
    c = Client(server)
    ids = {}
    for i, row in enumerate(golden_rows):
        status, headers, body = c.post("/predict_json", row)
        assert status == 200 and body["model_version"] == 2 and body["prediction"] == offline["mlp"][i]
        ids[body["id"]] = i
    c.close()
    text = ""

    def compared() -> bool:
        nonlocal text
        text = server.request("GET", "/metrics")[2].decode()
        return metric(text, "deploykit_shadow_compared_total", model="boston", shadow_version="1") == len(golden_rows)

    wait_for(compared)
    server.stop()
    rows = list(csv.DictReader((logs / "shadow.csv").open(newline="")))
    assert len(rows) == len(golden_rows)
    for r in rows:
        i = ids[r["prediction_id"]]
        assert (r["live_version"], r["shadow_version"]) == ("2", "1")
        assert float(r["absolute"]) == abs(offline["mlp"][i] - offline["linear"][i])
    diffs = [abs(m - l) for m, l in zip(offline["mlp"], offline["linear"])]
    assert metric(text, "deploykit_shadow_absolute_difference_count", model="boston", shadow_version="1") == len(diffs)
    assert metric(text, "deploykit_shadow_absolute_difference_sum", model="boston", shadow_version="1") == \
        pytest.approx(sum(diffs), rel=1e-12)
    predictions = list(csv.DictReader((logs / "predictions.csv").open(newline="")))
    assert {p["prediction_id"] for p in predictions} == set(ids)
    assert {p["model_version"] for p in predictions} == {"2"}


def test_a_batch_copied_to_the_shadow_logs_one_line_per_prediction_id(server_factory, models: Path, bundle: Path,
                                                                     linear_bundle: Path, golden_rows: list,
                                                                     tmp_path: Path) -> None:
    """A batch of five rows copied to the shadow: shadow.csv has one line per prediction id (as the
    prediction log), each with that row's own difference, the offline difference of the two models'
    batch predictions on the same rows; /metrics counts the request once, with the batch's largest."""
    shutil.copytree(linear_bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    write_config(models, {"labels": {"stable": 2}, "shadow": {"version": 1, "share": 1.0}})
    logs = tmp_path / "logs"
    server = server_factory(models, log_dir=logs)
    rows = golden_rows[:5]
    c = Client(server)
    status, _, body = c.post("/predict_json", rows)
    c.close()
    assert status == 200 and body["model_version"] == 2 and len(set(body["ids"])) == 5

    def compared() -> bool:
        text = server.request("GET", "/metrics")[2].decode()
        return metric(text, "deploykit_shadow_compared_total", model="boston", shadow_version="1") == 1.0

    wait_for(compared)
    text = server.request("GET", "/metrics")[2].decode()
    server.stop()
    live = Predictor(bundle).predict_rows(rows)[:, 0].astype(np.float64).tolist()
    other = Predictor(linear_bundle).predict_rows(rows)[:, 0].astype(np.float64).tolist()
    expected = [[pid, "2", "1", repr(abs(a - b)), repr(abs(a - b) / max(abs(a), abs(b))), ""]
                for pid, a, b in zip(body["ids"], live, other)]
    with (logs / "shadow.csv").open(newline="") as f:
        got = [[r["prediction_id"], r["live_version"], r["shadow_version"], r["absolute"], r["relative"],
                r["top1_differs"]] for r in csv.DictReader(f)]
    assert got == expected
    assert metric(text, "deploykit_shadow_absolute_difference_sum", model="boston", shadow_version="1") == \
        max(abs(a - b) for a, b in zip(live, other))
    assert metric(text, "deploykit_shadow_dropped_total", model="boston", shadow_version="1") == 0.0


def test_the_banner_names_the_model_folder_and_the_version(models: Path, bundle: Path, linear_bundle: Path) -> None:
    """The start-up banner's subject (``EdgeApp.subject``): in a repository the model's folder name (the
    name in the URLs), not its manifest's, with the default route's version; a single bundle by its name."""
    from edge.server import ServeConfig, build_app

    houses = models.parent / "houses-models"
    shutil.copytree(linear_bundle, houses / "houses" / "1")
    shutil.copytree(bundle, houses / "houses" / "2")
    (houses / "rollout.json").write_text(json.dumps({"schema_version": 1, "models": {"houses": {"labels": {"stable": 1}}}}))
    assert json.loads((bundle / "manifest.json").read_text())["name"] != "houses"
    app = build_app(ServeConfig(bundle=str(houses)))
    assert app.subject == "houses version 1 of 2 AVAILABLE"
    single = build_app(ServeConfig(bundle=str(bundle)))
    assert single.subject == json.loads((bundle / "manifest.json").read_text())["name"]


def test_feedback_metrics_are_the_offline_mae(server_factory, models: Path, bundle: Path, linear_bundle: Path,
                                              golden_rows: list, offline: dict) -> None:
    """Predictions answered by two versions (a sticky canary); the truth sent later, one by one and in a
    list, some twice: the per-version MAE in /feedback and /metrics is the offline MAE on the same rows."""
    shutil.copytree(linear_bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    write_config(models, {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.5}})
    server = server_factory(models)
    c = Client(server)
    rng = np.random.default_rng(7)
    truth = [float(rng.normal(22, 8)) for _ in golden_rows]
    answered = []
    for i, row in enumerate(golden_rows):
        status, headers, body = c.post("/predict_json", row, {"x-client-key": f"user{i}"})
        assert status == 200
        answered.append((i, body["model_version"], body["id"]))
    by_version: dict[int, list[float]] = {1: [], 2: []}
    for i, version, _ in answered:
        by_version[version].append(abs(offline["linear" if version == 1 else "mlp"][i] - truth[i]))
    assert by_version[1] and by_version[2]
    half = len(answered) // 2
    for i, _, pid in answered[:half]:
        status, _, body = c.post("/v1/models/boston/feedback", {"id": pid, "truth": truth[i]})
        assert (status, body["outcome"]) == (200, "joined")
    status, _, body = c.post("/v1/models/boston/feedback", [{"id": pid, "truth": truth[i]} for i, _, pid in answered])
    assert status == 200
    outcomes = [r["outcome"] for r in body["results"]]
    assert outcomes == ["duplicate"] * half + ["joined"] * (len(answered) - half)
    status, _, body = c.post("/v1/models/boston/feedback", {"id": answered[0][2], "truth": truth[0] + 1})
    assert (status, body["outcome"]) == (409, "conflict")
    status, _, body = c.post("/v1/models/boston/feedback", {"id": "0000000ff", "truth": 1.0})
    assert status == 404 and body["error"] == "prediction 0000000ff is unknown (not issued by this server since it started)"
    status, report = c.get("/feedback")
    assert status == 200
    text = server.request("GET", "/metrics")[2].decode()
    for version, errors in by_version.items():
        mae = float(np.mean(errors))
        got = report["models"]["boston"][str(version)]["all"]
        assert got["joined"] == len(errors) and got["mae"] == pytest.approx(mae, rel=1e-12)
        assert metric(text, "deploykit_feedback_mae", model="boston", version=str(version), window="all") == \
            pytest.approx(mae, rel=1e-12)
    c.close()


def test_an_oip_v2_client_gets_the_predict_json_answer(server_factory, models: Path, bundle: Path,
                                                       golden_rows: list) -> None:
    """tritonclient's HTTP client (binary tensors, its default) and a plain JSON request get exactly
    /predict_json's prediction."""
    import tritonclient.http as httpclient

    shutil.copytree(bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    write_config(models, {"labels": {"stable": 1}})
    server = server_factory(models)
    triton = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("boston") and triton.is_model_ready("boston", "2")
    meta = triton.get_model_metadata("boston")
    assert meta["versions"] == ["1", "2"] and meta["inputs"][0] == {"name": "features", "datatype": "FP32", "shape": [-1, 3]}
    rows = np.asarray(golden_rows[:8], dtype=np.float32)
    c = Client(server)
    expected = [c.post("/predict_json", r)[2]["prediction"] for r in rows.tolist()]
    for binary in (True, False):
        inp = httpclient.InferInput("features", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=binary)
        out = httpclient.InferRequestedOutput("output_0", binary_data=binary)
        result = triton.infer("boston", [inp], outputs=[out])
        got = result.as_numpy("output_0")
        assert got.dtype == np.float32 and got.shape == (8, 1)
        assert [float(v) for v in got[:, 0]] == expected
        assert result.get_response()["model_version"] == "1"
    result = triton.infer("boston", [inp], model_version="2")
    assert result.get_response()["model_version"] == "2"
    status, body = c.get("/v2/models/boston/versions/7")
    assert status == 404 and body == {"error": "version 7 of model 'boston' not found; it has 1 AVAILABLE, 2 AVAILABLE"}
    status, _, body = c.post("/v2/models/boston/infer", {"inputs": []})
    assert status == 400 and body == {"error": "the inference request is invalid at inputs: [] should be non-empty"}
    c.close()
    triton.close()


def test_a_non_finite_row_in_a_batch_is_never_answered() -> None:
    """A batch with an out-of-range row before a non-finite one: the check names the non-finite value."""
    from edge.rollout import OutputChecker

    manifest = {"outputs": [{"key": "output_0", "range": [5.0, 50.0]}]}
    reason = OutputChecker(manifest, 0.1).check({"output_0": np.asarray([[20.0], [1e9], [np.inf]])})
    assert reason == "output 'output_0' is not finite (inf)"


def test_sighup_scans_at_once(server_factory, models: Path, bundle: Path, linear_bundle: Path) -> None:
    """With an hour between scans, SIGHUP makes the server see a new version (and a changed label) now."""
    import signal

    shutil.copytree(linear_bundle, models / "boston" / "1")
    write_config(models, {"labels": {"stable": 1}}, poll=3600)
    server = server_factory(models)
    shutil.copytree(bundle, models / "boston" / "2")
    write_config(models, {"labels": {"stable": 2}}, poll=3600)
    time.sleep(0.5)
    assert server.json("POST", "/predict_json", [6, 250, 66.5])[1]["model_version"] == 1
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.json("POST", "/predict_json", [6, 250, 66.5])[1]["model_version"] == 2, timeout=20)
    assert server.proc.poll() is None


def test_the_one_value_disagreement_is_numpys() -> None:
    """The shadow's plain-float comparison gives exactly what the numpy one gives, NaN, zero and inf included."""
    from edge.rollout import disagreement, disagreement_value

    rng = np.random.default_rng(3)
    values = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 5e-324, 1e308, 0.5, 0.49999999] + \
        [float(v) for v in rng.normal(0, 30, 40)]
    for task, rng_ in (("regression", [5.0, 50.0]), ("classification", [0.0, 1.0])):
        manifest = {"task": task, "outputs": [{"key": "output_0", "shape": [None, 1], "range": rng_}]}
        for a in values:
            for b in values[:20]:
                want = disagreement(manifest, {"output_0": np.asarray([[a]])}, {"output_0": np.asarray([[b]])})
                got = disagreement_value(manifest, a, b)
                for field in ("absolute", "relative", "top1", "score"):
                    w, g = getattr(want, field), getattr(got, field)
                    assert (w is None and g is None) or w == g or (math.isnan(w) and math.isnan(g)), (task, a, b, field, w, g)
