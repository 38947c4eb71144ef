"""Files the kit writes are created exclusively under private names, never through a symbolic link
(issue 13, item 6): verify's parity.json / report.html / manifest.json, train's .keras, the native log."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from convert.errors import DeployKitError
from convert.files import replace_file


def _report(bundle: Path):
    from convert.parity.report import ParityReport

    return ParityReport(bundle=bundle, name="linear", runtimes=[], reference="golden.json", results=[],
                        at="2026-12-01T00:00:00Z")


@pytest.fixture
def bundle(boston_linear_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(boston_linear_bundle, copy)
    return copy


def _outside(tmp_path: Path, name: str) -> Path:
    target = tmp_path / "outside" / name
    target.parent.mkdir(exist_ok=True)
    target.write_text(f"{name} must stay as it is\n")
    return target


def test_verify_writes_nothing_through_planted_tmp_links(bundle, tmp_path):
    planted = {}
    for rel in ("manifest.json.tmp", "report.html.tmp", "parity.json.tmp", "web/manifest.json.tmp"):
        target = _outside(tmp_path, rel.replace("/", "_"))
        (bundle / rel).symlink_to(target)
        planted[rel] = target
    _report(bundle).save()
    for rel, target in planted.items():
        assert target.read_text() == f"{rel.replace('/', '_')} must stay as it is\n", rel
        assert (bundle / rel).is_symlink()
    for name in ("parity.json", "report.html", "manifest.json", "web/manifest.json"):
        info = os.lstat(bundle / name)
        assert stat.S_ISREG(info.st_mode), name
    assert json.loads((bundle / "manifest.json").read_text())["parity"]["report"] == "parity.json"
    leftovers = [p.name for p in bundle.rglob(".*.tmp")]
    assert leftovers == []


def test_verify_refuses_to_replace_a_destination_that_is_a_link(bundle, tmp_path):
    target = _outside(tmp_path, "parity.json")
    (bundle / "parity.json").symlink_to(target)
    with pytest.raises(DeployKitError) as error:
        _report(bundle).save()
    assert str(error.value) == (f"{str(bundle / 'parity.json')!r} is a symbolic link; deploykit does not write "
                                "through links: remove it and run again")
    assert target.read_text() == "parity.json must stay as it is\n"
    assert (bundle / "parity.json").is_symlink()


def test_a_folder_that_is_a_link_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "web").symlink_to(real)
    with pytest.raises(DeployKitError) as error:
        replace_file(tmp_path / "web" / "manifest.json", "{}")
    assert str(error.value) == (f"{str(tmp_path / 'web')!r} is a symbolic link; deploykit does not write through "
                                "links: replace it with a real folder")
    assert list(real.iterdir()) == []


def test_replace_file_is_exclusive_and_atomic(tmp_path):
    path = tmp_path / "a.json"
    replace_file(path, "one")
    replace_file(path, b"two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_the_native_log_is_not_a_predictable_path(tmp_path, monkeypatch):
    """A link planted where the log used to go (``deploykit-native-PID.log``) is not followed."""
    from convert.quiet import native_output_to_log

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = _outside(tmp_path, "victim.txt")
    (tmp_path / f"deploykit-native-{os.getpid()}.log").symlink_to(target)
    with native_output_to_log() as (_, _, log):
        os.write(1, b"native library output\n")
    try:
        assert target.read_text() == "victim.txt must stay as it is\n"
        assert log.name.startswith(f"deploykit-native-{os.getpid()}-") and not log.is_symlink()
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert log.read_text() == "native library output\n"
    finally:
        log.unlink()


def test_train_save_does_not_follow_a_planted_link(tmp_path):
    import keras

    from convert.train import save

    target = _outside(tmp_path, "victim.keras")
    (tmp_path / ".m.tmp.keras").symlink_to(target)  # the temporary name save() used to use
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    save(model, tmp_path / "m.keras")
    assert target.read_text() == "victim.keras must stay as it is\n"
    assert (tmp_path / "m.keras").is_file() and not (tmp_path / "m.keras").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.tmp.keras", "m.keras", "outside"]
    (tmp_path / "link.keras").symlink_to(target)
    with pytest.raises(DeployKitError) as error:
        save(model, tmp_path / "link.keras")
    assert str(error.value) == (f"cannot write {str(tmp_path / 'link.keras')!r}: it is a symbolic link, and deploykit "
                                "does not write through links; remove it or choose another --out")
