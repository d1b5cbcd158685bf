"""Finding Typha through a Service's Endpoints (``FELIX_TYPHAK8SSERVICENAME``): the addresses of
ready endpoints on the port named ``calico-typha``, read through a kubeconfig from a tiny API
stand-in on loopback; a missing Service, one with no ready endpoint and an unreachable API server
each raise DiscoveryError naming the Service."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.typha_discovery import (
    DiscoveryError,
    addresses_from_endpoints,
    service_addresses,
)

ENDPOINTS = {
    "apiVersion": "v1",
    "kind": "Endpoints",
    "metadata": {"name": "calico-typha", "namespace": "kube-system"},
    "subsets": [
        {
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
            "notReadyAddresses": [{"ip": "10.0.0.9"}],
            "ports": [{"name": "metrics", "port": 9093}, {"name": "calico-typha", "port": 5473}],
        },
        {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 6000}]},  # the only port: used
        {"addresses": [{"ip": "10.0.0.4"}], "ports": [{"port": 1}, {"port": 2}]},  # which? none
    ],
}


def test_ready_addresses_on_the_typha_port() -> None:
    assert addresses_from_endpoints(ENDPOINTS) == [
        "10.0.0.1:5473",
        "[fd00::2]:5473",
        "10.0.0.3:6000",
    ]
    assert addresses_from_endpoints({"subsets": None}) == []


class _Handler(BaseHTTPRequestHandler):
    objects: dict[str, Any] = {}

    def do_GET(self) -> None:
        obj = self.objects.get(self.path.split("?")[0])
        body = json.dumps(obj or {"kind": "Status", "code": 404, "message": "not found"})
        self.send_response(200 if obj else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    _Handler.objects = {
        "/api/v1/namespaces/kube-system/endpoints/calico-typha": ENDPOINTS,
        "/api/v1/namespaces/kube-system/endpoints/empty": {
            **ENDPOINTS,
            "metadata": {"name": "empty", "namespace": "kube-system"},
            "subsets": [],
        },
    }
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text(f"http://127.0.0.1:{server.server_address[1]}"))
    yield path
    server.shutdown()
    server.server_close()


def kubeconfig_text(url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": url}}],
            "users": [{"name": "t", "user": {}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
        }
    )


def test_the_services_ready_endpoints(kubeconfig: Path) -> None:
    env = {"KUBECONFIG": str(kubeconfig)}
    found = service_addresses("calico-typha", "kube-system", env=env)
    assert found == ["10.0.0.1:5473", "[fd00::2]:5473", "10.0.0.3:6000"]


def test_errors_name_the_service(kubeconfig: Path, tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(kubeconfig)}
    with pytest.raises(DiscoveryError, match=r"Service kube-system/nope: 404"):
        service_addresses("nope", "kube-system", env=env)
    with pytest.raises(DiscoveryError, match=r"Service kube-system/empty has no ready endpoint"):
        service_addresses("empty", "kube-system", env=env)
    dead = tmp_path / "dead"
    dead.write_text(kubeconfig_text("http://127.0.0.1:9"))
    with pytest.raises(DiscoveryError, match=r"Service kube-system/calico-typha: "):
        service_addresses("calico-typha", "kube-system", env={"KUBECONFIG": str(dead)})
