"""Prometheus metrics of Typha (Calico's names where Calico's Typha has one), private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.accepted = Counter(
            "typha_connections_accepted", "Connections accepted over time", registry=r
        )
        self.active = Gauge("typha_connections_active", "Open client connections", registry=r)
        self.dropped = Counter(
            "typha_connections_dropped",
            "Connections dropped by Typha, by reason (slow, pong, handshake, refused, tls, ...)",
            ["reason"],
            registry=r,
        )
        self.snapshots_generated = Counter(
            "typha_snapshots_generated", "Snapshots encoded", ["syncer"], registry=r
        )
        self.snapshots_reused = Counter(
            "typha_snapshots_reused", "Snapshots reused for another client", ["syncer"], registry=r
        )
        self.snapshot_raw_bytes = Gauge(
            "typha_snapshot_raw_bytes", "Size of the newest snapshot", ["syncer"], registry=r
        )
        self.snapshot_compressed_bytes = Gauge(
            "typha_snapshot_compressed_bytes",
            "Size of the newest snapshot, compressed",
            ["syncer"],
            registry=r,
        )
        self.cache_size = Gauge("typha_cache_size", "Keys in the cache", ["syncer"], registry=r)
        self.updates = Counter(
            "typha_updates", "Updates received from the datastore syncer", ["syncer"], registry=r
        )
        self.breadcrumb_seq = Gauge(
            "typha_breadcrumb_seq_number", "Sequence number of the newest change", ["syncer"],
            registry=r,
        )  # fmt: skip
        self.log_bytes = Gauge(
            "typha_log_bytes", "Bytes of changes kept for clients behind", ["syncer"], registry=r
        )
        self.bytes_sent = Counter("typha_bytes_sent", "Bytes written to clients", registry=r)
        self.snapshot_send = Histogram(
            "typha_client_snapshot_send_secs",
            "Connect to the snapshot's last byte written, per client",
            buckets=SECONDS,
            registry=r,
        )
        self.ping_latency = Summary("typha_ping_latency", "Ping to pong, seconds", registry=r)
