"""`deploykit-edge` predict, selftest, info, drift, exact messages: run in-process through ``edge.cli.main``
(``tests.helpers.run_cli``); the BOM-on-stdin and serve-port tests run the installed program in a subprocess,
its exit codes and its stdin as bytes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_helpers import rewrite_manifest
from tests.helpers import ENV, PYTHON, ROOT as REPO, run, run_cli

EDGE = [PYTHON, "-m", "edge"]


def edge(*args: str, input: str | None = None):
    """``deploykit-edge ARGS`` in this process; a ``CompletedProcess`` with its status and text."""
    return run_cli(*args, module="edge", stdin=input)


def test_predict_csv_keeps_order_ignores_extra_columns_and_reports_bad_rows(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,age,rm,tax,comment\n"
                   "a,66.5,6,250,first\n"
                   "b,20,7,abc,bad tax\n"
                   "c,30,5\n"
                   "d,40,8,300,\"quoted, comma\"\n")
    out = tmp_path / "out.csv"
    r = edge("predict", str(bundle), "--input", str(src), "--output", str(out))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "bad row: row 2 (line 3), column tax: 'abc' is not a number",
        "bad row: row 3 (line 4), column tax: missing",
        "Error: 2 of 4 rows could not be predicted (listed above); the other 2 were written",
    ]
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[0]["prediction"] and rows[3]["prediction"]
    assert rows[1]["prediction"] == "" and rows[1]["error"] == "row 2 (line 3), column tax: 'abc' is not a number"
    assert [r["row"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[3]["comment"] == "quoted, comma"
    from edge.runner import Predictor

    expected = Predictor(bundle).predict_rows([[6, 250, 66.5], [8, 300, 40]])[:, 0]
    np.testing.assert_allclose([float(rows[0]["prediction"]), float(rows[3]["prediction"])], expected, rtol=1e-6)


def test_predict_row_numbers_count_data_rows_and_name_the_line(bundle: Path, tmp_path: Path) -> None:
    """Rows are numbered from 1 over data rows (as the output's row column); the line is the file's, so a
    blank line or a quoted cell over two lines does not make the message point at the wrong line."""
    src = tmp_path / "in.csv"
    src.write_text("rm,tax,age,note\n"
                   "x,250,66.5,first\n"
                   "\n"
                   "6,250,66.5,\"two\nlines\"\n"
                   "6,250,\n")
    out = tmp_path / "out.csv"
    r = edge("predict", str(bundle), "--input", str(src), "--output", str(out))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "bad row: row 1 (line 2), column rm: 'x' is not a number",
        "bad row: row 3 (line 6), column age: empty",
        "Error: 2 of 3 rows could not be predicted (listed above); the other 1 was written",
    ]
    assert [r["row"] for r in csv.DictReader(out.open(newline=""))] == ["1", "2", "3"]


def test_predict_jsonl_row_numbers(bundle: Path) -> None:
    lines = '{"rm": 6, "tax": 250, "age": 66.5}\n\nnot json\n[1, 2, 3]\n{"rm": 6, "tax": "abc", "age": 1}\n'
    r = edge("predict", str(bundle), "--input", "-", input=lines)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "bad row: row 2 (line 3): not JSON (Expecting value)",
        "bad row: row 3 (line 4): not a JSON object",
        "bad row: row 4 (line 5), column tax: 'abc' is not a number",
        "Error: 3 of 4 rows could not be predicted (listed above); the other 1 was written",
    ]


def test_predict_jsonl_from_stdin_to_stdout(bundle: Path) -> None:
    lines = '{"rm": 6, "tax": 250, "age": 66.5}\n{"rm": 7, "tax": 300, "age": 20, "x": 1}\nnot json\n'
    r = edge("predict", str(bundle), "--input", "-", input=lines)
    assert r.returncode == 1
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 3 and rows[0]["prediction"] and rows[1]["prediction"] and not rows[2]["prediction"]
    assert r.stderr.splitlines()[-1] == "Error: 1 of 3 rows could not be predicted (listed above); the other 2 were written"


def test_predict_csv_without_a_feature_column(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("rm,age\n6,66.5\n")
    r = edge("predict", str(bundle), "--input", str(src))
    assert r.returncode == 1
    assert r.stderr == "Error: the input has no column tax; expected the features rm, tax, age in the header\n"


@pytest.mark.parametrize("text, message", [
    ("rm,tax,age,rm\n6,250,66.5,7\n", "the CSV header has the column 'rm' twice; keep one column per name"),
    ("rm;tax;age\n6;250;66.5\n", "the CSV looks semicolon-separated (header 'rm;tax;age'); save it as comma-separated CSV"),
    ("rm\ttax\tage\n6\t250\t66.5\n", "the CSV looks tab-separated (header 'rm\\ttax\\tage'); save it as comma-separated CSV"),
])
def test_predict_csv_header_problems(bundle: Path, tmp_path: Path, text: str, message: str) -> None:
    src = tmp_path / "in.csv"
    src.write_text(text)
    r = edge("predict", str(bundle), "--input", str(src))
    assert r.returncode == 1
    assert r.stderr == f"Error: {message}\n"


def test_selftest_passes_and_fails_honestly(bundle: Path) -> None:
    r = edge("selftest", str(bundle))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "selftest passed"
    assert r.stderr == ""


def test_selftest_without_golden(bundle_copy: Path) -> None:
    (bundle_copy / "golden.json").unlink()
    r = edge("selftest", str(bundle_copy))
    assert r.returncode == 1
    assert r.stderr == f"Error: {str(bundle_copy)!r} has no golden.json; copy it with the bundle or re-create the bundle\n"


def test_errors_are_one_line(tmp_path: Path) -> None:
    r = edge("selftest", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert r.stderr == f"Error: bundle folder {str(tmp_path / 'nope')!r} does not exist; pass the folder `deploykit convert` wrote\n"
    r = edge("info", str(tmp_path))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ")


def test_tampered_bundle_refuses_to_serve(bundle_copy: Path) -> None:
    path = bundle_copy / "edge/model.fp32.tflite"
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    r = run(EDGE + ["serve", str(bundle_copy), "--port", "1"])  # the program: a missed check would serve, not hang the tests
    assert r.returncode == 1
    assert r.stderr.startswith("Error: bundle file edge/model.fp32.tflite does not match its sha256")
    assert r.stderr.count("\n") == 1


def test_info(bundle: Path) -> None:
    r = edge("info", str(bundle))
    assert r.returncode == 0, r.stderr
    assert "interpreter here: ai_edge_litert" in r.stdout
    for variant in ("float32", "float16", "dynamic", "int8"):
        assert f"  {variant}" in r.stdout
    info = json.loads(edge("info", str(bundle), "--json").stdout)
    assert info["default_variant"] == "float32"
    assert all(a["file"] == "ok" for a in info["artifacts"])


def test_info_of_a_bundle_without_tflite_says_so_and_why(bundle_copy: Path) -> None:
    """It said "default variant: float32" of a bundle convert could write no TFLite artifact for."""
    def drop_tflite(m: dict) -> None:
        m["artifacts"] = [a for a in m["artifacts"] if a["format"] != "tflite"]
        m["skipped"] = [{"format": "tflite", "variant": "float32",
                         "reason": "the TFLite converter cannot make float32: 'tf.MatMul' op is neither a custom op nor a flex op"}]

    rewrite_manifest(bundle_copy, drop_tflite)
    r = edge("info", str(bundle_copy))
    assert r.returncode == 0, r.stderr
    assert "default variant: none (no TFLite artifact: convert could not write one)\n" in r.stdout
    assert ("  not written: tflite float32: the TFLite converter cannot make float32: 'tf.MatMul' op is neither a "
            "custom op nor a flex op\n") in r.stdout
    assert json.loads(edge("info", str(bundle_copy), "--json").stdout)["default_variant"] is None
    r = edge("selftest", str(bundle_copy))  # it said "(it has: none); pass --variant with one of those"
    assert (r.returncode, r.stderr) == (1, "Error: the bundle has no TFLite artifact: convert could not write one "
                                           "(`deploykit-edge info` says why); change the model and convert it again, "
                                           "or use its web page\n")


def test_drift_cli_on_a_log(bundle: Path, tmp_path: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    ref = {f["name"]: np.asarray(f["reference_sample"]) for f in manifest["features"]}
    rng = np.random.default_rng(3)
    header = "time,request_id,client,rm,tax,age,prediction,variant,model_sha256,latency_ms\n"
    same = [(rng.choice(ref["rm"]), rng.choice(ref["tax"]), rng.choice(ref["age"])) for _ in range(300)]
    (tmp_path / "same").mkdir()
    (tmp_path / "same/predictions.csv").write_text(header + "".join(f"t,i,c,{a},{b},{c},1,float32,s,1\n" for a, b, c in same))
    r = edge("drift", str(tmp_path / "same"), "--bundle", str(bundle))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "no drift detected"
    shifted = tmp_path / "shifted.csv"
    shifted.write_text(header + "".join(f"t,i,c,{a + 1.5},{b},{c},1,float32,s,1\n" for a, b, c in same))
    r = edge("drift", str(shifted), "--bundle", str(bundle), "--json")
    report = json.loads(r.stdout)
    assert {f["feature"]: f["drifted"] for f in report["features"]} == {"rm": True, "tax": False, "age": False}


# --------------------------------------------------------------------------- release QA: odd input files and ports


def test_predict_reads_a_csv_with_a_byte_order_mark_from_a_file_and_stdin(bundle: Path, tmp_path: Path) -> None:
    """A UTF-8 byte order mark before the header (from a file or stdin, the installed program) is not part of the
    first column's name."""
    src = tmp_path / "bom.csv"
    src.write_bytes(b"\xef\xbb\xbfrm,tax,age\r\n6,250,66.5\r\n")
    for args, stdin in ((["--input", str(src)], None), (["--input", "-"], src.read_bytes())):
        r = subprocess.run(EDGE + ["predict", str(bundle), *args], cwd=REPO, env=ENV, capture_output=True, input=stdin,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines()[0] == "row,rm,tax,age,prediction,error"


def test_predict_input_that_is_binary_deeply_nested_or_has_a_huge_cell(bundle: Path, tmp_path: Path) -> None:
    """Binary input, a too deeply nested JSON line and an over-long CSV cell are each one error naming the file."""
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"rm,tax,age\n\x94\x00\xff")
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "\n")
    huge = tmp_path / "huge.csv"
    huge.write_text("rm,tax,age\n6,250," + "6" * 200_000 + "\n")
    expected = {
        binary: f"Error: --input {binary} is not UTF-8 text (it holds the byte 0x94); give a CSV or JSON lines file saved as UTF-8",
        deep: f"Error: --input {deep} has a JSON line nested too deeply to read; give one flat object per line",
        huge: f"Error: --input {huge} is not a readable CSV (field larger than field limit (131072)); fix the file",
    }
    for path, message in expected.items():
        r = edge("predict", str(bundle), "--input", str(path))
        assert (r.returncode, r.stderr) == (1, message + "\n")


def test_predict_refuses_to_write_over_its_input(bundle: Path, tmp_path: Path) -> None:
    """--output naming the --input file (through a link too) is refused before anything is written."""
    src = tmp_path / "in.csv"
    src.write_text("rm,tax,age\n6,250,66.5\n")
    (tmp_path / "link.csv").symlink_to(src)
    r = edge("predict", str(bundle), "--input", str(src), "--output", str(tmp_path / "link.csv"))
    assert (r.returncode, r.stderr) == (
        1, f"Error: --output {tmp_path / 'link.csv'} is the --input file, which writing would erase; choose another --output\n")
    assert src.read_text() == "rm,tax,age\n6,250,66.5\n"


def test_serve_port_in_use_or_out_of_range_is_one_line(bundle: Path) -> None:
    """The installed program: a port in use, a port out of range and a concurrency of 0 are each one error line
    and exit status 1, before anything is served."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run(EDGE + ["serve", str(bundle), "--port", str(port)])
        assert (r.returncode, r.stderr) == (
            1, f"Error: cannot listen on 127.0.0.1:{port} (Address already in use); pick a free port with --port\n")
    r = run(EDGE + ["serve", str(bundle), "--port", "99999"])
    assert (r.returncode, r.stderr) == (1, "Error: --port 99999 is not a port number; pass 0-65535 (0 picks a free port)\n")
    r = run(EDGE + ["serve", str(bundle), "--max-concurrency", "0"])
    assert (r.returncode, r.stderr) == (1, "Error: --max-concurrency must be from 1 to 1,099,511,627,776 (got 0)\n")


def test_selftest_on_golden_outside_float32_prints_no_numpy_warning(bundle_copy: Path) -> None:
    golden = json.loads((bundle_copy / "golden.json").read_text())
    golden["inputs"]["features"][0] = [1e308, 1e308, 1e308]
    (bundle_copy / "golden.json").write_text(json.dumps(golden))
    r = edge("selftest", str(bundle_copy))
    assert r.returncode == 1
    noise = json.loads((bundle_copy / "manifest.json").read_text())["outputs"][0]["reference_noise"]
    assert r.stderr.splitlines() == [
        f"Error: selftest failed: medv: max error inf of the output's scale (max|ref|) > {1e-5 + 2 * noise:.3g} "
        f"(1e-05 + 2 × the reference's own float32 noise {noise:.3g})"]


def test_predict_all_rows_bad_and_one_row_good_messages(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("rm,tax,age\nx,250,66.5\n")
    r = edge("predict", str(bundle), "--input", str(bad), "--output", str(tmp_path / "o1.csv"))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "Error: 1 of 1 rows could not be predicted (listed above); no row was predicted"
    good = tmp_path / "good.csv"
    good.write_text("rm,tax,age\n6,250,66.5\n")
    r = edge("predict", str(bundle), "--input", str(good), "--output", str(tmp_path / "o2.csv"))
    assert r.returncode == 0
    assert r.stderr.splitlines()[-1].startswith("predicted 1 row with float32 on ")


def test_predict_output_neutralises_headers_and_carriage_returns(bundle: Path, tmp_path: Path) -> None:
    """Header cells of the output were written raw, and a CR inside a quoted cell came out unquoted."""
    src = tmp_path / "in.csv"
    src.write_text('rm,tax,age,"=HYPERLINK(""http://x"")","@note"\n6,250,66.5,"a\rb","+1+cmd"\n', newline="")
    out = tmp_path / "out.csv"
    r = edge("predict", str(bundle), "--input", str(src), "--output", str(out))
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 2
    header, row = list(csv.reader(out.open(newline="")))
    assert header == ["row", "rm", "tax", "age", "'=HYPERLINK(\"http://x\")", "'@note", "prediction", "error"]
    assert row[4:6] == ["a\\rb", "'+1+cmd"]


def test_serve_banner_names_the_interpreter_threads(bundle: Path) -> None:
    """Without --threads the count is measured (edge.runner's "auto" rule) and the banner says what was
    chosen and why; --threads N is taken as given."""
    import re

    from edge_helpers import Server

    code, err = Server(bundle).stop()
    assert code == 0, err
    assert re.search(r"\) with \S+ \S+, 1 interpreter thread \(auto: 1 thread, [0-9.e+-]+ ms a prediction "
                     r"\(under 1 ms\)\) on http://127\.0\.0\.1:\d+ \(1 worker\)\n", err), err
    code, err = Server(bundle, "--threads", "2").stop()
    assert code == 0, err
    assert re.search(r", 2 interpreter threads \(--threads\) on http://", err), err


@pytest.mark.parametrize("flags, message", [
    (["--workers", "99999999999999999999999"],  # it forked without end
     "--workers must be from 1 to 64 (got 99999999999999999999999); one a core is the usual choice"),
    (["--host", ""], "--host is empty, which listens on every interface; pass 127.0.0.1, or 0.0.0.0 to mean every one"),
    (["--header-timeout", "inf"], "--header-timeout must be a number of seconds above 0 and at most 86,400 (got inf)"),
    (["--body-timeout", "nan"], "--body-timeout must be a number of seconds above 0 and at most 86,400 (got nan)"),
    (["--max-body", "1" + "0" * 23], f"--max-body must be from 1 to 1,099,511,627,776 (got 1{'0' * 23})"),
])
def test_serve_refuses_limits_that_protect_nothing(flags: list[str], message: str, tmp_path: Path) -> None:
    r = run_cli("serve", str(tmp_path), *flags, module="edge")
    assert (r.returncode, r.stderr) == (1, f"Error: {message}\n")


def test_an_empty_variant_or_an_origin_that_cannot_match_is_refused(bundle: Path) -> None:
    """--variant '' meant the default, and --allow-origin took values no browser sends (a path, a comma list,
    javascript:): nothing was allowed, silently."""
    r = edge("selftest", str(bundle), "--variant", "")
    assert (r.returncode, r.stderr) == (1, "Error: unknown variant ''; choose one of float32, float16, dynamic, "
                                           "int16x8, int8 (or fp32, fp16)\n")
    for bad in ("javascript:alert(1)", "https://a.org,https://b.org", "https://a.org/app", "https://a.org\r\nX: y"):
        r = run_cli("serve", str(bundle), "--allow-origin", bad, module="edge")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"Error: argument --allow-origin: {bad[:80]!r} is not an origin: pass "
                                   "scheme://host[:port] such as https://example.org, once per origin; "), r.stderr
