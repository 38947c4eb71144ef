"""The model repository: layout, version states, hot reload by scanning, labels (edge/repository.py).

Most tests use a stand-in loader (the folders hold a small JSON file saying what loading gives), so they
run without TensorFlow or an interpreter; the last ones load real bundles through the default loader.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Optional

import pytest

from edge.errors import EdgeError
from edge.repository import NotServed, Repository, State, interface_difference

MANIFEST = {"task": "regression", "inputs": [{"name": "features", "dtype": "float32", "shape": [None, 3]}],
            "features": [{"name": n, "input": "features", "index": i} for i, n in enumerate(["rm", "age", "b"])],
            "outputs": [{"name": "medv", "key": "output_0", "dtype": "float32", "shape": [None, 1], "range": [5.0, 50.0]}]}


class FakePredictor:
    def __init__(self, manifest: dict, value: float) -> None:
        self.manifest, self.value, self.variant = manifest, value, "float32"


def fake_loader(path: Path, variant: Optional[str]) -> tuple[Any, dict]:
    spec = json.loads((path / "fake.json").read_text())
    if "fail" in spec:
        raise EdgeError(spec["fail"])
    manifest = json.loads(json.dumps(MANIFEST))
    if spec.get("inputs"):
        manifest["inputs"][0]["shape"] = [None, spec["inputs"]]
    return FakePredictor(manifest, float(spec.get("value", path.name))), {"passed": True}


def add(models: Path, name: str, version: str, **spec: Any) -> Path:
    folder = models / name / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fake.json").write_text(json.dumps(spec))
    return folder


def config(models: Path, **model: Any) -> None:
    path = models / "rollout.json"
    path.write_text(json.dumps({"schema_version": 1, "models": {"boston": model}}))
    st = path.stat()  # a new mtime even within the filesystem's timestamp granularity
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def repo(models: Path) -> Repository:
    return Repository(models, loader=fake_loader)


def test_versions_are_integer_folders_and_others_are_ignored(tmp_path: Path) -> None:
    for v in ("1", "2", "10"):
        add(tmp_path, "boston", v)
    for v in ("3.tmp", "03", "0", "abc"):
        add(tmp_path, "boston", v)
    (tmp_path / ".hidden").mkdir()
    r = repo(tmp_path)
    assert r.scan() == ["boston 1: AVAILABLE", "boston 2: AVAILABLE", "boston 10: AVAILABLE"]
    assert sorted(r.models) == ["boston"]
    assert r.status("boston") == {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in ("10", "2", "1")]}
    assert r.resolve("boston").number == 10  # no stable label: the newest AVAILABLE version
    assert r.scan() == []  # nothing changed


def test_a_failed_version_stays_out_with_its_reason_and_is_retried_when_its_files_change(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    bad = add(tmp_path, "boston", "2", fail="bundle file edge/model.fp32.tflite does not match its sha256")
    r = repo(tmp_path)
    assert r.scan()[1] == "boston 2: END (bundle file edge/model.fp32.tflite does not match its sha256)"
    assert r.status("boston")["model_version_status"][0] == {
        "version": "2", "state": "END",
        "status": {"error_code": "UNKNOWN", "error_message": "bundle file edge/model.fp32.tflite does not match its sha256"}}
    assert r.resolve("boston").number == 1
    with pytest.raises(NotServed) as err:
        r.resolve("boston", version=2)
    assert (err.value.status, str(err.value)) == (
        503, "version 2 of model 'boston' is END: bundle file edge/model.fp32.tflite does not match its sha256")
    assert r.scan() == []  # same files: not tried again
    (bad / "fake.json").write_text(json.dumps({"value": 2.5}))
    os.utime(bad / "fake.json", ns=(1, 2_000_000_000_000_000_000))
    assert r.scan() == ["boston 2: AVAILABLE"]
    assert r.resolve("boston").predictor.value == 2.5


def test_a_version_is_loading_while_it_is_checked(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    seen: list[str] = []
    holder: dict[str, Repository] = {}

    def loader(path: Path, variant: Optional[str]) -> tuple[Any, dict]:
        seen.append(holder["r"].status("boston")["model_version_status"][0]["state"])
        with pytest.raises(NotServed) as err:
            holder["r"].resolve("boston", version=1)
        seen.append(str(err.value))
        return fake_loader(path, variant)

    holder["r"] = Repository(tmp_path, loader=loader)
    holder["r"].scan()
    assert seen == ["LOADING", "version 1 of model 'boston' is LOADING"]


def test_a_removed_folder_unloads_after_its_requests(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    add(tmp_path, "boston", "2")
    r = repo(tmp_path)
    r.scan()
    held = r.resolve("boston", version=2)
    held.acquire()
    predictor = held.predictor
    shutil.rmtree(tmp_path / "boston" / "2")
    assert r.scan() == ["boston 2: UNLOADING (its folder was removed)"]
    assert held.state is State.UNLOADING and predictor.value == 2.0  # the request keeps its predictor
    assert r.resolve("boston").number == 1
    held.release()
    assert held.state is State.END and held.error == "" and held.predictor is None
    shutil.rmtree(tmp_path / "boston" / "1")
    assert r.scan() == ["boston 1: UNLOADING (its folder was removed)", "boston 1: END"]
    with pytest.raises(NotServed) as err:
        r.resolve("boston")
    assert (err.value.status, str(err.value)) == (503, "model 'boston' has no AVAILABLE version (1 END, 2 END)")


def test_labels_follow_the_config_and_wait_for_their_version(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    config(tmp_path, labels={"stable": 1, "canary": 2})
    r = repo(tmp_path)
    r.scan()
    assert r.models["boston"].labels == {"stable": 1}
    assert r.models["boston"].notes == {"canary": "wants version 2 (absent)"}
    with pytest.raises(NotServed) as err:
        r.resolve("boston", label="canary")
    assert (err.value.status, str(err.value)) == (
        503, "label 'canary' of model 'boston' points to no AVAILABLE version: wants version 2 (absent)")
    add(tmp_path, "boston", "2")
    r.scan()
    assert r.models["boston"].labels == {"stable": 1, "canary": 2}
    assert r.resolve("boston").number == 1 and r.resolve("boston", label="canary").number == 2
    # the config moves stable to a version that fails: stable stays where it was, with the reason
    add(tmp_path, "boston", "3", fail="self-test failed: output_0 off by 2.1 (limit 1e-05)")
    config(tmp_path, labels={"stable": 3})
    r.scan()
    assert r.models["boston"].labels == {"stable": 1}
    assert r.models["boston"].notes == {
        "stable": "wants version 3 (END: self-test failed: output_0 off by 2.1 (limit 1e-05)); stays on version 1"}
    with pytest.raises(NotServed) as err:
        r.resolve("boston", label="canary")
    assert (err.value.status, str(err.value)) == (404, "label 'canary' of model 'boston' not found; it has stable")


def test_lookups_name_what_is_missing(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    add(tmp_path, "iris", "4")
    r = repo(tmp_path)
    r.scan()
    cases = [(("nope",), {}, 404, "model 'nope' not found; this server serves 'boston', 'iris'"),
             (("boston",), {"version": 7}, 404, "version 7 of model 'boston' not found; it has 1 AVAILABLE"),
             (("boston",), {"label": "canary"}, 404, "label 'canary' of model 'boston' not found; it has no labels")]
    for args, kw, status, message in cases:
        with pytest.raises(NotServed) as err:
            r.resolve(*args, **kw)
        assert (err.value.status, str(err.value)) == (status, message)
    with pytest.raises(NotServed) as err:
        r.set_label("boston", "stable", 2)
    assert str(err.value) == "version 2 of model 'boston' not found"


def test_a_label_swap_under_load_never_mixes_or_drops(tmp_path: Path) -> None:
    """A client thread resolves and answers throughout while the stable label moves 2000 times: every
    answer comes from the version it resolved, and every resolve finds a version."""
    add(tmp_path, "boston", "1")
    add(tmp_path, "boston", "2")
    r = repo(tmp_path)
    r.scan()
    r.set_label("boston", "stable", 1)
    stop = threading.Event()
    answers: list[tuple[int, float]] = []
    failures: list[str] = []

    def client() -> None:
        while not stop.is_set():
            try:
                version = r.resolve("boston")
                version.acquire()
                try:
                    answers.append((version.number, version.predictor.value))
                finally:
                    version.release()
            except Exception as exc:  # noqa: BLE001 - counted, asserted empty
                failures.append(repr(exc))

    thread = threading.Thread(target=client)
    thread.start()
    for i in range(2000):
        r.set_label("boston", "stable", 2 if i % 2 == 0 else 1)
    stop.set()
    thread.join()
    assert failures == []
    assert len(answers) > 0 and all(float(n) == value for n, value in answers)
    assert {n for n, _ in answers} <= {1, 2}


def test_a_version_with_another_interface_is_refused(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    add(tmp_path, "boston", "2", inputs=4)
    r = repo(tmp_path)
    r.scan()
    assert r.models["boston"].versions[2].error == (
        "version 2 cannot serve beside version 1: its inputs are [('features', 'float32', [None, 4])], not "
        "[('features', 'float32', [None, 3])]; give it another model name")
    other = json.loads(json.dumps(MANIFEST))
    other["task"] = "classification"
    assert interface_difference(other, MANIFEST) == "its task is 'classification', not 'regression'"
    assert interface_difference(MANIFEST, MANIFEST) is None


def test_a_rolled_back_canary_stays_out_until_the_config_moves_it(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        add(tmp_path, "boston", v)
    config(tmp_path, labels={"stable": 1, "canary": 2})
    r = repo(tmp_path)
    r.scan()
    assert r.take_out("boston", "canary", "error rate 0.5 over the limit 0.05") == 2
    assert r.take_out("boston", "canary", "again") is None
    assert r.models["boston"].labels == {"stable": 1}
    note = ("version 2 was rolled back (error rate 0.5 over the limit 0.05); point 'canary' at another version to "
            "use it again")
    assert r.models["boston"].notes == {"canary": note}
    r.scan()
    assert r.models["boston"].labels == {"stable": 1}
    config(tmp_path, labels={"stable": 1, "canary": 3})
    r.scan()
    assert r.models["boston"].labels == {"stable": 1, "canary": 3} and r.models["boston"].notes == {}


def test_a_bad_config_refuses_to_start_and_later_keeps_the_last_good_one(tmp_path: Path) -> None:
    add(tmp_path, "boston", "1")
    (tmp_path / "rollout.json").write_text('{"schema_version": 1, "models": {"boston": {"canary": {"share": 2}}}}')
    with pytest.raises(EdgeError) as err:
        repo(tmp_path)
    assert str(err.value) == "rollout.json is invalid at models/boston/canary/share: 2 is greater than the maximum of 1"
    config(tmp_path, labels={"stable": 1})
    r = repo(tmp_path)
    r.scan()
    (tmp_path / "rollout.json").write_text("{")
    r.scan()
    assert r.config_error.startswith(f"the rollout config {str(tmp_path / 'rollout.json')!r} is not valid JSON (")
    assert r.models["boston"].labels == {"stable": 1}
    assert r.describe()["config_error"] == r.config_error


def test_the_repository_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(EdgeError) as err:
        Repository(tmp_path / "nope")
    assert str(err.value) == (f"model repository {str(tmp_path / 'nope')!r} is not a folder; pass MODELS/ "
                              "(MODELS/NAME/VERSION/ each a bundle) or one bundle folder")


# ---------------------------------------------------------------------- real bundles, the default loader

def test_a_single_bundle_is_one_model_with_version_1(bundle: Path) -> None:
    r = Repository(bundle)
    name = json.loads((bundle / "manifest.json").read_text())["name"]
    assert r.scan() == [f"{name} 1: AVAILABLE"]
    version = r.resolve(name)
    assert version.number == 1 and version.selftest["passed"] is True
    assert version.predictor.predict_value([6.0, 250.0, 66.5]) == float(version.predictor.predict_rows([[6, 250, 66.5]])[0, 0])


def test_real_versions_are_checked_and_self_tested(bundle: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    for v in ("1", "2", "3"):
        shutil.copytree(bundle, models / "boston" / v)
    manifest = json.loads((bundle / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["format"] == "tflite" and a["variant"] == "float32")
    target = models / "boston" / "3" / artifact["path"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    r = Repository(models)
    changes = r.scan()
    assert changes[:2] == ["boston 1: AVAILABLE", "boston 2: AVAILABLE"]
    assert changes[2] == (f"boston 3: END (bundle file {artifact['path']} does not match its sha256 in manifest.json "
                          "(tampered or corrupted); copy the bundle again or re-create it)")
    assert r.resolve("boston").number == 2


def test_the_rollout_modules_import_no_tensorflow_pandas_or_convert() -> None:
    import subprocess
    import sys

    code = ("import sys; import edge.repository, edge.rollout, edge.rollout_config, edge.feedback, edge.oip, edge.dispatch; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'pandas', 'convert', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "[]", "")
