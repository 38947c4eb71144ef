"""The default route of one model, worked out once per change of labels, versions or config
(``edge.dispatch.Dispatcher`` checks three identities per request and makes a new ``Plan`` when one
moved): the stable version and its ``predict_value``, its output range, the canary's draw and its own
one-value answer (``FastCanary``), the shadow's copy target. The dispatcher's one-value path answers from
it in the fewest steps; anything out of the ordinary takes the general path.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from edge.feedback import FeedbackStore
from edge.rollout import CanaryChooser
from edge.versions import Version


class Plan:
    """The default route, worked out once per change of labels, versions or config (identity checks)."""

    __slots__ = ("labels", "versions", "config", "stable", "value", "lo", "hi", "canary", "shadow", "number", "store",
                 "share", "draw", "fast_canary", "copy")

    def __init__(self, labels: Any, versions: Any, config: Any, stable: Optional[Version], lo: float, hi: float,
                 canary: bool, shadow: bool, store: Optional[FeedbackStore] = None,
                 chooser: Optional[CanaryChooser] = None, fast_canary: Optional["FastCanary"] = None) -> None:
        self.labels, self.versions, self.config, self.stable = labels, versions, config, stable
        self.value = value_of(stable)
        self.lo, self.hi, self.canary, self.shadow = lo, hi, canary, shadow
        self.number = stable.number if stable is not None else 0
        self.store = store
        # the keyless draw, inlined (CanaryChooser.canary without the call): share > 0 whenever canary is true
        self.share = chooser.share if chooser is not None else 0.0
        self.draw = chooser._random if chooser is not None else None
        self.fast_canary = fast_canary
        self.copy: Optional[tuple[Version, float, dict[str, Any]]] = None  # the shadow's (version, share, manifest)


class FastCanary:
    """The canary's one-value answer in the fewest steps, worked out with the plan: its version, its
    ``predict_value`` and output range. Used only when the rollback needs no inline comparison with
    ``stable`` (no ``max_disagreement``); anything out of the ordinary goes to the general path."""

    __slots__ = ("version", "value", "lo", "hi", "number")

    def __init__(self, version: Version, lo: float, hi: float) -> None:
        self.version, self.value, self.lo, self.hi, self.number = version, value_of(version), lo, hi, version.number


def value_of(version: Optional[Version]) -> Optional[Callable[[Sequence[float]], float]]:
    """A version's bound ``predict_value`` (None for no version or a predictor without one)."""
    if version is None or not hasattr(version.predictor, "predict_value"):
        return None
    return version.predictor.predict_value
