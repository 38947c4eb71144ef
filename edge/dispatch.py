"""One model's dispatch over its versions: which version answers, the output checks and failover, the canary's
rollback, the shadow's comparison and the prediction ids. No HTTP here: the server calls ``Dispatcher``.

Per request (``Dispatcher.predict_value`` for the one-value row path, ``Dispatcher.predict`` for batches):

1. *Pick.* ``versions/N`` and ``labels/L`` reach that version. Otherwise the ``canary`` label's version
   answers when ``CanaryChooser`` says so (sticky by the client key header), else the ``stable`` label's
   (else the newest AVAILABLE version). The default route is a ``Plan`` made once per change of labels,
   versions or config (identity checks): on the one-value path the stable's and the canary's answers that
   pass the check take no other step (the canary's goes to the rollback monitor too).
2. *Outcome and check.* The picked version predicts; ``OutputChecker`` judges the answer. When the
   interpreter raised or the check failed and a ``fallback`` version is configured (and AVAILABLE, and not
   the picked one), the fallback answers instead: ``Outcome.fallback`` is true and ``Outcome.reason`` says
   why; the event is counted. Requests that named a version or label get no fallback (they asked for
   that version): their failure is an error, as without a fallback. Without a fallback, a non-finite
   answer is an error (``DispatchError`` 422) and an out-of-range one is answered and counted.
3. *Canary health.* A canary request's outcome (error, failed check, and, when a disagreement limit is
   configured, its disagreement with ``stable`` on the same input, computed inline) goes to the
   ``RollbackMonitor``; when it fires, the repository takes the canary label out (``take_out``).
4. *Shadow.* A sampled share of requests is copied to the AVAILABLE shadow version: in the server appended
   (input, live answer, ids) to the ``shadow_sink`` batch for the shadow's worker process
   (``edge.server.shadow_worker``), else a ``shadow`` job (``edge.shadow.ShadowJob``) on the outcome. Either
   predicts on the shadow and records the disagreement (``ShadowStats``), never touching the answer.
5. *Ids.* Each answered row gets an id from the model's ``FeedbackStore`` (remembered for feedback).
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from edge import rollout_config as rc
from edge.errors import EdgeError
from edge.feedback import FeedbackStore
from edge.outcome import DispatchError, DispatchStats, Outcome
from edge.route_plan import FastCanary, Plan, value_of
from edge.repository import NotServed, Repository, State, Version
from edge.rollout import CanaryChooser, OutputChecker, RollbackMonitor
from edge.shadow import Histogram, ShadowJob, ShadowStats, ShadowTarget, compare

__all__ = ["DispatchError", "DispatchStats", "Dispatcher", "Histogram", "Outcome", "ShadowStats"]  # re-exported

def _in_training_range(version: Version, row: Any) -> bool:
    """Whether a one-row request's features are within the manifest's training range (True when ``row`` is
    not a row of features: a batch or tensors are not judged here)."""
    if isinstance(row, np.ndarray) and row.ndim == 1:
        row = row.tolist()
    if not isinstance(row, (list, tuple)):
        return True
    features = version.predictor.manifest.get("features") or []
    if len(features) != len(row):
        return True
    return all(f["min"] <= v <= f["max"] for f, v in zip(features, row))


class Dispatcher:
    """Routes one model's requests over the repository's versions (see the module's steps).

    Args:
        repo: the repository (its labels and config are read at every request; both are replaced whole).
        name: the model.
        seed: seeds the keyless canary draw and the shadow sample (tests).
        log: where rollback lines go (default stderr).
    """

    def __init__(self, repo: Repository, name: str, seed: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None) -> None:
        self.repo, self.name = repo, name
        self.seed = seed
        self.log = log
        self.stats = DispatchStats()
        self.shadow_stats = ShadowStats()
        self.shadow_sink: Any = None  # the server's shadow feed (edge.shadow_feed.Feed); None: a ShadowJob per copy
        self._shadow_target: Optional[ShadowTarget] = None  # the general path's last
        self._fast_target: Optional[ShadowTarget] = None  # the plan's
        self._sample = random.Random(None if seed is None else seed + 1).random
        self._config: Optional[rc.RolloutConfig] = None
        self.config = rc.ModelConfig()
        self.chooser = CanaryChooser(0.0)
        self.monitor: Optional[RollbackMonitor] = None
        self.feedback: Optional[FeedbackStore] = None
        self._checkers: dict[int, OutputChecker] = {}
        self._model = self.repo.model(name)  # NotServed for an unknown model
        self._plan: Optional[Plan] = None

    # ------------------------------------------------------------------ configuration

    def _refresh(self) -> None:
        """Take the repository's current config (cheap identity check per request)."""
        config = self.repo.config
        if config is self._config:
            return
        self._config = config
        self.config = m = config.model(self.name)
        self.chooser = CanaryChooser(m.canary_share, salt=self.name, seed=self.seed)
        self.monitor = None
        self._checkers = {}

    def _checker(self, version: Version) -> OutputChecker:
        checker = self._checkers.get(version.number)
        if checker is None:
            checker = self._checkers[version.number] = OutputChecker(version.predictor.manifest, self.config.output_margin)
        return checker

    def _store(self, version: Version) -> FeedbackStore:
        if self.feedback is None:
            manifest = version.predictor.manifest
            width = manifest["outputs"][0]["shape"][-1] or 1
            classes = (2 if width == 1 else int(width)) if manifest["task"] == "classification" else 0
            self.feedback = FeedbackStore(manifest["task"], self.config.feedback, classes=classes)
        return self.feedback

    def store(self) -> FeedbackStore:
        """The model's feedback store (made from the default version's manifest when none answered yet).

        Raises:
            NotServed: the model has no AVAILABLE version.
        """
        if self.feedback is not None:
            return self.feedback
        self._refresh()
        return self._store(self.repo.resolve(self.name))

    def _replan(self) -> Plan:
        """Work out the default route again (after a scan, a label move, a config change)."""
        self._refresh()
        model = self._model
        labels, versions = model.labels, model.versions
        try:
            stable: Optional[Version] = self.repo.resolve(self.name)
        except NotServed:
            stable = None
        lo, hi = (self._checker(stable)._lo, self._checker(stable)._hi) if stable is not None else (math.inf, -math.inf)
        if stable is not None and not getattr(stable.predictor, "one_value", True):
            stable = None  # not a one-value model: the general path answers (and refuses) it
        canary = labels.get("canary")
        has_canary = canary is not None and canary != labels.get("stable") and self.chooser.share > 0
        fast_canary = None
        found = self._available(canary) if has_canary and stable is not None else None
        if found is not None and self.config.rollback.max_disagreement is None and value_of(found) is not None:
            checker = self._checker(found)
            fast_canary = FastCanary(found, checker._lo, checker._hi)
        plan = Plan(labels, versions, self._config, stable, lo, hi, has_canary,
                     self.config.shadow_version is not None, self._store(stable) if stable is not None else None,
                     self.chooser, fast_canary)
        shadow = self._available(self.config.shadow_version)
        if shadow is not None and stable is not None:
            if self.shadow_stats.version != shadow.number:
                self.shadow_stats = ShadowStats(version=shadow.number)
            plan.copy = (shadow, self.config.shadow_share, stable.predictor.manifest)
            self._fast_target = self._target(shadow, stable.predictor.manifest, self.shadow_stats)
        self._plan = plan
        return plan

    def _available(self, number: Optional[int]) -> Optional[Version]:
        if number is None:
            return None
        version = self.repo.models[self.name].versions.get(number)
        return version if version is not None and version.state is State.AVAILABLE else None

    # ------------------------------------------------------------------ picking

    def pick(self, version: Optional[int] = None, label: Optional[str] = None,
             key: Optional[str] = None) -> tuple[Version, bool]:
        """The version a request goes to and whether it is the canary.

        Raises:
            NotServed: see ``Repository.resolve``.
        """
        self._refresh()
        if version is not None or label is not None:
            return self.repo.resolve(self.name, version, label), False
        model = self.repo.models[self.name]
        canary = model.labels.get("canary")
        if canary is not None and canary != model.labels.get("stable") and self.chooser.canary(key):
            found = self._available(canary)
            if found is not None:
                return found, True
        return self.repo.resolve(self.name), False

    # ------------------------------------------------------------------ answering

    def predict_value(self, row: Sequence[float], version: Optional[int] = None, label: Optional[str] = None,
                      key: Optional[str] = None) -> Outcome:
        """One tabular row -> one value (``Predictor.predict_value``), routed, checked, with its id.

        Raises:
            NotServed: no version to answer (404/503).
            DispatchError: 422 for a non-finite answer with no fallback to give; 500 when the interpreter
            failed and no fallback answered.
        """
        if version is None and label is None:  # the default route, in the fewest steps
            model, plan = self._model, self._plan
            if plan is None or plan.labels is not model.labels or plan.versions is not model.versions \
                    or plan.config is not self.repo.config:
                plan = self._replan()
            predict = plan.value
            if predict is not None:
                if plan.canary and (plan.draw() < plan.share if not key else self.chooser.canary(key)):
                    outcome = self._canary_value(row, key, plan)  # drawn once: the general path is told the pick
                    if outcome is not None:
                        return outcome
                try:
                    value = predict(row)
                except EdgeError:
                    raise
                except Exception:  # noqa: BLE001 - the general path runs it again, counts it and fails over
                    value = math.nan
                if plan.lo <= value <= plan.hi:  # False for NaN
                    number = plan.number
                    answers = self.stats.answers
                    answers[number] = answers.get(number, 0) + 1
                    pid = plan.store.remember(number, value)
                    outcome = Outcome(number, value, [pid])
                    if plan.shadow:
                        outcome.shadow = self._copy(plan, number, value, row, pid)
                    return outcome
                return self._answer(_value_runner(row), _check_value, None, None, key, target=(plan.stable, False),
                                    copy=row)
        return self._answer(_value_runner(row), _check_value, version, label, key, copy=row)

    def _canary_value(self, row: Sequence[float], key: Optional[str], plan: Plan) -> Optional[Outcome]:
        """A one-value request the draw sent to the canary: answered by ``plan.fast_canary`` when its answer
        passes the check, else (or when the plan has none) by the general path, told the pick; None when
        the canary is no longer AVAILABLE (the stable answers, as ``pick`` would say)."""
        fast = plan.fast_canary
        if fast is not None and fast.version.state is State.AVAILABLE:
            try:
                value = fast.value(row)  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - EdgeError included: the general path runs it again and decides
                value = math.nan
            if fast.lo <= value <= fast.hi:  # False for NaN
                number = fast.number
                answers = self.stats.answers
                answers[number] = answers.get(number, 0) + 1
                monitor = self.monitor
                if monitor is None or monitor.version != number:
                    monitor = self.monitor = RollbackMonitor(self.name, number, self.config.rollback, log=self.log)
                event = monitor.record(False, False, None)
                if event is not None:
                    self._rolled_back(event)
                pid = self._store(fast.version).remember(number, value)
                outcome = Outcome(number, value, [pid], canary=True)
                if plan.shadow:
                    outcome.shadow = self._copy(plan, number, value, row, pid)
                return outcome
        found = self._available(plan.labels.get("canary"))
        if found is None:
            return None
        return self._answer(_value_runner(row), _check_value, None, None, key, target=(found, True), copy=row)

    def predict(self, inputs: Mapping[str, np.ndarray], version: Optional[int] = None, label: Optional[str] = None,
                key: Optional[str] = None) -> Outcome:
        """A batch ``{input: array}`` -> ``{output key: array}``, routed, checked, one id per row.

        Raises:
            NotServed, DispatchError: as ``predict_value``; EdgeError for inputs the model refuses.
        """
        return self._answer(lambda v: v.predictor.predict(inputs), _check, version, label, key, copy=inputs)

    def _run(self, version: Version, run: Callable[[Version], Any], check: Callable[[OutputChecker, Any], Optional[str]]
             ) -> tuple[Any, Optional[str], bool]:
        """(outputs, failure reason or None, whether the interpreter raised)."""
        version.acquire()
        try:
            outputs = run(version)
        except EdgeError:
            raise  # the request's own fault (a wrong input): no failover, no count
        except Exception as exc:  # noqa: BLE001 - an interpreter failure is a model failure
            return None, OutputChecker.error_reason(exc), True
        finally:
            version.release()
        return outputs, check(self._checker(version), outputs), False

    def _answer(self, run: Callable[[Version], Any], check: Callable[[OutputChecker, Any], Optional[str]],
                version: Optional[int], label: Optional[str], key: Optional[str],
                target: Optional[tuple[Version, bool]] = None, copy: Any = None) -> Outcome:  # copy: the shadow's input
        target, is_canary = target or self.pick(version, label, key)
        outputs, reason, raised = self._run(target, run, check)
        explicit = version is not None or label is not None
        stats = self.stats
        if reason is not None:
            counts = stats.errors if raised else stats.check_failures
            counts[target.number] = counts.get(target.number, 0) + 1
        watched = self._watch(target, run, check, outputs, reason, raised, copy) if is_canary else None
        answer_version, fallback, why = target, False, ""
        if reason is not None and not explicit:
            backup = self._available(self.config.fallback)
            if backup is not None and backup is not target:
                same = watched is not None and watched[0] is backup  # the monitor ran it on this request already
                fb_outputs, fb_reason, fb_raised = watched[1] if same else self._run(backup, run, check)
                if fb_raised or (fb_reason is not None and _non_finite(fb_reason)):
                    raise DispatchError(500 if raised else 422, f"version {target.number} failed ({reason}) and the "
                                                             f"fallback version {backup.number} too ({fb_reason})")
                stats.fallbacks += 1
                outputs, answer_version, fallback, why = fb_outputs, backup, True, reason
        if reason is not None and not fallback:
            if raised:
                raise DispatchError(500, f"version {target.number} of model {self.name!r} failed: {reason}")
            if _non_finite(reason):
                raise DispatchError(422, f"the model produced a non-finite output for these inputs ({reason}); "
                                      "send values nearer the training range")
        stats.answers[answer_version.number] = stats.answers.get(answer_version.number, 0) + 1
        store = self._store(answer_version)
        if isinstance(outputs, float):
            ids = [store.remember(answer_version.number, outputs)]
        else:
            first = outputs[answer_version.predictor.manifest["outputs"][0]["key"]]
            ids = [store.remember(answer_version.number, r) for r in first]
        answer = Outcome(answer_version.number, outputs, ids, canary=is_canary, fallback=fallback, reason=why)
        if not explicit:
            answer.shadow = self._shadow_job(answer_version, outputs, ids, copy, run=run)
        return answer

    def _watch(self, canary: Version, run: Callable[[Version], Any], check: Callable[[OutputChecker, Any], Optional[str]],
               outputs: Any, reason: Optional[str], raised: bool, row: Any = None) -> Optional[tuple[Version, Any]]:
        """Feed the rollback monitor one canary outcome; take the canary out when it fires. Returns
        ``(stable, its _run result)`` when stable was run on the request (the fallback takes it, not run again).

        A failure (the interpreter raised, or the output check failed) counts against the canary only when
        ``stable`` gets the same request right, and, for a row of features (``row``), when the row is within
        the training range: inputs that fail every version, or that no version was trained on, say nothing
        about the canary, and a client must not be able to roll it back by sending them (it could probe for
        far rows that only the canary answers out of range)."""
        if reason is not None and not _in_training_range(canary, row):
            return None
        monitor = self.monitor
        if monitor is None or monitor.version != canary.number:
            monitor = self.monitor = RollbackMonitor(self.name, canary.number, self.config.rollback, log=self.log)
        stable = self._available(self.repo.models[self.name].labels.get("stable"))
        if stable is canary:
            stable = None
        scored = self.config.rollback.max_disagreement is not None and not raised
        ran = None  # stable's (outputs, reason, raised) on this request, run once for both uses
        if stable is not None and (reason is not None or scored):
            try:
                ran = self._run(stable, run, check)
            except EdgeError as exc:  # stable refuses these inputs
                ran = (None, str(exc), True)
        if reason is not None and ran is not None and ran[1] is not None:
            return (stable, ran) if ran[0] is not None else None  # the request's fault: not counted either way
        score = None
        if scored and ran is not None and ran[0] is not None:
            try:
                score = compare(canary.predictor.manifest, outputs, ran[0]).score
            except Exception:  # noqa: BLE001 - stable failing says nothing about the canary
                score = None
        event = monitor.record(raised, reason is not None and not raised, score)
        if event is not None:
            self._rolled_back(event)
        return (stable, ran) if ran is not None and ran[0] is not None else None

    def _rolled_back(self, event: Any) -> None:
        """The rollback monitor fired: count it and take the canary label out."""
        self.stats.rollbacks += 1
        self.stats.rollback_events.append(event)
        self.repo.take_out(self.name, "canary", event.reason)

    def _target(self, shadow: Version, manifest: dict[str, Any], stats: ShadowStats) -> ShadowTarget:
        """Where copies to ``shadow`` go: one ``ShadowTarget`` while version, manifest and stats stay."""
        for t in (self._fast_target, self._shadow_target):
            if t is not None and t.version is shadow and t.stats is stats and t.manifest is manifest:
                return t
        t = self._shadow_target = ShadowTarget(shadow, manifest, stats, self.repo.loader, self.config.variant)
        return t

    def _copy(self, plan: Plan, live: int, value: float, row: Sequence[float], pid: str) -> Optional[ShadowJob]:
        """``_shadow_job`` of a one-value answer with what the plan worked out (the same draw and checks)."""
        copy = plan.copy
        if copy is None:
            return None
        shadow, share, manifest = copy
        if shadow.number == live:
            return None
        if (share < 1.0 and self._sample() >= share) or shadow.state is not State.AVAILABLE:
            return None
        sink = self.shadow_sink
        if sink is not None:
            sink.value(self._fast_target, live, row, value, pid)
            return None
        return ShadowJob(shadow, manifest, value, self.shadow_stats, row=row)

    def _shadow_job(self, live: Version, outputs: Any, ids: list[str], copy: Any = None,
                    run: Optional[Callable[[Version], Any]] = None) -> Optional[ShadowJob]:
        """A copy of this answer for the shadow (none when not sampled or no shadow): to the sink's batch
        (``copy``: the row or the inputs; None returned), or, without a sink, a job that calls ``run``."""
        number = self.config.shadow_version
        if number is None or number == live.number:
            return None
        share = self.config.shadow_share
        if share < 1.0 and self._sample() >= share:  # a share of 1 copies every request without a draw
            return None
        shadow = self._available(number)
        if shadow is None:
            return None
        stats = self.shadow_stats
        if stats.version != number:
            self.shadow_stats = stats = ShadowStats(version=number)
        manifest = (live.predictor if live.predictor is not None else shadow.predictor).manifest
        sink = self.shadow_sink
        if sink is not None and copy is not None:
            sink.job(self._target(shadow, manifest, stats), live.number, copy, outputs, ids)
            return None
        return ShadowJob(shadow, manifest, outputs, stats, run=run)


def _value_runner(row: Sequence[float]) -> Callable[[Version], float]:
    """How a version answers one row on the one-value path."""
    def run(v: Version) -> float:
        return v.predictor.predict_value(row)
    return run


def _check_value(checker: OutputChecker, value: float) -> Optional[str]:
    return checker.check_value(value)


def _check(checker: OutputChecker, outputs: Any) -> Optional[str]:
    return checker.check(outputs)


def _non_finite(reason: str) -> bool:
    """Whether an output check's reason is a non-finite value (``OutputChecker._reason``'s wording)."""
    return "is not finite (" in reason
