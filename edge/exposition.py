"""``Exposition``: the custom ``prometheus_client`` collector over ``edge.metrics.Metrics``' counted state.
Imported by ``Metrics.render`` at the first ``/metrics`` read, so that ``prometheus_client`` is not imported
at start-up. Label values read from the bundle (feature and model names) go out through ``edge.text.printable``:
their control characters as visible escapes. Raises nothing itself."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.metrics import BUCKETS, _num
from edge.text import printable


class Exposition(Collector):
    """A custom ``prometheus_client`` collector over counted state (``Metrics.state()`` or several merged):
    the counting stays in ``Metrics`` (bulk, numpy), the collector only reads its result."""

    def __init__(self, feature_names: Sequence[str], info: dict[str, str], state: dict[str, Any],
                 drift: list[dict[str, Any]]) -> None:
        self.feature_names, self.info, self.state, self.drift = list(feature_names), info, state, drift

    def collect(self) -> Iterator[Metric]:
        state, drift = self.state, self.drift
        info = GaugeMetricFamily("deploykit_model_info", "The loaded model artifact.", labels=list(self.info))
        info.add_metric([printable(v) for v in self.info.values()], 1)
        yield info
        requests = CounterMetricFamily("deploykit_requests", "HTTP requests by route and status.",
                                       labels=["route", "status"])
        for route, status, n in state["requests"]:
            requests.add_metric([route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("deploykit_request_duration_seconds", "Request latency by route.",
                                        labels=["route"])
        hist, sums = state["hist"], state["hist_sum"]
        for route in sorted(hist):
            cumulative, buckets = 0, []
            for bound, n in zip(BUCKETS, hist[route]):
                cumulative += n
                buckets.append((_num(bound), cumulative))
            buckets.append(("+Inf", cumulative + hist[route][-1]))
            latency.add_metric([route], buckets, sums[route])
        yield latency
        yield CounterMetricFamily("deploykit_predictions", "Rows predicted.", value=state["predictions"])
        out = CounterMetricFamily("deploykit_input_out_of_range",
                                  "Input values outside the training range, per feature.", labels=["feature"])
        for name in self.feature_names:
            out.add_metric([printable(name)], state["out_of_range"].get(name, 0))
        yield out
        yield GaugeMetricFamily("deploykit_inflight_requests", "Requests being served now.", value=state["inflight"])
        yield CounterMetricFamily("deploykit_rejected_busy", "Requests answered 503 over the concurrency limit.",
                                  value=state["rejected_busy"])
        yield CounterMetricFamily("deploykit_log_lines_dropped",
                                  "Log lines that could not be written (full disk, removed folder).",
                                  value=state["log_errors"])
        stat = GaugeMetricFamily("deploykit_drift_ks_statistic",
                                 "Two-sample KS statistic, recent inputs vs training sample.", labels=["feature"])
        pvalue = GaugeMetricFamily("deploykit_drift_ks_pvalue", "Two-sample KS p-value.", labels=["feature"])
        detected = GaugeMetricFamily("deploykit_drift_detected",
                                     "1 when the feature's p-value is below alpha over a full enough window.",
                                     labels=["feature"])
        for d in drift:
            if d["statistic"] is not None:
                stat.add_metric([printable(d["feature"])], d["statistic"])
            if d["p_value"] is not None:
                pvalue.add_metric([printable(d["feature"])], d["p_value"])
            detected.add_metric([printable(d["feature"])], 1 if d["drifted"] else 0)
        yield stat
        yield pvalue
        yield detected
        yield GaugeMetricFamily("deploykit_drift_window_rows", "Rows in the drift window.",
                                value=drift[0]["n"] if drift else 0)
