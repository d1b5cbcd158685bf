"""A read-only Kubernetes API endpoint for the lab's CNI plugin: ``GET`` a pod, nothing else.

The CNI plugin learns a pod's labels, service account and named ports from the API server at ADD
time (``kubernetes.k8s_api_root`` in its config). The lab is its own control plane, so it writes
each pod as JSON under ``<lab>/api/`` and this script, run inside the lab's core namespace, serves
those files at ``/api/v1/namespaces/<ns>/pods/<name>``. Stdlib only, run as ``python -I -S
apiserver.py``.
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

POD_PATH = re.compile(r"^/api/v1/namespaces/([a-z0-9.-]+)/pods/([a-z0-9.-]+)$")


def pod_file(root: Path, namespace: str, name: str) -> Path:
    return root / "namespaces" / namespace / "pods" / f"{name}.json"


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": reason,
            "message": message,
            "code": code,
        }
    ).encode()


def make_handler(root: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            m = POD_PATH.match(self.path.split("?", 1)[0])
            body: bytes
            if m is None:
                code, body = 404, _status(404, "NotFound", f"{self.path}: not served by the lab")
            else:
                try:
                    code, body = 200, pod_file(root, m.group(1), m.group(2)).read_bytes()
                except OSError:
                    code, body = 404, _status(404, "NotFound", f'pods "{m.group(2)}" not found')
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Path(args.root)))
    server.serve_forever()


if __name__ == "__main__":
    main()
