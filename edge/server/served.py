"""What the server serves: the repository it opens (``open_repository``, each version loaded by ``loader``)
and one model as the HTTP handlers see it: its ``Dispatcher`` (``edge.dispatch``) and its interface.

Every version of a model has the same interface (``edge.repository`` refuses one that differs), so the
request checks (features, inputs, outputs) are taken once, from the first version that loaded, and hold
for whichever version answers. What is per answer (the version, its variant and sha256) comes with the
``Outcome``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from edge.dispatch import Dispatcher
from edge.errors import EdgeError
from edge.inputs import RowParser
from edge.manifest import output_names
from edge.repository import NotServed, Repository, State, VersionLoader
from edge.server.config import ServeConfig


class ServedModel:
    """A model's dispatcher, reference predictor (for its interface) and request parser.

    Raises:
        NotServed: (at construction) 404 for an unknown model; 503 when no version has loaded yet.
    """

    def __init__(self, repo: Repository, name: str, max_batch: int, log: Any = None) -> None:
        self.repo, self.name = repo, name
        self.dispatcher = Dispatcher(repo, name, log=log)
        self.reference = self._any_loaded()
        p = self.reference
        self.manifest: dict[str, Any] = p.manifest
        self.features: list[dict[str, Any]] = list(p.manifest.get("features") or [])
        self.feature_names = [f["name"] for f in self.features]
        self.rows = RowParser(self.features, max_batch) if self.features else None
        self.output_keys: list[str] = list(p.output_keys)
        self.output_names: dict[str, str] = output_names(p.manifest)
        self.labels: Optional[list[str]] = p.manifest["outputs"][0].get("labels")  # convert --labels: class names
        self.one_value: bool = bool(p.one_value)

    def _any_loaded(self) -> Any:
        model = self.repo.model(self.name)
        try:
            return self.repo.resolve(self.name).predictor
        except NotServed:
            pass
        for _, version in sorted(model.versions.items(), reverse=True):
            if version.predictor is not None:
                return version.predictor
        raise NotServed(503, f"model {self.name!r} has no loaded version yet ({self.repo._states(model)})")

    def current(self) -> Any:
        """The predictor the default route answers with now (else the reference one)."""
        try:
            return self.repo.resolve(self.name).predictor
        except NotServed:
            return self.reference

    def versions(self, state: Optional[State] = State.AVAILABLE) -> list[int]:
        """The model's version numbers in ``state`` (all when None), ascending."""
        model = self.repo.model(self.name)
        return sorted(n for n, v in model.versions.items() if state is None or v.state is state)


def loader(config: ServeConfig, single: bool) -> Any:
    """How the server loads a version (``edge.repository.VersionLoader``): ``Predictor`` with the serve flags,
    then its self-test. In a repository a failing self-test keeps the version out (END); a single bundle is
    served as before: its self-test decides readiness (``--serve-unready`` answers anyway)."""
    return VersionLoader(config.variant, config.threads, config.allow_rejected, single)


def open_repository(config: ServeConfig) -> Repository:
    """The repository of a serve config, scanned once (every version loaded and self-tested).

    Raises:
        EdgeError: the folder or the rollout config is invalid; a single bundle that cannot be loaded.
    """
    single = (Path(config.bundle) / "manifest.json").is_file()
    repo = Repository(config.bundle, config.rollout_config, loader=loader(config, single))
    repo.scan()
    if single:
        for model in repo.models.values():
            for version in model.versions.values():
                if version.state is State.END and version.error:
                    raise EdgeError(version.error)
    return repo
