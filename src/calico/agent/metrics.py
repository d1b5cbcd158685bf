"""Prometheus metrics of the agent (Felix's names where Felix has one), on a private registry.

Per-rule counters (``felix_policy_rule_packets_total`` / ``_bytes_total``, labels ``kind``
(policy | profile), ``tier``, ``policy``, ``direction``, ``rule``) are read from the kernel when
scraped (:class:`RuleCollector`); like every metric here they are served only when
``PrometheusMetricsEnabled`` is on (off by default, as Felix's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

RULE_LABELS = ["kind", "tier", "policy", "direction", "rule"]
Samples = Callable[[], Iterable[tuple[dict[str, str], int, int]]]


class RuleCollector(Collector):
    def __init__(self, samples: Samples) -> None:
        self._samples = samples

    def collect(self) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "felix_policy_rule_packets", "Packets that matched a policy rule", labels=RULE_LABELS
        )
        nbytes = CounterMetricFamily(
            "felix_policy_rule_bytes", "Bytes that matched a policy rule", labels=RULE_LABELS
        )
        for labels, p, b in self._samples():
            values = [labels[k] for k in RULE_LABELS]
            packets.add_metric(values, p)
            nbytes.add_metric(values, b)
        yield packets
        yield nbytes


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.local_endpoints = Gauge(
            "felix_active_local_endpoints", "Local workload and host endpoints", registry=r
        )
        self.local_policies = Gauge(
            "felix_active_local_policies", "Policies active on this node", registry=r
        )
        self.local_profiles = Gauge(
            "felix_active_local_profiles", "Profiles active on this node", registry=r
        )
        self.ipsets = Gauge("felix_ipsets_calico", "Active IP sets", registry=r)
        self.apply_time = Histogram(
            "felix_int_dataplane_apply_time_seconds",
            "Time to apply a dataplane update",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.calc_time = Histogram(
            "felix_calc_graph_update_time_seconds",
            "Time to process a batch of datastore updates",
            buckets=(0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.failures = Counter(
            "felix_int_dataplane_failures", "Dataplane apply failures", registry=r
        )
        self.updates = Counter(
            "felix_calc_graph_updates_processed", "Datastore updates processed", registry=r
        )

    def add_rule_counters(self, samples: Samples) -> None:
        self.registry.register(RuleCollector(samples))

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
