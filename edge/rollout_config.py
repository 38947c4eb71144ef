"""The model repository's rollout config: labels, canary, shadow, fallback, checks, rollback, feedback.

JSON (the project supports Python 3.9, which has no ``tomllib``), validated against
``edge/rollout.schema.json``. It lives at ``MODELS/rollout.json`` (or wherever ``--rollout-config``
points) and is read again at every repository scan, so a changed label takes effect without a restart::

    {"schema_version": 1, "poll_seconds": 2,
     "models": {"boston": {
        "labels": {"stable": 1, "canary": 2},
        "canary": {"share": 0.1, "sticky_header": "x-client-key"},
        "shadow": {"version": 3, "share": 1.0},
        "fallback": 1,
        "output_check": {"margin": 0.1},
        "rollback": {"window": 200, "min_requests": 50, "max_error_rate": 0.05,
                     "max_output_check_failures": 0.02, "max_disagreement": 0.05},
        "feedback": {"windows": [100, 1000], "id_expiry_seconds": 3600, "max_ids": 100000}}}}

Units: shares are fractions of requests (0..1); ``output_check.margin`` is a fraction of the width of
the manifest's output range; the rollback limits are fractions of the last ``window`` canary requests
(``max_disagreement``: the window's mean disagreement score, see ``edge.rollout.Disagreement.score``);
a limit of null is not checked. Feedback windows count joined predictions (the last N per version).
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from edge.errors import EdgeError

CONFIG_NAME = "rollout.json"
DEFAULT_POLL_SECONDS = 2.0
"""How often the repository is scanned when the config does not say (TF Serving polls every 1 s by default)."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The rollout config's JSON Schema."""
    return json.loads(Path(__file__).with_name("rollout.schema.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RollbackConfig:
    """When the canary is taken out: any limit exceeded over the last ``window`` canary requests, once at
    least ``min_requests`` of them were seen."""

    window: int = 200
    min_requests: int = 50
    max_error_rate: Optional[float] = 0.05
    max_output_check_failures: Optional[float] = 0.05
    max_disagreement: Optional[float] = None


@dataclass(frozen=True)
class FeedbackConfig:
    """Ground truth: metrics over the last N joined predictions per window; ids forgotten after
    ``id_expiry_seconds`` or beyond the ``max_ids`` most recent."""

    windows: tuple[int, ...] = (100, 1000)
    id_expiry_seconds: float = 3600.0
    max_ids: int = 100_000


@dataclass(frozen=True)
class ModelConfig:
    """One model's rollout settings (every field has a default: an empty config serves the latest version)."""

    variant: Optional[str] = None
    labels: dict[str, int] = field(default_factory=dict)
    canary_share: float = 0.0
    sticky_header: str = "x-client-key"
    shadow_version: Optional[int] = None
    shadow_share: float = 1.0
    fallback: Optional[int] = None
    output_margin: float = 0.1
    rollback: RollbackConfig = field(default_factory=RollbackConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)


@dataclass(frozen=True)
class RolloutConfig:
    """The whole file: the scan interval and each model's settings (``model(name)`` for a default)."""

    poll_seconds: float = DEFAULT_POLL_SECONDS
    models: dict[str, ModelConfig] = field(default_factory=dict)

    def model(self, name: str) -> ModelConfig:
        """The settings of a model (the defaults for a model the file does not name)."""
        return self.models.get(name) or ModelConfig()


def validate(data: Any, where: str = CONFIG_NAME) -> None:
    """Validate a parsed config against the schema and the rules a schema cannot say.

    Raises:
        EdgeError: the first violation, as one line naming the place.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = next(iter(sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise EdgeError(f"{where} is invalid at {at}: {error.message}")
    for name, model in (data.get("models") or {}).items():
        rollback = model.get("rollback") or {}
        window, least = rollback.get("window", RollbackConfig.window), rollback.get("min_requests", RollbackConfig.min_requests)
        if least > window:
            raise EdgeError(f"{where} is invalid at models/{name}/rollback: min_requests {least} is over the window "
                            f"of {window}; make min_requests at most the window")


def parse(data: Any, where: str = CONFIG_NAME) -> RolloutConfig:
    """A validated config object -> ``RolloutConfig``.

    Raises:
        EdgeError: see ``validate``.
    """
    validate(data, where)
    models = {}
    for name, m in (data.get("models") or {}).items():
        canary, shadow = m.get("canary") or {}, m.get("shadow") or {}
        rollback, feedback = m.get("rollback") or {}, m.get("feedback") or {}
        fb = FeedbackConfig(**{**feedback, **({"windows": tuple(feedback["windows"])} if "windows" in feedback else {})})
        models[name] = ModelConfig(
            variant=m.get("variant"), labels=dict(m.get("labels") or {}),
            canary_share=float(canary.get("share", 0.0)),
            sticky_header=str(canary.get("sticky_header", ModelConfig.sticky_header)).lower(),
            shadow_version=shadow.get("version"), shadow_share=float(shadow.get("share", 1.0)),
            fallback=m.get("fallback"), output_margin=float((m.get("output_check") or {}).get("margin", 0.1)),
            rollback=RollbackConfig(**rollback), feedback=fb)
    return RolloutConfig(poll_seconds=float(data.get("poll_seconds", DEFAULT_POLL_SECONDS)), models=models)


MAX_CONFIG_BYTES = 1 << 20


def load(path: str | Path) -> RolloutConfig:
    """Read and validate a config file.

    Raises:
        EdgeError: the file is not a regular file of at most ``MAX_CONFIG_BYTES``, cannot be read, is not JSON
            (NaN and Infinity refused) or breaks the schema.
    """
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a fifo would block the reader (and serve's start) for good
            raise EdgeError(f"the rollout config {str(path)!r} is not a regular file; pass a JSON file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise EdgeError(f"the rollout config {str(path)!r} is over {MAX_CONFIG_BYTES:,} bytes; it is a small JSON file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeError(f"cannot read the rollout config {str(path)!r} ({type(exc).__name__}: {exc}); "
                        "fix the file or remove it") from None

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise EdgeError(f"the rollout config {str(path)!r} is not valid JSON ({str(exc)[:120]}); fix the file") from None
    return parse(data, path.name)
