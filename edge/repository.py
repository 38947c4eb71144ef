"""A model repository in TF Serving's layout: ``MODELS/NAME/VERSION/`` each hold one bundle.

* Layout. ``MODELS/`` holds one folder per model (its name is the model's name in the URLs); each model
  folder holds one folder per version, named by a positive integer without leading zeros (``1``, ``2``,
  ``17``). Anything else is ignored, so a version can be copied in under another name (``3.tmp``) and
  renamed when complete. A single bundle folder (it holds ``manifest.json``) is served as before: one
  model, named by its manifest, with version 1.
* States, as TF Serving names them: a new version folder is LOADING while it is checked (manifest schema,
  the artifact's sha256, the runtime, the signature; ``edge.runner.Predictor``), compared with the
  model's other versions (same inputs, features and outputs: canary and shadow take the same request)
  and self-tested (``edge.selftest``); only then is it AVAILABLE. A version that fails goes to END with
  the reason in ``error`` and stays out; it is tried again when its files change. A removed folder's
  version is UNLOADING while requests that started on it are still running, then END.
* Scanning. ``scan()`` is called every ``poll_seconds`` (the rollout config's, default
  ``edge.rollout_config.DEFAULT_POLL_SECONDS`` = 2 s) and on SIGHUP by the server, off the event loop. It
  also re-reads the rollout config when that file changed.
* Labels (``stable``, ``canary``, any other) point to AVAILABLE versions. They are recomputed at each
  scan from the config: a label whose wanted version is not AVAILABLE yet keeps its previous version (the
  reason is in ``Model.notes``). The label table is replaced whole (one reference assignment), never
  changed in place, so a request that resolved a version keeps it to the end while the label moves.
* Versions are immutable: a folder changed under an AVAILABLE version is not reloaded (remove it and add
  a new number).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from edge import manifest as mf
from edge import rollout_config as rc
from edge.errors import EdgeError
from edge.versions import Model, NotServed, State, Version, _fingerprint, interface, interface_difference

__all__ = ["Loader", "MODEL_NAME", "Model", "NotServed", "Repository", "State", "VERSION_NAME", "Version",
           "VersionLoader", "interface", "interface_difference", "load_bundle"]

VERSION_NAME = re.compile(r"^[1-9][0-9]{0,15}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


Loader = Callable[[Path, Optional[str]], "tuple[Any, dict[str, Any]]"]
"""``loader(bundle_dir, variant) -> (predictor, selftest result)``; raises EdgeError when the bundle fails."""


def load_bundle(path: Path, variant: Optional[str] = None) -> tuple[Any, dict[str, Any]]:
    """The default loader: ``Predictor`` (manifest, sha256, runtime, signature) and its self-test.

    Raises:
        EdgeError: any check fails, or the self-test does (its failures in the message).
    """
    from edge import selftest
    from edge.runner import Predictor

    predictor = Predictor(path, variant)
    result = selftest.run(predictor)
    if not result["passed"]:
        raise EdgeError("self-test failed: " + "; ".join(result["failures"]))
    return predictor, result


class VersionLoader:
    """The server's loader (``edge.server.served.loader``): ``Predictor`` with the serve flags (``variant``
    unless the version's config names one, interpreter ``threads``, ``allow_rejected``), then its self-test.
    In a repository a failing self-test raises (the version goes to END); a ``single`` bundle's is returned
    (its self-test decides readiness). A class, not a closure: the shadow's worker process
    (``edge.shadow_process``) is handed the same loader, pickled, and imports no more than this module.

    Calling it raises EdgeError when the bundle fails its checks (or, in a repository, its self-test)."""

    def __init__(self, variant: Optional[str], threads: Any, allow_rejected: bool, single: bool) -> None:
        self.variant, self.threads, self.allow_rejected, self.single = variant, threads, allow_rejected, single

    def __call__(self, path: Path, variant: Optional[str]) -> tuple[Any, dict[str, Any]]:
        from edge import selftest
        from edge.runner import Predictor

        predictor = Predictor(path, variant or self.variant, num_threads=self.threads,
                              allow_rejected=self.allow_rejected)
        try:
            result = selftest.run(predictor)
        except EdgeError as exc:
            if not self.single:
                raise
            return predictor, {"passed": False, "failures": [str(exc)], "error": str(exc)}
        if not result["passed"] and not self.single:
            raise EdgeError("self-test failed: " + "; ".join(result["failures"]))
        return predictor, result


class Repository:
    """The models under a folder (or one bundle), their versions' states and their labels.

    Args:
        root: ``MODELS/`` or a single bundle folder.
        config_path: the rollout config (default ``MODELS/rollout.json`` when it exists; none for a bundle).
        loader: how a version is loaded and self-tested (``load_bundle``).

    Raises:
        EdgeError: ``root`` is not a folder, or the config is invalid.
    """

    def __init__(self, root: str | Path, config_path: str | Path | None = None, loader: Loader = load_bundle) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise EdgeError(f"model repository {str(self.root)!r} is not a folder; pass MODELS/ (MODELS/NAME/VERSION/ "
                            "each a bundle) or one bundle folder")
        self.single = (self.root / mf.MANIFEST).is_file()
        default = self.root / rc.CONFIG_NAME
        self.config_path = Path(config_path) if config_path else (default if not self.single else None)
        self.loader = loader
        self.config = rc.RolloutConfig()
        self._config_stamp: tuple | None = None
        self.models: dict[str, Model] = {}
        self.config_error = ""
        self._lock = threading.Lock()
        self._read_config(strict=True)

    # ------------------------------------------------------------------ config

    def _read_config(self, strict: bool) -> bool:
        """Re-read the config when its file changed. A bad file at start raises; later it is reported in
        ``config_error`` and the last good config stays. Returns whether it changed."""
        path = self.config_path
        if path is None:
            return False
        try:
            st = path.stat()
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._config_stamp:
            return False
        try:
            config = rc.load(path) if stamp is not None else rc.RolloutConfig()
        except EdgeError as exc:
            if strict:
                raise
            self.config_error = str(exc)
            self._config_stamp = stamp
            return False
        self.config, self._config_stamp, self.config_error = config, stamp, ""
        for name, model in self.models.items():
            model.wanted = dict(config.model(name).labels)
        return True

    # ------------------------------------------------------------------ scanning

    def _discover(self) -> dict[str, dict[int, Path]]:
        if self.single:
            manifest = mf.load(self.root)  # BundleError names the problem
            return {str(manifest["name"]): {1: self.root}}
        found: dict[str, dict[int, Path]] = {}
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir() or not MODEL_NAME.match(entry.name):
                continue
            versions = {}
            for sub in entry.iterdir():
                if sub.is_dir() and VERSION_NAME.match(sub.name):
                    versions[int(sub.name)] = sub
            found[entry.name] = versions
        return found

    def scan(self) -> list[str]:
        """Find new and removed versions, load the new ones (LOADING -> AVAILABLE or END), retry failed
        ones whose files changed, re-read the config, and recompute the labels. One scan at a time.

        Returns:
            One line per change (``boston 2: AVAILABLE``), for the server's log.

        Raises:
            EdgeError: only for a single bundle folder whose manifest cannot be read (a repository's
            version problems are kept in the versions' states instead).
        """
        with self._lock:
            changes: list[str] = []
            self._read_config(strict=False)
            found = self._discover()
            models = dict(self.models)
            for name in found:
                if name not in models:
                    models[name] = Model(name, wanted=dict(self.config.model(name).labels))
            self.models = models
            for name, model in models.items():
                on_disk = found.get(name, {})
                versions = dict(model.versions)
                todo = []
                for number, path in sorted(on_disk.items()):
                    old = versions.get(number)
                    if old is None or (old.state is State.END and old.error and _fingerprint(path) != old.fingerprint):
                        version = Version(name, number, path, fingerprint=_fingerprint(path))
                        versions[number] = version
                        todo.append(version)
                for number, version in versions.items():
                    if number not in on_disk and version.state in (State.AVAILABLE, State.LOADING):
                        changes.append(f"{name} {number}: UNLOADING (its folder was removed)")
                        if version.unload():
                            changes.append(f"{name} {number}: END")
                model.versions = versions  # LOADING versions are visible while they load
                for version in todo:
                    self._load(model, version)
                    changes.append(f"{name} {version.number}: {version.state.value}"
                                   + (f" ({version.error})" if version.error else ""))
                self._relabel(model)
            return changes

    def _load(self, model: Model, version: Version) -> None:
        try:
            predictor, result = self.loader(version.path, self.config.model(model.name).variant)
            reference = self._reference(model, version.number)
            if reference is not None:
                why = interface_difference(predictor.manifest, reference.predictor.manifest)
                if why is not None:
                    raise EdgeError(f"version {version.number} cannot serve beside version {reference.number}: {why}; "
                                    "give it another model name")
        except EdgeError as exc:
            version._end(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - one broken version must not stop the scan
            version._end(f"internal error: {type(exc).__name__}: {exc}")
            return
        version.predictor, version.selftest = predictor, result
        version.state, version.since, version.error = State.AVAILABLE, time.time(), ""

    def _reference(self, model: Model, besides: int) -> Optional[Version]:
        """The version a new one must match: the stable label's, else the newest AVAILABLE one."""
        number = model.labels.get("stable")
        if number is None or number == besides or number not in model.versions:
            others = [n for n in model.available() if n != besides]
            number = others[-1] if others else None
        version = model.versions.get(number) if number is not None else None
        return version if version is not None and version.state is State.AVAILABLE else None

    def _relabel(self, model: Model) -> None:
        """Recompute the labels from the wanted ones; replace the table whole."""
        labels: dict[str, int] = {}
        notes: dict[str, str] = {}
        rolled = {k: v for k, v in model.rolled_back.items() if model.wanted.get(k) == v[0]}
        model.rolled_back = rolled
        for label, want in model.wanted.items():
            if label in rolled:
                _, taken, why = rolled[label]
                notes[label] = f"version {taken} was rolled back ({why}); point {label!r} at another version to use it again"
                continue
            target = model.versions.get(want)
            if target is not None and target.state is State.AVAILABLE:
                labels[label] = want
                continue
            state = "absent" if target is None else target.state.value + (f": {target.error}" if target.error else "")
            previous = model.labels.get(label)
            if previous is not None and previous in model.versions and model.versions[previous].state is State.AVAILABLE:
                labels[label] = previous
                notes[label] = f"wants version {want} ({state}); stays on version {previous}"
            else:
                notes[label] = f"wants version {want} ({state})"
        model.labels, model.notes = labels, notes

    # ------------------------------------------------------------------ labels

    def set_label(self, name: str, label: str, number: int) -> None:
        """Point a label at an AVAILABLE version now (until the config names another).

        Raises:
            NotServed: 404 for an unknown model or version; 503 when the version is not AVAILABLE.
        """
        with self._lock:
            model = self.model(name)
            version = model.versions.get(number)
            if version is None:
                raise NotServed(404, f"version {number} of model {name!r} not found")
            if version.state is not State.AVAILABLE:
                raise NotServed(503, f"version {number} of model {name!r} is {version.state.value}; a label can only "
                                     "point to an AVAILABLE version")
            model.wanted = {**model.wanted, label: number}
            model.rolled_back = {k: v for k, v in model.rolled_back.items() if k != label}
            self._relabel(model)

    def take_out(self, name: str, label: str, reason: str) -> Optional[int]:
        """Remove a label (the canary's rollback) until the config points it at another version.

        Returns:
            The version the label pointed to, or None when it pointed to none.

        Raises:
            NotServed: 404 for an unknown model.
        """
        with self._lock:
            model = self.model(name)
            number = model.labels.get(label)
            if number is None:
                return None
            model.rolled_back = {**model.rolled_back, label: (model.wanted.get(label), number, reason)}
            self._relabel(model)
            return number

    # ------------------------------------------------------------------ lookups

    def model(self, name: str) -> Model:
        """A model by name.

        Raises:
            NotServed: 404 naming the models served.
        """
        model = self.models.get(name)
        if model is None:
            served = ", ".join(repr(n) for n in sorted(self.models)) or "none"
            raise NotServed(404, f"model {name[:100]!r} not found; this server serves {served}")
        return model

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Version:
        """The AVAILABLE version a request reaches: by number, by label, or by default the ``stable``
        label's version, else the newest AVAILABLE one.

        Raises:
            NotServed: 404 for an unknown model, version or label; 503 when the version is not AVAILABLE
            (its state and error in the message) or the model has no AVAILABLE version.
        """
        model = self.model(name)
        versions = model.versions
        if label is not None:
            version = model.labels.get(label)
            if version is None:
                note = model.notes.get(label)
                if note is not None:
                    raise NotServed(503, f"label {label[:40]!r} of model {name!r} points to no AVAILABLE version: {note}")
                raise NotServed(404, f"label {label[:40]!r} of model {name!r} not found; it has "
                                     f"{', '.join(sorted(model.labels)) or 'no labels'}")
        elif version is None:
            version = model.labels.get("stable")
            if version is None:
                numbers = model.available()
                if not numbers:
                    raise NotServed(503, f"model {name!r} has no AVAILABLE version ({self._states(model)})")
                version = numbers[-1]
        found = versions.get(version)
        if found is None:
            raise NotServed(404, f"version {version} of model {name!r} not found; it has {self._states(model)}")
        if found.state is not State.AVAILABLE:
            why = f": {found.error}" if found.error else ""
            raise NotServed(503, f"version {version} of model {name!r} is {found.state.value}{why}")
        return found

    @staticmethod
    def _states(model: Model) -> str:
        return ", ".join(f"{n} {v.state.value}" for n, v in sorted(model.versions.items())) or "no versions"

    def status(self, name: str) -> dict[str, Any]:
        """TF Serving's ``GET /v1/models/NAME`` body (newest version first, as TF Serving lists them).

        Raises:
            NotServed: 404 for an unknown model.
        """
        model = self.model(name)
        return {"model_version_status": [v.status() for _, v in sorted(model.versions.items(), reverse=True)]}

    def describe(self) -> dict[str, Any]:
        """The repository as the server sees it (``deploykit-edge status``, ``GET /v1/repository``)."""
        models = {}
        for name, model in sorted(self.models.items()):
            models[name] = {
                "versions": [{**v.status(), "path": str(v.path), "inflight": v.inflight,
                              **({"variant": v.predictor.variant} if v.predictor is not None and hasattr(v.predictor, "variant") else {})}
                             for _, v in sorted(model.versions.items())],
                "labels": dict(model.labels), "wanted_labels": dict(model.wanted), "label_notes": dict(model.notes)}
        return {"root": str(self.root), "single_bundle": self.single, "poll_seconds": self.config.poll_seconds,
                "config": str(self.config_path) if self.config_path else None, "config_error": self.config_error,
                "models": models}
