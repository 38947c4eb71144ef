"""The rollout's ``/metrics`` families: a ``prometheus_client`` custom collector over the repository (version
states, load errors, the config's error) and each model's ``Dispatcher`` (answers per version, fallbacks,
failed output checks, interpreter errors, rollbacks, the shadow's disagreement histograms, top-1
differences and dropped copies, the feedback's online metrics per version and window). It only reads what those own; the
``Telemetry`` owner registers it beside its own collector (``Telemetry.exposition``)."""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.repository import State
from edge.text import printable


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


class RolloutCollector(Collector):
    """The rollout families of a repository and its dispatchers (``{model name: Dispatcher}``)."""

    def __init__(self, repo: Any, dispatchers: Mapping[str, Any]) -> None:
        self.repo, self.dispatchers = repo, dispatchers

    def collect(self) -> Iterator[Metric]:
        repo = self.repo
        state = GaugeMetricFamily("deploykit_model_version_state",
                                  "1 for each model version's current state (LOADING, AVAILABLE, UNLOADING, END).",
                                  labels=["model", "version", "state"])
        failed = GaugeMetricFamily("deploykit_model_version_load_failed",
                                   "1 for a version whose load, checks or self-test failed; the reason in 'error'.",
                                   labels=["model", "version", "error"])
        labels = GaugeMetricFamily("deploykit_model_label_version", "The version each label points to.",
                                   labels=["model", "label"])
        for name, model in sorted(repo.models.items()):
            for number, version in sorted(model.versions.items()):
                for s in State:
                    state.add_metric([name, str(number), s.value], 1 if version.state is s else 0)
                if version.state is State.END and version.error:
                    failed.add_metric([name, str(number), printable(version.error[:300])], 1)
            for label, number in sorted(model.labels.items()):
                labels.add_metric([name, label], number)
        yield state
        yield failed
        yield labels
        yield GaugeMetricFamily("deploykit_rollout_config_error",
                                "1 when the rollout config's last change was refused (the last good one serves).",
                                value=1 if repo.config_error else 0)
        answers = CounterMetricFamily("deploykit_model_answers", "Answers per model version.", labels=["model", "version"])
        checks = CounterMetricFamily("deploykit_model_output_check_failures", "Answers that failed the output checks.",
                                     labels=["model", "version"])
        errors = CounterMetricFamily("deploykit_model_interpreter_errors", "Predictions the interpreter failed.",
                                     labels=["model", "version"])
        fallbacks = CounterMetricFamily("deploykit_model_fallbacks", "Answers given by the fallback version.",
                                        labels=["model"])
        rollbacks = CounterMetricFamily("deploykit_model_rollbacks", "Canaries taken out by the rollback monitor.",
                                        labels=["model"])
        compared = CounterMetricFamily("deploykit_shadow_compared", "Requests the shadow version answered too.",
                                       labels=["model", "shadow_version"])
        shadow_errors = CounterMetricFamily("deploykit_shadow_errors", "Shadow predictions that failed.",
                                            labels=["model", "shadow_version"])
        dropped = CounterMetricFamily("deploykit_shadow_dropped",
                                      "Copies for the shadow made and not compared: the socket refused them, its "
                                      "worker process exited, the shadow version went away first, or the server "
                                      "stopped.", labels=["model", "shadow_version"])
        skipped = CounterMetricFamily("deploykit_shadow_skipped",
                                      "Requests not copied for the shadow while its worker process was behind "
                                      "(its CPU budget): at saturation the shadow compares a sampled share.",
                                      labels=["model", "shadow_version"])
        top1 = CounterMetricFamily("deploykit_shadow_top1_differs", "Shadow comparisons whose top-1 class differs.",
                                   labels=["model", "shadow_version"])
        absolute = HistogramMetricFamily("deploykit_shadow_absolute_difference",
                                         "The shadow's largest absolute difference from the live answer, per request.",
                                         labels=["model", "shadow_version"])
        relative = HistogramMetricFamily("deploykit_shadow_relative_difference",
                                         "The shadow's largest symmetric relative difference, per request.",
                                         labels=["model", "shadow_version"])
        restarts = CounterMetricFamily("deploykit_shadow_worker_restarts",
                                       "Times the shadow's worker process exited while the server ran (a new one "
                                       "starts with the next batch).")
        workers = {id(d.shadow_sink.worker): d.shadow_sink.worker for d in self.dispatchers.values()
                   if getattr(d.shadow_sink, "worker", None) is not None and d.shadow_stats.version is not None}
        if workers:
            restarts.add_metric([], sum(w.restarts for w in workers.values()))
        joined = GaugeMetricFamily("deploykit_feedback_joined", "Predictions joined to their ground truth.",
                                   labels=["model", "version", "window"])
        mae = GaugeMetricFamily("deploykit_feedback_mae", "Mean absolute error against the ground truth.",
                                labels=["model", "version", "window"])
        rmse = GaugeMetricFamily("deploykit_feedback_rmse", "Root mean squared error against the ground truth.",
                                 labels=["model", "version", "window"])
        accuracy = GaugeMetricFamily("deploykit_feedback_accuracy", "Accuracy against the ground truth.",
                                     labels=["model", "version", "window"])
        for name, d in sorted(self.dispatchers.items()):
            st = d.stats
            for number, n in sorted(st.answers.items()):
                answers.add_metric([name, str(number)], n)
            for number, n in sorted(st.check_failures.items()):
                checks.add_metric([name, str(number)], n)
            for number, n in sorted(st.errors.items()):
                errors.add_metric([name, str(number)], n)
            fallbacks.add_metric([name], st.fallbacks)
            rollbacks.add_metric([name], st.rollbacks)
            sh = d.shadow_stats
            if sh.version is not None:
                with sh.lock:  # a consistent histogram (count with its sum)
                    key = [name, str(sh.version)]
                    compared.add_metric(key, sh.compared)
                    shadow_errors.add_metric(key, sh.errors)
                    dropped.add_metric(key, sh.dropped)
                    skipped.add_metric(key, sh.skipped)
                    top1.add_metric(key, sh.top1_differs)
                    for family, hist in ((absolute, sh.absolute), (relative, sh.relative)):
                        family.add_metric(key, [(_bound(b), n) for b, n in hist.cumulative()], hist.sum)
            store = d.feedback
            if store is not None:
                for number, per in store.metrics().items():
                    for window, stats in per.items():
                        key = [name, str(number), window]
                        joined.add_metric(key, stats["joined"])
                        for family, field in ((mae, "mae"), (rmse, "rmse"), (accuracy, "accuracy")):
                            if stats.get(field) is not None:
                                family.add_metric(key, stats[field])
        yield from (answers, checks, errors, fallbacks, rollbacks, compared, shadow_errors, dropped, skipped, top1, absolute, relative,
                    *([restarts] if workers else []), joined, mae, rmse, accuracy)
