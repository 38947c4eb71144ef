"""A convert killed at any moment leaves the old bundle or the new one at --out (issue 13, item 6).

Two sets of trials, each run as a subprocess that is SIGKILLed:
- at every stage of ``convert.pipeline.convert`` in turn (a driver that stops itself with SIGKILL at that
  stage, the build replaced by a copy of a real bundle so each trial takes a second), for the atomic
  exchange and for the rename pair used where the system has no exchange;
- at random times across the real ``deploykit convert`` of the tiny Dense (linear Boston) model.
After each kill, what the next convert does first (``recover_interrupted``) must leave a complete bundle
(every sha256 matches) at --out and no temporary folder beside it or in the temporary folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from convert.pipeline import recover_interrupted
from edge import manifest as manifest_mod
from tests.helpers import BOSTON_CSV, ENV

TRIALS = int(os.environ.get("DEPLOYKIT_KILL_TRIALS", "8"))  # `make zoo` runs the 20 trials

DRIVER = r'''
import contextlib, json, os, shutil, signal, sys, time, types
from pathlib import Path
from convert import pipeline
out, template, stage, model = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])

def die(at):
    if stage == at or (stage.startswith("pair_") and stage[5:] == at):
        os.kill(os.getpid(), signal.SIGKILL)

def build(options, ref, sources, staging, work, progress):
    die("staged")
    (work / "scratch.bin").write_bytes(b"x" * 1000)
    for src in sorted(template.rglob("*")):
        dst = staging / src.relative_to(template)
        if src.is_dir():
            dst.mkdir()
        else:
            shutil.copyfile(src, dst)
            time.sleep(0.003)
        if src.name == "golden.json":
            die("building")
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["name"] = "new"
    text = json.dumps(manifest)
    (staging / "manifest.json").write_text(text)
    (staging / "web" / "manifest.json").write_text(text)
    die("built")
    return pipeline.ConvertResult(bundle=staging, manifest=manifest)

real_exchange, real_rename, real_rmtree = pipeline._exchange, os.rename, shutil.rmtree

def exchange(a, b):
    die("before_swap")
    if stage.startswith("pair_"):
        return False
    swapped = real_exchange(a, b)
    die("swapped")
    return swapped

renames = []
def rename(a, b):
    real_rename(a, b)
    renames.append(b)
    if len(renames) == 1:
        die("between_renames")
    if len(renames) == 2:
        die("after_renames")

def rmtree(path, ignore_errors=False):
    if Path(path).is_dir() and (Path(path) / "edge").is_dir():  # a bundle: stop half way through
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        for p in files[: len(files) // 2]:
            p.unlink()
        die("removing_old")
    real_rmtree(path, ignore_errors=ignore_errors)

pipeline.load = lambda path, custom_objects=None: types.SimpleNamespace(name="m", inputs=[], outputs=[], objects_scope=contextlib.nullcontext)
pipeline.read_data = lambda *args: types.SimpleNamespace(rows=100)
pipeline._build, pipeline._exchange, os.rename, shutil.rmtree = build, exchange, rename, rmtree
pipeline.convert(pipeline.ConvertOptions(model=model, data=model, out=out, force=True))
print("done")
'''
STAGES = ["staged", "building", "built", "before_swap", "swapped", "removing_old",
          "pair_before_swap", "pair_between_renames", "pair_after_renames", "pair_removing_old", "none"]


def _env(private_tmp: Path) -> dict[str, str]:
    return {**ENV, "TMPDIR": str(private_tmp)}


def _bundle_name(out: Path) -> str:
    """The manifest's name of the complete bundle at ``out`` (every file's sha256 checked)."""
    manifest = manifest_mod.load(out)
    manifest_mod.check_all_files(out, manifest)
    manifest_mod.load_golden(out)
    web = json.loads((out / "web" / "manifest.json").read_text())
    assert web == manifest, "web/manifest.json is the manifest"
    return manifest["name"]


def _recover_and_check(out: Path, private_tmp: Path, monkeypatch) -> str:
    """What the next convert does first, with the killed run's temporary folder; then nothing may be left."""
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    note = recover_interrupted(out)
    monkeypatch.undo()
    left = sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))
    assert left == [], f"left beside --out: {left}"
    assert [p.name for p in private_tmp.iterdir() if p.name.startswith(("deploykit-work-", "deploykit-native-"))] == []
    return note


@pytest.fixture
def template(boston_linear_bundle, tmp_path) -> Path:
    """A real bundle whose manifest is named 'old': the bundle each trial starts from."""
    old = tmp_path / "template"
    shutil.copytree(boston_linear_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["name"] = "old"
    for where in (old / "manifest.json", old / "web" / "manifest.json"):
        where.write_text(json.dumps(manifest))
    return old


# First in the module: pytest-xdist sends a worker its next group once two tests of the current one are left, so
# the longest test (a minute idle, four under a loaded machine) runs first and no group waits behind it.
def test_random_kills_of_the_real_convert(boston_linear, tmp_path, monkeypatch):
    """SIGKILL at random times across ``deploykit convert`` of the linear Boston model (TRIALS times)."""
    out, private_tmp = tmp_path / "b", tmp_path / "tmp"
    private_tmp.mkdir()
    command = [sys.executable, "-m", "convert", "convert", str(boston_linear), "--data", str(BOSTON_CSV),
               "--target", "medv", "--out", str(out), "--force"]
    start = time.monotonic()
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env(private_tmp))
    assert first.returncode == 0, first.stderr
    whole = time.monotonic() - start
    old = (out / "manifest.json").read_text()
    rng = random.Random(13)
    outcomes = []
    for _ in range(TRIALS):
        with open(tmp_path / "stderr.txt", "w") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=_env(private_tmp))
            time.sleep(rng.uniform(0.0, whole * 1.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        steps = [line for line in (tmp_path / "stderr.txt").read_text().splitlines() if line.startswith("✓")]
        _recover_and_check(out, private_tmp, monkeypatch)
        _bundle_name(out)
        fresh = (out / "manifest.json").read_text()
        outcomes.append(("old" if fresh == old else "new", proc.returncode, len(steps)))
        old = fresh
    print("outcomes (bundle, status, steps done):", outcomes)
    assert all(bundle in ("old", "new") for bundle, _, _ in outcomes)
    assert sum(status == -signal.SIGKILL for _, status, _ in outcomes) >= TRIALS // 2, outcomes
    final = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env(private_tmp))
    assert final.returncode == 0, final.stderr
    _bundle_name(out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.")] == []
    assert [p.name for p in private_tmp.iterdir() if p.name.startswith("deploykit-")] == []


def test_a_kill_at_every_stage_leaves_the_old_bundle_or_the_new(template, tmp_path, monkeypatch):
    out, private_tmp, model = tmp_path / "work" / "b", tmp_path / "tmp", tmp_path / "model.keras"
    out.parent.mkdir()
    private_tmp.mkdir()
    model.write_bytes(b"unused: the driver replaces the build")
    seen: dict[str, tuple[str, str]] = {}
    for stage in STAGES:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(template, out)
        run = subprocess.run([sys.executable, "-c", DRIVER, str(out), str(template), stage, str(model)],
                             capture_output=True, text=True, timeout=120, env=_env(private_tmp))
        killed = run.returncode == -signal.SIGKILL
        assert killed == (stage != "none"), (stage, run.returncode, run.stderr)
        note = _recover_and_check(out, private_tmp, monkeypatch)
        seen[stage] = (_bundle_name(out), "restored" if note else "")
    assert seen == {
        "staged": ("old", ""), "building": ("old", ""), "built": ("old", ""), "before_swap": ("old", ""),
        "swapped": ("new", ""), "removing_old": ("new", ""),
        "pair_before_swap": ("old", ""), "pair_between_renames": ("old", "restored"),
        "pair_after_renames": ("new", ""), "pair_removing_old": ("new", ""), "none": ("new", ""),
    }


def test_the_next_convert_restores_a_bundle_left_aside_and_says_so(template, tmp_path, monkeypatch):
    out, private_tmp, model = tmp_path / "b", tmp_path / "tmp", tmp_path / "model.keras"
    private_tmp.mkdir()
    model.write_bytes(b"unused")
    shutil.copytree(template, out)
    run = subprocess.run([sys.executable, "-c", DRIVER, str(out), str(template), "pair_between_renames", str(model)],
                         capture_output=True, text=True, timeout=120, env=_env(private_tmp))
    assert run.returncode == -signal.SIGKILL
    (aside,) = [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.old-")]
    assert not out.exists()
    from convert.errors import DeployKitError
    from convert.pipeline import ConvertOptions, convert

    with pytest.raises(DeployKitError) as error:  # without --force: put back, then refused as an existing bundle
        convert(ConvertOptions(model=model, data=model, out=out))
    assert str(error.value) == (f"output {str(out)!r} already exists; pass --force to replace it, or choose another "
                                f"--out (restored the bundle at {str(out)!r}, which an interrupted convert had moved "
                                f"aside to {aside})")
    assert _bundle_name(out) == "old"

