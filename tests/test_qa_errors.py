"""Release QA: bad input found by breaking the kit on purpose, each answered with one exact line.

Covers ``deploykit convert``'s output checks (--force never deletes MODEL, DATA or a folder that is not a
bundle; the bundle folder gets mkdir's mode), DATA validation (;-separated, duplicate columns, ragged rows,
huge cells, binary files), strict bundle JSON (NaN, deep nesting, non-numeric golden data) and
``deploykit serve-web``'s answers (JSON errors, encoded traversal, NUL bytes, methods, port range).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from convert.data import read_csv, read_npz
from convert.errors import DeployKitError
from convert.pipeline import check_output
from convert.serve_web import make_server, serve_in_thread
from edge import manifest as mf
from edge.errors import BundleError
from tests.helpers import BOSTON_CSV, run_cli

HEADER = "rm,tax,age,medv\n"
ROWS = "6,250,66.5,20\n" * 12


def one_error_line(result) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ------------------------------------------------------------------ convert: where the bundle goes


def test_force_never_replaces_the_folder_holding_model_or_data(tmp_path: Path) -> None:
    """Was: `convert Y/m.keras --data Y/d.csv --out Y --force` deleted Y/m.keras and Y/d.csv."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.keras").write_bytes(b"model")
    shutil.copy(BOSTON_CSV, work / "d.csv")
    result = run_cli("convert", work / "m.keras", "--data", work / "d.csv", "--target", "medv", "--out", work, "--force")
    assert one_error_line(result) == (
        f"Error: output {str(work)!r} holds the input {str(work / 'm.keras')!r}, which writing the bundle there "
        "would delete; choose another --out"
    )
    assert sorted(p.name for p in work.iterdir()) == ["d.csv", "m.keras"]


def test_force_replaces_only_a_bundle_or_an_empty_folder(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DeployKitError) as e:
        check_output(mine, force=True)
    assert str(e.value) == (
        f"output {str(mine)!r} is not a deploykit bundle (no manifest.json) and is not empty; --force replaces only "
        "a bundle: choose another --out, or remove the folder yourself"
    )
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", force=True)  # no error
    (mine / "manifest.json").write_text("{}")
    check_output(mine, force=True)  # a bundle: replaced


def test_out_inside_a_saved_model_folder_or_the_root_is_refused(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    with pytest.raises(DeployKitError) as e:
        check_output(saved / "b", force=False, inputs=[saved, BOSTON_CSV])
    assert str(e.value) == f"output {str(saved / 'b')!r} is inside the input folder {str(saved)!r}; choose an --out outside it"
    with pytest.raises(DeployKitError) as e:
        check_output(Path("/"), force=True)
    assert str(e.value) == "output '/' is the root folder; choose a bundle folder with --out"


def test_bundle_folder_gets_mkdirs_mode_not_0700(boston_linear_bundle: Path) -> None:
    """mkdtemp's staging folder was renamed into place with mode 0700: unreadable by a service user."""
    umask = os.umask(0)
    os.umask(umask)
    assert boston_linear_bundle.stat().st_mode & 0o777 == 0o777 & ~umask


def test_convert_errors_have_no_blank_line_before_them(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    result = run_cli("convert", tmp_path / "m.keras", "--data", BOSTON_CSV, "--out", tmp_path / "b")
    assert one_error_line(result).startswith(f"Error: output {str(tmp_path / 'b')!r} already exists")


def test_train_checks_its_output_before_training(tmp_path: Path) -> None:
    """Was: a folder or a missing folder as --out was found only after the training (8 s)."""
    (tmp_path / "dir.keras").mkdir()
    result = run_cli("train", "--out", tmp_path / "dir.keras")
    assert one_error_line(result) == (f"Error: cannot write {str(tmp_path / 'dir.keras')!r}: it is a folder; "
                                      "pass a FILE.keras path with --out")
    result = run_cli("train", "--out", tmp_path / "no" / "m.keras")
    assert one_error_line(result) == (f"Error: cannot write {str(tmp_path / 'no' / 'm.keras')!r}: folder "
                                      f"{str(tmp_path / 'no')!r} does not exist; create it first")


def test_demo_checks_its_folder_and_ports(tmp_path: Path) -> None:
    """Was: 'Error: unexpected FileExistsError ... please report it' for a file as --out."""
    (tmp_path / "file").write_text("x")
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "file")
    assert one_error_line(result) == (f"Error: --out {str(tmp_path / 'file')!r} is a file; the demo needs a working "
                                      "folder: choose another --out")
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "d", "--edge-port", "70000")
    assert one_error_line(result) == "Error: --edge-port 70000 is not a port number: pass 0-65535"


# ------------------------------------------------------------------ DATA


def write(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    return path


@pytest.mark.parametrize("sep, label", [(";", "semicolon"), ("\t", "tab")])
def test_csv_with_another_separator(tmp_path: Path, sep: str, label: str) -> None:
    path = write(tmp_path, (HEADER + ROWS).replace(",", sep))
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    shown = repr(HEADER.strip().replace(",", sep))
    assert str(e.value) == f"data file d.csv looks {label}-separated (header {shown}); save it as comma-separated CSV"


def test_csv_with_a_duplicate_column(tmp_path: Path) -> None:
    """Was: pandas renamed the second 'rm' to 'rm.1' and the error said 'missing none; extra none'."""
    path = write(tmp_path, "rm,tax,age,rm\n" + "6,250,66.5,7\n" * 12)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == "data file d.csv has the column 'rm' twice in its header; give every column a distinct name"


def test_csv_rows_longer_or_shorter_than_the_header(tmp_path: Path) -> None:
    """Was: a longer first row made pandas use the first column as the index and shift every column."""
    path = write(tmp_path, HEADER + "6,250,66.5,20,5\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has 5 cells at line 2, the header has 4 columns; "
                            "make every row as long as the header")
    path = write(tmp_path, HEADER + ROWS + "6,250\n")
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has 2 cells at line 14, the header has 4 columns; "
                            "make every row as long as the header")


def test_csv_with_a_huge_cell(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "6,250," + "1" * 200_000 + ",20\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == "data file d.csv is not a readable CSV (field larger than field limit (131072) at line 2); fix the file"
    path = write(tmp_path, HEADER + "6,250,x" + "y" * 100_000 + ",20\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == (f"data file d.csv has a non-numeric or missing value {'x' + 'y' * 39!r}... (100,001 characters) "
                            "in column 'age' at row 1 (line 2); clean the data (every cell must be a finite number)")


def test_csv_row_numbers_count_data_rows_and_name_the_line(tmp_path: Path) -> None:
    """Was: 'at row 4 (line 4 of the file)' for the 3rd data row after a blank line (row = line, both off
    by the blank line). Rows count data rows from 1, as deploykit-edge predict does; the line is the file's."""
    path = write(tmp_path, HEADER + "6,250,66.5,20\n\n6,250,\"66\n\",20\n6,abc,66.5,20\n" + ROWS)  # a cell over 2 lines
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has a non-numeric or missing value 'abc' in column 'tax' at row 3 (line 6); "
                            "clean the data (every cell must be a finite number)")
    path = write(tmp_path, HEADER + "6,250,66.5,20\n\n6,abc,66.5,20\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has a non-numeric or missing value 'abc' in column 'tax' at row 2 (line 4); "
                            "clean the data (every cell must be a finite number)")


def test_npz_with_nan_names_the_row_and_the_index(tmp_path: Path) -> None:
    """Was: 'first at row 2' for the third row (a 0-based index called a row)."""
    import numpy as np

    from convert.dataset import _from_npz
    from convert.reference import Reference, TensorSpec

    x = np.ones((5, 3), dtype=np.float32)
    x[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", features=x)
    ref = Reference(source=tmp_path / "m.keras", inputs=[TensorSpec("features", "float32", [None, 3])], outputs=[])
    with pytest.raises(DeployKitError) as e:
        _from_npz(ref, tmp_path / "d.npz", None)
    assert str(e.value) == "DATA array 'features' has NaN or infinite values (first at row 3, index 2); clean the data"


def test_binary_files_as_csv_and_npz(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER.encode() + b"\xff\xfe\x00\x01" * 100)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == "data file d.csv is not UTF-8 text (it holds the byte 0xff); pass a CSV saved as UTF-8"
    path = write(tmp_path, b"\x93NUMPY garbage" * 10, "d.npz")
    with pytest.raises(DeployKitError) as e:
        read_npz(path)
    assert str(e.value) == (f"data file {str(path)!r} is not an .npz (not a zip archive: corrupt or another format); "
                            "save the arrays with numpy.savez")


def test_csv_with_bom_crlf_and_blank_lines_reads(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff" + (HEADER + ROWS + "\n").replace("\n", "\r\n"))
    table = read_csv(path)
    assert table.columns == ["rm", "tax", "age", "medv"] and table.values.shape == (12, 4)


# ------------------------------------------------------------------ bundle JSON


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "b"
    root.mkdir()
    return root


def test_manifest_with_nan_or_absurd_nesting(tiny_bundle: Path) -> None:
    (tiny_bundle / "manifest.json").write_text('{"schema_version": 1, "x": NaN}')
    with pytest.raises(BundleError) as e:
        mf.load(tiny_bundle)
    assert str(e.value) == f"manifest.json in {str(tiny_bundle)!r} is not valid JSON (NaN is not a JSON number); re-create the bundle"
    (tiny_bundle / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(BundleError) as e:
        mf.load(tiny_bundle)
    assert str(e.value) == f"manifest.json in {str(tiny_bundle)!r} is not valid JSON (nested too deeply); re-create the bundle"


def test_a_file_given_as_the_bundle(tiny_bundle: Path) -> None:
    (tiny_bundle / "golden.json").write_text("{}")
    with pytest.raises(BundleError) as e:
        mf.load(tiny_bundle / "golden.json")
    assert str(e.value) == (f"{str(tiny_bundle / 'golden.json')!r} is a file, not a bundle folder; "
                            "pass the folder `deploykit convert` wrote")


@pytest.mark.parametrize("golden, message", [
    ({"inputs": {"features": [["a", "b", "c"]]}, "outputs": {"o": [[1.0]]}},
     "golden.json input 'features' is not a rectangular array of numbers; re-create the bundle"),
    ({"inputs": {"features": [[1, 2, 3], [1]]}, "outputs": {"o": [[1.0]]}},
     "golden.json input 'features' is not a rectangular array of numbers; re-create the bundle"),
    ({"inputs": {"features": [[1, 2, 3]]}, "outputs": {"o": []}},
     "golden.json output 'o' is not a rectangular array of numbers; re-create the bundle"),
    ({"inputs": [1, 2], "outputs": {}}, "golden.json 'inputs' is not an object of named arrays; re-create the bundle"),
])
def test_golden_that_is_not_numeric(tiny_bundle: Path, golden: dict, message: str) -> None:
    """Was: strings in golden.json reached the selftest as 'unexpected ValueError ... please report it'."""
    (tiny_bundle / "golden.json").write_text(json.dumps(golden))
    with pytest.raises(BundleError) as e:
        mf.load_golden(tiny_bundle)
    assert str(e.value) == message


# ------------------------------------------------------------------ serve-web


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, int]]:
    root = tmp_path / "bundle" / "web"
    root.mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "manifest.json").write_text("{}")
    (root / "model").mkdir()
    (root / "model" / "model.json").write_text("{}")
    (tmp_path / "bundle" / "secret.json").write_text('"secret"')
    server, _ = serve_in_thread(root)
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


def request(addr: tuple[str, int], method: str, raw_path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    conn.putrequest(method, raw_path, skip_accept_encoding=True)
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, body


@pytest.mark.parametrize("raw", ["/%2e%2e/secret.json", "/model/..%2f..%2fmanifest.json", "/.%2e/manifest.json",
                                 "/%00", "/index.html%00.js", "/nope"])
def test_serve_web_errors_are_json_404(web: tuple[str, int], raw: str) -> None:
    """Was: %2e%2e paths answered 200 with a file from another spot of the web folder, and a NUL byte
    dropped the connection after a traceback on the server's terminal."""
    status, headers, body = request(web, "GET", raw)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"success": False, "error": "File not found", "status": 404}


def test_serve_web_methods(web: tuple[str, int]) -> None:
    status, headers, body = request(web, "POST", "/index.html")
    assert (status, headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    assert json.loads(body) == {"success": False, "status": 405,
                                "error": "method POST is not allowed; this server only serves files (use GET, HEAD, OPTIONS)"}
    status, headers, body = request(web, "OPTIONS", "/index.html")
    assert (status, headers["allow"], body) == (204, "GET, HEAD, OPTIONS", b"")
    status, headers, body = request(web, "HEAD", "/nope")
    assert (status, headers["content-type"], body) == (404, "application/json", b"")


@pytest.mark.parametrize("port", [65536, -1])
def test_serve_web_port_out_of_range(tmp_path: Path, port: int) -> None:
    (tmp_path / "web").mkdir()
    with pytest.raises(DeployKitError) as e:
        make_server(tmp_path / "web", port=port)
    assert str(e.value) == f"--port {port} is not a port number: pass 0-65535 (0 picks a free port)"


def test_ctrl_c_that_python_ignored_in_a_finalizer_stops_at_the_next_step() -> None:
    """Was: Ctrl+C landing in a TensorFlow __del__ printed 'Exception ignored in ...' and a traceback,
    then the convert went on to exit 0."""
    import io
    import types

    from convert import cli, interrupt, show

    cli._unraisable(types.SimpleNamespace(exc_type=KeyboardInterrupt))
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with show.steps(out) as step:
            step("Converting")
    assert not interrupt.pending() and out.getvalue() == ""


# A real SIGINT delivered inside tensorflowjs's graph freezing, which runs under `except BaseException`
# and falls back to the TF1 route: the Ctrl+C a user presses during "Converting the TFJS graph model".
CTRL_C_IN_TFJS_FREEZE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also when started with SIGINT ignored
import tensorflowjs.converters.tf_saved_model_conversion_v2 as v2
real = v2._freeze_saved_model_v2
def interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the Python-level handler raises KeyboardInterrupt in here, as for a Ctrl+C
    return real(*args, **kwargs)
v2._freeze_saved_model_v2 = interrupted
from convert.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_the_tfjs_graph_conversion_is_an_interrupt(tmp_path: Path, boston_linear: Path) -> None:
    """Was: 'Error: tensorflowjs cannot convert this model to a graph model: Identity is not in graph',
    exit 1 (tensorflowjs swallowed the KeyboardInterrupt and its fallback failed)."""
    import subprocess
    import sys

    from tests.helpers import QUIET_ENV, ROOT

    temp = tmp_path / "tmp"  # the work folder and the native log go here: all must be removed
    temp.mkdir()
    out = tmp_path / "bundle"
    env = {**os.environ, **QUIET_ENV, "TMPDIR": str(temp)}
    env.pop("DEPLOYKIT_DEBUG", None)
    result = subprocess.run([sys.executable, "-c", CTRL_C_IN_TFJS_FREEZE, "convert", str(boston_linear), "--data",
                             str(BOSTON_CSV), "--target", "medv", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines()[-1] == "Error: interrupted"
    assert "Converting TFLite int16x8" in result.stderr  # it got as far as the graph model
    assert "tensorflowjs" not in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no bundle, no staging folder
    assert list(temp.iterdir()) == []


def test_a_ctrl_c_a_library_swallowed_is_raised_at_the_next_check() -> None:
    """The mechanism the catch-alls rely on: the SIGINT is noted even when the KeyboardInterrupt it raised
    was caught by a library's `except BaseException`."""
    import signal
    import time

    from convert import interrupt

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    with interrupt.noting_sigint():
        assert signal.getsignal(signal.SIGINT) is interrupt._handler
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except BaseException:  # what tensorflowjs does
            pass
        assert interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert not interrupt.pending()
        interrupt.check()  # noted once, raised once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_teardown_after_a_successful_convert_keeps_status_0(tmp_path: Path, boston_linear: Path) -> None:
    """Was: a Ctrl+C in the second of TensorFlow teardown after the bundle table killed the process with
    SIGINT (status 130 in a shell) and no message, though the bundle was complete."""
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import QUIET_ENV, ROOT

    out = tmp_path / "bundle"
    env = {**os.environ, **QUIET_ENV}
    env.pop("DEPLOYKIT_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "convert", "convert", str(boston_linear), "--data", str(BOSTON_CSV),
                             "--target", "medv", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the bundle table ends with its bottom border; then only teardown is left
            if line.startswith("└"):
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err
    assert (out / "manifest.json").is_file()
