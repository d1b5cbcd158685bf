"""Health and metrics endpoints of a long-running component (the policy agent, calico-typha):
``/liveness`` (its loop turns: :meth:`Health.beat` within ``LIVENESS_TIMEOUT``), ``/readiness``
(live and :attr:`Health.ready`, which the component sets) with :attr:`Health.detail` in the JSON
answer, and ``/metrics`` (a Prometheus registry). Stdlib HTTP servers on their own threads."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

LIVENESS_TIMEOUT = 30.0


class Health:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_beat = clock()
        self.ready = False
        self.detail: dict[str, Any] = {}

    def beat(self) -> None:
        self.last_beat = self._clock()

    def live(self) -> bool:
        return self._clock() - self.last_beat < LIVENESS_TIMEOUT


def serve(
    host: str,
    port: int,
    *,
    health: Health | None,
    registry: CollectorRegistry | None,
    thread: str = "http",
) -> http.server.ThreadingHTTPServer:
    """One server for health, metrics or both (what is None is not served)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and registry is not None:
                self._send(200, generate_latest(registry), "text/plain; version=0.0.4")
                return
            if path in ("/liveness", "/readiness") and health is not None:
                ok = health.live() and (path == "/liveness" or health.ready)
                body = json.dumps({"ok": ok, **health.detail}).encode()
                self._send(200 if ok else 503, body, "application/json")
                return
            self.send_error(404)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name=thread, daemon=True).start()
    return server
