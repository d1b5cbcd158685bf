"""Health endpoint: ``/liveness`` (the main loop is turning) and ``/readiness`` (in sync and the
dataplane programmed without a pending failure). A stdlib HTTP server on its own thread."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

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

    def serve(self, host: str, port: int) -> http.server.ThreadingHTTPServer:
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/liveness":
                    ok = health.live()
                elif path == "/readiness":
                    ok = health.live() and health.ready
                else:
                    self.send_error(404)
                    return
                body = json.dumps({"ok": ok, **health.detail}).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = http.server.ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
        return server
