"""Health and metrics: ``/healthz`` (live), ``/readyz`` (in sync), ``/metrics`` (Prometheus).

One small HTTP server (127.0.0.1 by default; the manifest's probes use ``check-health`` from inside
the pod). Metrics live in the controller's own registry, so several controllers can run in one
process (tests) without sharing counters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "calico_kube_controllers"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.objects = Gauge(
            f"{PREFIX}_k8s_objects",
            "Kubernetes objects in the informer cache",
            ["kind"],
            registry=r,
        )
        self.writes = Counter(
            f"{PREFIX}_datastore_writes",
            "Calico objects written (synced)",
            ["kind", "op"],
            registry=r,
        )
        self.reconciles = Counter(f"{PREFIX}_reconciles", "Keys reconciled", ["kind"], registry=r)
        self.sync_errors = Counter(
            f"{PREFIX}_sync_errors", "Failed reconciles (retried)", ["kind"], registry=r
        )
        self.conversion_errors = Counter(
            f"{PREFIX}_conversion_errors",
            "Kubernetes objects with conversion problems",
            ["kind"],
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_event_to_write_seconds",
            "Time from a Kubernetes event to the datastore write it caused",
            ["kind"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.watch_restarts = Counter(
            f"{PREFIX}_watch_restarts",
            "Watch restarts (gone = 410 re-list, reconnect, error)",
            ["kind", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Keys waiting in the work queue", registry=r
        )
        self.in_sync = Gauge(
            f"{PREFIX}_in_sync",
            "1 when every informer and the datastore cache have synced",
            registry=r,
        )


StatusFn = Callable[[], tuple[bool, bool, dict[str, Any]]]  # -> (live, ready, detail)


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        live, ready, detail = self.server.status()
        if self.path.startswith("/metrics"):
            body, ctype, code = (
                generate_latest(self.server.metrics.registry),
                CONTENT_TYPE_LATEST,
                200,
            )
        elif self.path.startswith(("/healthz", "/livez", "/readyz")):
            ok = ready if self.path.startswith("/readyz") else live
            body = json.dumps({"live": live, "ready": ready, **detail}).encode()
            ctype, code = "application/json", 200 if ok else 503
        else:
            body, ctype, code = b"not found\n", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, *, metrics: Metrics, status: StatusFn) -> None:
        self.metrics = metrics
        self.status = status
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(
            target=self.serve_forever, name="health", daemon=True, kwargs={"poll_interval": 0.1}
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
