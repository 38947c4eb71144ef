"""`deploykit-edge serve`: a real uvicorn server on a loopback port, real HTTP, every bad input."""

from __future__ import annotations

import csv
import gzip
import http.client
import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge.runner import Predictor

from edge_helpers import Server, metric, read_reply

EXPECTED = "expected 3 values: rm, tax, age"


def test_course_client_gets_the_keras_prediction(module_server: Server, bundle: Path) -> None:
    g = json.loads((bundle / "golden.json").read_text())
    ref = g["outputs"]["output_0"][g["kinds"].index("course")][0]
    status, body = module_server.json("POST", "/predict_json", [6, 250, 66.5])
    assert status == 200 and body["success"] is True
    assert abs(body["prediction"] - ref) <= 1e-5 * abs(ref)
    assert body["model_version"] == 1 and isinstance(body["id"], str)
    status, body2 = module_server.json("POST", "/predict_json", {"rm": 6, "tax": 250, "age": 66.5})
    assert {**body2, "id": ""} == {**body, "id": ""} and body2["id"] != body["id"]
    status, many = module_server.json("POST", "/predict_json", [[6, 250, 66.5], {"rm": 7, "tax": 300, "age": 20}])
    assert status == 200 and many["success"] and len(many["predictions"]) == 2
    assert many["predictions"][0] == body["prediction"]


@pytest.mark.parametrize("method, path, body, headers, status, error", [
    ("POST", "/predict_json", b"[6, 250", {"Content-Type": "application/json"}, 400,
     "malformed JSON: Expecting ',' delimiter at line 1 column 8"),
    ("POST", "/predict_json", b"[6, 250]", {"Content-Type": "application/json"}, 422, f"got 2 values, {EXPECTED}"),
    ("POST", "/predict_json", b'[6, "x", 1]', {"Content-Type": "application/json"}, 422,
     f'tax must be a number, got str "x"; {EXPECTED}'),
    ("POST", "/predict_json", b"[6, 250, NaN]", {"Content-Type": "application/json"}, 422,
     f"age must be a finite number, got nan; {EXPECTED}"),
    ("POST", "/predict_json", b"[6, Infinity, 1]", {"Content-Type": "application/json"}, 422,
     f"tax must be a finite number, got nan; {EXPECTED}"),
    ("POST", "/predict_json", b"[6, 250, 1e999]", {"Content-Type": "application/json"}, 422,
     f"age must be a finite number, got inf; {EXPECTED}"),
    ("POST", "/predict_json", b"[6, 250, 1" + b"0" * 400 + b"]", {"Content-Type": "application/json"}, 422,
     f"age must be a finite number, got an integer of 401 digits; {EXPECTED}"),
    ("POST", "/v1/models/boston_mlp:predict", b'{"inputs": [[6, 250, 1' + b"0" * 400 + b']]}',
     {"Content-Type": "application/json"}, 422, "input 'features' must hold finite numbers only"),
    ("POST", "/predict_json", b"[6, 250, 1" + b"0" * 5000 + b"]", {"Content-Type": "application/json"}, 422,
     "a number in the body has too many digits; send ordinary numbers"),
    ("POST", "/predict_json", b"[6, 250, 1e300]", {"Content-Type": "application/json"}, 422,
     f"age must be within the float32 range (|x| <= 3.4e38), got 1e+300; {EXPECTED}"),
    ("POST", "/v1/models/boston_mlp:predict", b'{"instances": [[6, 250, 1e300]]}', {"Content-Type": "application/json"},
     422, f"instance 1: age must be within the float32 range (|x| <= 3.4e38), got 1e+300; {EXPECTED}"),
    ("POST", "/v1/models/boston_mlp:predict", b'{"inputs": [[6, 250, 1e300]]}', {"Content-Type": "application/json"},
     422, "input 'features' must be within the float32 range (|x| <= 3.4e38)"),
    ("GET", "/v1/models/boston_mlp/versions/abc", None, {}, 404,
     "version abc of model 'boston_mlp' not found; versions are positive integers"),
    ("POST", "/v1/models/boston_mlp/versions/2:predict", b'{"instances": [[6, 250, 1]]}',
     {"Content-Type": "application/json"}, 404, "version 2 of model 'boston_mlp' not found; it has 1 AVAILABLE"),
    ("GET", "/v1/models/boston_mlp/labels/stable", None, {}, 404,
     "label 'stable' of model 'boston_mlp' not found; it has no labels"),
    ("POST", "/predict_json", b"[6, 250, 1]", {"Content-Type": "x" * 1000}, 415,
     f"content type {'x' * 60} is not supported; send Content-Type: application/json"),
    ("POST", "/predict_json", b"[6, 250, 1]", {"Content-Type": "text/plain"}, 415,
     "content type text/plain is not supported; send Content-Type: application/json"),
    ("POST", "/predict_json", b"[6, 250, 1]", {}, 415,
     "content type none is not supported; send Content-Type: application/json"),
    # a compressed body was read as if it were not ("not UTF-8")
    ("POST", "/v1/models/boston_mlp:predict", gzip.compress(b'{"instances": [[6, 250, 1]]}', mtime=0),
     {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 415,
     "Content-Encoding gzip is not supported; send the body uncompressed"),
    ("POST", "/predict_json", gzip.compress(b"[6, 250, 1]", mtime=0), {"Content-Type": "application/json", "Content-Encoding": "gzip"},
     415, "Content-Encoding gzip is not supported; send the body uncompressed"),
    ("POST", "/predict_json", b"[" + b",".join([b"[6,250,1]"] * 51) + b"]", {"Content-Type": "application/json"}, 413,
     "batch of 51 rows is over the limit of 50; send smaller batches"),
    ("GET", "/nope", None, {}, 404, "no route /nope; see /openapi.json"),
    ("GET", "/predict_json", None, {}, 405, "method GET is not allowed on /predict_json; use POST"),
    ("DELETE", "/healthz", None, {}, 405, "method DELETE is not allowed on /healthz; use GET, HEAD"),
    ("POST", "/v1/models/other:predict", b"{}", {"Content-Type": "application/json"}, 404,
     "model 'other' not found; this server serves 'boston_mlp'"),
    ("POST", "/v1/models/boston_mlp:predict", b'{"instances": [[6, 250]]}', {"Content-Type": "application/json"}, 422,
     f"instance 1: got 2 values, {EXPECTED}"),
    ("POST", "/v1/models/boston_mlp:predict", b'{"instances": [[6, 250, 1], [6, true, 1]]}',
     {"Content-Type": "application/json"}, 422, f"instance 2: tax must be a number, got boolean true; {EXPECTED}"),
    ("POST", "/predict_json", b'[[6, 250, 1], [6, "x", 1]]', {"Content-Type": "application/json"}, 422,
     f'row 2: tax must be a number, got str "x"; {EXPECTED}'),
    # TF Serving inputs answered 200 with strings or booleans in them
    ("POST", "/v1/models/boston_mlp:predict", b'{"inputs": [[6, 250, 1], ["6", "x", 1]]}',
     {"Content-Type": "application/json"}, 422, 'input \'features\' must hold numbers (float32), got str "6"'),
    ("POST", "/v1/models/boston_mlp:predict", b'{"inputs": {"features": [[6, false, 1]]}}',
     {"Content-Type": "application/json"}, 422, "input 'features' must hold numbers (float32), got boolean false"),
    ("POST", "/v1/models/boston_mlp:predict", b'{"instances": [{"features": [6, 250, null]}]}',
     {"Content-Type": "application/json"}, 422, "input 'features' must hold numbers (float32), got null"),
])
def test_error_table(module_server: Server, method, path, body, headers, status, error) -> None:
    got, hdrs, data = module_server.request(method, path, body, headers)
    assert got == status, data
    assert hdrs["content-type"] == "application/json"
    assert json.loads(data) == {"success": False, "error": error}
    if status == 405:
        assert "allow" in hdrs


@pytest.mark.parametrize("row", [[6, 250, 66.5], [3.561, 187, 2.9], [8.78, 711, 100], [20, 0, -5], [6.0, 250.0, 66.5]])
def test_one_row_fast_path_answers_as_the_general_path(module_server: Server, row: list) -> None:
    """`Content-Type: application/json` takes the one-row fast path; with a charset parameter the same
    request takes the general path. Same bytes back (but the prediction id, one per answer), the same
    version headers, both counted in /metrics."""
    def count() -> float:
        text = module_server.request("GET", "/metrics")[2].decode()
        return metric(text, "deploykit_requests_total", route="predict_json", status="200") or 0.0

    before = count()
    body = json.dumps(row).encode()
    fast = module_server.request("POST", "/predict_json", body, {"Content-Type": "application/json"})
    general = module_server.request("POST", "/predict_json", body, {"Content-Type": "application/json; charset=utf-8"})
    assert fast[0] == general[0] == 200
    fast_id, general_id = json.loads(fast[2])["id"], json.loads(general[2])["id"]
    assert fast_id != general_id
    assert fast[2].replace(fast_id.encode(), b"ID") == general[2].replace(general_id.encode(), b"ID")
    assert fast[2].endswith(b',"success":true,"model_version":1,"id":"' + fast_id.encode() + b'"}')
    assert (fast[1]["x-model-version"], fast[1]["x-prediction-id"]) == ("1", fast_id)
    assert (general[1]["x-model-version"], general[1]["x-prediction-id"]) == ("1", general_id)
    assert fast[1]["content-type"] == general[1]["content-type"] == "application/json"
    assert count() == before + 2


def test_body_limit_with_content_length(module_server: Server) -> None:
    body = b"[" + b" " * (1024 * 1024) + b"6, 250, 1]"
    status, _, data = module_server.request("POST", "/predict_json", body, {"Content-Type": "application/json"})
    assert status == 413
    assert json.loads(data)["error"] == f"body of {len(body)} bytes is over the limit of 1048576 bytes"


def test_body_limit_with_chunked_body(module_server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", module_server.port), timeout=10)
    sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    try:
        for _ in range(40):  # 2.5 MB, no Content-Length
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = read_reply(sock, done=lambda r: b"\r\n\r\n" in r and r.rstrip().endswith(b"}"))
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"success": False, "error": "body is over the limit of 1048576 bytes"}
    assert module_server.request("GET", "/healthz")[0] == 200  # still alive


def test_garbage_never_kills_the_server(module_server: Server) -> None:
    payloads = [b"\x00\xff" * 100, b"{" * 10000 + b"}" * 10000, b"[" * 100000, b'{"instances": {}}',
                b'[[[[1]]]]', b"[1e308, 1e308, 1e308]", b'{"rm": [1], "tax": 2, "age": 3}', b"null", b"-0"]
    for body in payloads:
        for path in ("/predict_json", "/v1/models/boston_mlp:predict"):
            status, _, data = module_server.request("POST", path, body, {"Content-Type": "application/json"})
            assert status in (200, 400, 413, 422), (body[:20], status)
            assert json.loads(data)["success"] is False or status == 200
    assert module_server.request("GET", "/healthz")[0] == 200


@pytest.mark.parametrize("head", [
    b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n[6, 250, 66.5]",
    b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /predict_json HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GARBAGE\r\n\r\n",
])
def test_malformed_http_gets_a_json_400(module_server: Server, head: bytes) -> None:
    """Requests uvicorn's parser rejects before the app sees them are answered as JSON too."""
    with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as sock:
        sock.sendall(head)
        reply = b""
        while part := sock.recv(65536):
            reply += part
    head_part, _, body = reply.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head_part.lower()
    assert json.loads(body) == {"success": False, "error": "malformed HTTP request (request line, headers, Content-Length "
                                                           "or chunked encoding); send a well-formed HTTP/1.1 request"}
    assert module_server.request("GET", "/healthz")[0] == 200


def test_tf_serving_shape(module_server: Server, bundle: Path) -> None:
    expected = Predictor(bundle).predict_rows([[6, 250, 66.5], [7, 300, 20]])
    status, body = module_server.json("POST", "/v1/models/boston_mlp:predict", {"instances": [[6, 250, 66.5], [7, 300, 20]]})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)
    status, body = module_server.json("POST", "/v1/models/boston_mlp:predict",
                                      {"instances": [{"features": [6, 250, 66.5]}, {"rm": 7, "tax": 300, "age": 20}]})
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)
    status, body = module_server.json("POST", "/v1/models/boston_mlp:predict", {"inputs": {"features": [[6, 250, 66.5]]}})
    np.testing.assert_allclose(body["outputs"], expected[:1], rtol=1e-6)
    status, body = module_server.json("GET", "/v1/models/boston_mlp")
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = module_server.json("GET", "/v1/models/boston_mlp/metadata")
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["features"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "3", "name": ""}]


def test_form_and_predict_form(module_server: Server) -> None:
    status, hdrs, page = module_server.request("GET", "/form")
    assert status == 200 and hdrs["content-type"].startswith("text/html")
    assert b'name="rm"' in page and b'action="/predict_form"' in page
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, page = module_server.request("POST", "/predict_form", "rm=6&tax=250&age=66.5", form)
    assert status == 200 and b"Predicted medv" in page
    status, _, page = module_server.request("POST", "/predict_form", "rm=6&tax=%3Cscript%3E&age=66.5", form)
    assert status == 422 and b"&lt;script&gt;" in page and b"<script>" not in page


def test_health_ready_openapi(module_server: Server) -> None:
    assert module_server.json("GET", "/healthz") == (200, {"status": "ok"})
    status, body = module_server.json("GET", "/readyz")
    assert status == 200 and body["ready"] is True and body["variant"] == "float32"
    status, spec = module_server.json("GET", "/openapi.json")
    assert spec["openapi"].startswith("3.") and "/predict_json" in spec["paths"]


def test_cors_only_for_allowed_origins(module_server: Server) -> None:
    _, hdrs, _ = module_server.request("POST", "/predict_json", [6, 250, 66.5], {"Origin": "http://allowed.example"})
    assert hdrs["access-control-allow-origin"] == "http://allowed.example"
    _, hdrs, _ = module_server.request("POST", "/predict_json", [6, 250, 66.5], {"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in hdrs
    status, hdrs, _ = module_server.request("OPTIONS", "/predict_json", None, {
        "Origin": "http://allowed.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204 and hdrs["access-control-allow-origin"] == "http://allowed.example"
    assert "POST" in hdrs["access-control-allow-methods"]
    status, hdrs, _ = module_server.request("OPTIONS", "/predict_json", None, {"Origin": "http://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in hdrs


def test_metrics_prometheus_format(module_server: Server) -> None:
    module_server.request("POST", "/predict_json", [6, 250, 66.5])
    module_server.request("POST", "/predict_json", [20, 250, 66.5])  # rm out of the training range
    status, hdrs, data = module_server.request("GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain; version=0.0.4")
    text = data.decode()
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE "))
            continue
        float(line.rsplit(" ", 1)[1])
    assert metric(text, "deploykit_requests_total", route="predict_json", status="200") >= 2
    assert metric(text, "deploykit_input_out_of_range_total", feature="rm") >= 1
    assert metric(text, "deploykit_predictions_total") >= 2
    assert metric(text, "deploykit_request_duration_seconds_bucket", route="predict_json", le="+Inf") >= 2
    assert metric(text, "deploykit_drift_ks_statistic", feature="rm") is not None
    assert metric(text, "deploykit_drift_detected", feature="tax") is not None


def test_concurrent_requests_get_correct_answers(module_server: Server, bundle: Path) -> None:
    rng = np.random.default_rng(7)
    rows = np.round(np.stack([rng.uniform(4, 8.5, 200), rng.uniform(190, 700, 200), rng.uniform(3, 100, 200)], axis=1), 3)
    expected = Predictor(bundle).predict_rows(rows)[:, 0]

    def one(i: int) -> float:
        status, body = module_server.json("POST", "/predict_json", rows[i].tolist())
        assert status == 200
        return body["prediction"]

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(len(rows))))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def _hold_request(port: int) -> socket.socket:
    """Start a /predict_json request whose body never finishes arriving (it stays in flight)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 14\r\n\r\n[6, 25")
    time.sleep(0.3)
    return sock


def _finish(sock: socket.socket) -> bytes:
    sock.sendall(b"0, 66.5]")
    reply = b""
    while not reply.rstrip().endswith(b"}"):
        part = sock.recv(65536)
        if not part:
            break
        reply += part
    sock.close()
    return reply


def test_a_request_still_sending_its_body_holds_no_concurrency_slot(bundle: Path, server_factory) -> None:
    """It did: 64 clients sending a byte a second kept every prediction at 503 until --body-timeout. The slot
    is taken once the body is in (tests/edge/test_edge_limits.py: the 503 over the limit, in process)."""
    server = server_factory(bundle, "--max-concurrency", "1")
    held = _hold_request(server.port)
    assert server.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200
    assert server.json("GET", "/healthz") == (200, {"status": "ok"})
    reply = _finish(held)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert server.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200


def test_sigterm_finishes_in_flight_flushes_logs_and_exits_0(bundle: Path, server_factory, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    server = server_factory(bundle, log_dir=logs)
    for _ in range(5):
        assert server.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200
    held = _hold_request(server.port)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(OSError):  # no longer accepting
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=2).request("GET", "/healthz")
    reply = _finish(held)
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    code, err = server.wait()  # the one SIGTERM's exit
    assert code == 0, err
    assert "deploykit-edge: stopped" in err and " log lines written to " in err
    predictions = list(csv.DictReader((logs / "predictions.csv").open(newline="")))
    assert len(predictions) == 6
    assert {p["rm"] for p in predictions} == {"6.0"}
    requests = list(csv.DictReader((logs / "requests.csv").open(newline="")))
    assert sum(r["path"] == "/predict_json" and r["status"] == "200" for r in requests) == 6


def test_drift_flag_from_shifted_traffic(bundle: Path, server_factory) -> None:
    server = server_factory(bundle, "--drift-window", "200")
    manifest = json.loads((bundle / "manifest.json").read_text())
    ref = {f["name"]: np.asarray(f["reference_sample"]) for f in manifest["features"]}
    rng = np.random.default_rng(5)
    rows = np.stack([rng.choice(ref[n], 200) for n in ("rm", "tax", "age")], axis=1)
    assert server.json("POST", "/predict_json", rows.tolist())[0] == 200
    report = server.json("GET", "/drift")[1]
    assert report["n"] == 200 and report["drifted"] is False
    shifted = rows + np.array([0.0, 150.0, 0.0])
    assert server.json("POST", "/predict_json", shifted.tolist())[0] == 200
    report = server.json("GET", "/drift")[1]
    assert {f["feature"]: f["drifted"] for f in report["features"]} == {"rm": False, "tax": True, "age": False}
    metrics = server.request("GET", "/metrics")[2].decode()
    assert metric(metrics, "deploykit_drift_detected", feature="tax") == 1


def test_unwritable_log_dir_refuses_to_start(bundle: Path, tmp_path: Path) -> None:
    from edge_helpers import PYTHON, run

    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run([PYTHON, "-m", "edge", "serve", str(bundle), "--port", "1", "--log-dir", str(blocker / "logs")])
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: cannot write logs to {str(blocker / 'logs')!r} (")
    assert r.stderr.rstrip().endswith("pass --log-dir with a writable folder") and r.stderr.count("\n") == 1


def test_two_workers(bundle: Path, server_factory, tmp_path: Path) -> None:
    server = server_factory(bundle, "--workers", "2", log_dir=tmp_path / "logs")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: server.json("POST", "/predict_json", [6, 250, 66.5])[0], range(40)))
    assert statuses == [200] * 40
    code, err = server.stop()
    assert code == 0, err
    files = list((tmp_path / "logs").glob("predictions.*.csv"))
    assert 1 <= len(files) <= 2
    assert sum(len(f.read_text().splitlines()) - 1 for f in files) == 40


def _hammer(port: int, first: int, answered: list[float], stop: "threading.Event") -> None:
    """POST one-row predictions with distinct tax values until stopped or refused; record each 200."""
    k = first
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", "/predict_json", body=json.dumps([6, k, 66.5]),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status == 200 and json.loads(resp.read())["success"]:
                answered.append(float(k))
            conn.close()
        except (OSError, http.client.HTTPException, ValueError):
            return
        k += 1


def test_kill_9_under_load_loses_no_answered_prediction(bundle: Path, server_factory, tmp_path: Path) -> None:
    """Three times: 6 clients, kill -9 after ~0.6 s. Every prediction a client got a 200 for is in the log
    (the writer thread lagged the answers and lost up to 6; now the line is written before the answer)."""
    import threading

    for trial in range(3):
        logs = tmp_path / f"logs{trial}"
        server = server_factory(bundle, log_dir=logs)
        answered: list[list[float]] = [[] for _ in range(6)]
        stop = threading.Event()
        threads = [threading.Thread(target=_hammer, args=(server.port, 200 + 100000 * t, answered[t], stop))
                   for t in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.6 + 0.1 * trial)
        server.proc.kill()
        server.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        got = sorted(v for a in answered for v in a)
        assert len(got) > 20, len(got)  # it was under load
        text = (logs / "predictions.csv").read_text()
        complete = text[: text.rfind("\n") + 1]
        logged = [float(r["tax"]) for r in csv.DictReader(complete.splitlines())]
        assert not set(got) - set(logged), f"trial {trial}: {len(set(got) - set(logged))} answered but not logged"
        assert len(logged) <= len(got) + 6  # at most the in-flight ones were logged but not received


def test_client_column_is_the_peer_unless_the_proxy_is_trusted(bundle: Path, server_factory, tmp_path: Path) -> None:
    """X-Forwarded-For from any local peer was trusted (uvicorn's proxy_headers default)."""
    for args, want in (((), "127.0.0.1:"), (("--forwarded-allow-ips", "127.0.0.1"), "203.0.113.9:")):
        logs = tmp_path / f"logs{len(args)}"
        server = server_factory(bundle, *args, log_dir=logs)
        assert server.json("POST", "/predict_json", [6, 250, 66.5], {"X-Forwarded-For": "203.0.113.9"})[0] == 200
        server.stop()
        (row,) = list(csv.DictReader((logs / "predictions.csv").open(newline="")))
        assert row["client"].startswith(want), (args, row["client"])


def test_exit_message_says_what_the_logs_lost(bundle: Path, server_factory, tmp_path: Path) -> None:
    """The log folder replaced by a file while serving: answers go on, /metrics counts the dropped lines,
    logging resumes when the folder can be made again, and the exit line says what was lost."""
    import shutil

    logs = tmp_path / "logs"
    server = server_factory(bundle, log_dir=logs)
    assert server.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200
    shutil.rmtree(logs)
    logs.write_text("")
    assert server.json("POST", "/predict_json", [6, 251, 66.5])[0] == 200  # 2 lines dropped: prediction, request
    metrics = server.request("GET", "/metrics")[2].decode()
    assert metric(metrics, "deploykit_log_lines_dropped_total") == 2  # (the /metrics request's line is written after)
    logs.unlink()
    assert server.json("POST", "/predict_json", [6, 252, 66.5])[0] == 200
    code, err = server.stop()
    assert code == 0, err
    assert [r["tax"] for r in csv.DictReader((logs / "predictions.csv").open(newline=""))] == ["252.0"]
    assert (f"deploykit-edge: 5 log lines written to {logs}; 3 lines could not be written "
            f"(last error: requests.csv: File exists) and are lost\n") in err


def test_two_workers_share_metrics_and_drift(bundle: Path, server_factory) -> None:
    """With --workers 2 each worker kept its own counters and drift window, and a scrape saw one worker at
    random; now every scrape sums both workers and tests their joint window."""
    server = server_factory(bundle, "--workers", "2", "--drift-window", "100")
    rows = [[6 + i / 100, 250 + i, 66.5] for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda r: server.json("POST", "/predict_json", r)[0], rows))
    assert statuses == [200] * 60
    time.sleep(1.6)  # every worker has written a snapshot since
    for _ in range(6):  # each scrape lands on one worker or the other
        text = server.request("GET", "/metrics")[2].decode()
        assert metric(text, "deploykit_predictions_total") == 60, text
        assert metric(text, "deploykit_requests_total", route="predict_json", status="200") == 60
        assert metric(text, "deploykit_drift_window_rows") == 60
        report = server.json("GET", "/drift")[1]
        assert report["n"] == 60
