"""Prometheus metrics of the agent (Felix's names where Felix has one), on a private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


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

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
