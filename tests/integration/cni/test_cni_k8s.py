"""policy.type k8s + kubernetes.kubeconfig: labels, service account and named ports come from the
API server (a tiny HTTPS server started by the test inside the node's namespace)."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.fakekube.server import FakeKube
from tests.fakekube.tls import make_test_ca
from tests.integration.cni.conftest import Node, ip_json
from tests.integration.cni.test_cni_server import ServerProc
from tests.nsnet import Forwarder, socket_in_netns

pytestmark = [pytest.mark.netns, pytest.mark.etcd]

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-7d9f", "namespace": "shop", "labels": {"app": "web", "tier": "fe"}},
    "spec": {
        "serviceAccountName": "websa",
        "containers": [
            {
                "name": "c",
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"containerPort": 9999},
                ],
            },
            {"name": "d", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
        ],
    },
}


class FakeAPI(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        FakeAPI.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/api/v1/namespaces/shop/pods/web-7d9f":
            body, code = json.dumps(POD).encode(), 200
        else:
            body, code = b'{"kind":"Status","code":404}', 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_server(make_node: Callable[[str], Node], tmp_path: Path) -> Iterator[tuple[Node, Path]]:
    node = make_node("node1")
    tls = make_test_ca(tmp_path / "tls")
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeAPI, bind_and_activate=False)
    server.socket.close()
    sock = socket_in_netns(node.netns)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.cert, tls.key)
    server.socket = ctx.wrap_socket(sock, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    ca_data = base64.b64encode(tls.ca.read_bytes()).decode()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca_data}
    server: https://127.0.0.1:{port}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: cni   # the CNI plugin's user
  name: cni@kubernetes
current-context: cni@kubernetes
users:
- name: cni
  user:
    token: "s3cret-token"
""")
    FakeAPI.seen = []
    yield node, kubeconfig
    server.shutdown()
    server.server_close()


def test_pod_labels_sa_ports_from_api(
    api_server: tuple[Node, Path],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
) -> None:
    node, kubeconfig = api_server
    ns = make_netns()
    conf = node.conf(policy={"type": "k8s"}, kubernetes={"kubeconfig": str(kubeconfig)})
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d9f"
    r = node.run("ADD", conf, container_id="abc", netns=f"/var/run/netns/{ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    assert FakeAPI.seen == [("/api/v1/namespaces/shop/pods/web-7d9f", "Bearer s3cret-token")]
    wep = datastore.get("WorkloadEndpoint", "node1-k8s-web--7d9f-eth0", "shop")
    assert wep["metadata"]["labels"] == {
        "app": "web",
        "tier": "fe",
        "projectcalico.org/namespace": "shop",
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/serviceaccount": "websa",
    }
    spec = wep["spec"]
    assert spec["profiles"] == ["kns.shop", "ksa.shop.websa"]
    assert spec["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080},
        {"name": "dns", "protocol": "UDP", "port": 53},
    ]
    assert spec["pod"] == "web-7d9f"
    assert spec["containerID"] == "abc"
    assert spec["endpoint"] == "eth0"
    assert spec["ipNetworks"] == [r.answer["ips"][0]["address"]]
    assert spec["mac"] == r.answer["interfaces"][1]["mac"]
    assert node.run("DEL", conf, container_id="abc", netns="", args=args).rc == 0


def test_missing_pod_fails_add_cleanly(
    api_server: tuple[Node, Path],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
) -> None:
    node, kubeconfig = api_server
    ns = make_netns()
    conf = node.conf(policy={"type": "k8s"}, kubernetes={"kubeconfig": str(kubeconfig)})
    r = node.run(
        "ADD",
        conf,
        container_id="x",
        netns=f"/var/run/netns/{ns}",
        args="K8S_POD_NAMESPACE=shop;K8S_POD_NAME=ghost",
    )
    assert r.rc == 1
    assert r.answer["code"] == 11
    assert "HTTP 404" in r.answer["msg"]
    assert datastore.list("WorkloadEndpoint") == []


def test_k8s_api_root_without_kubeconfig(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
) -> None:
    """Calico's other way to reach the API: kubernetes.k8s_api_root (+ policy.k8s_auth_token)."""
    node = make_node("node1")
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeAPI, bind_and_activate=False)
    server.socket.close()
    sock = socket_in_netns(node.netns)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server.socket = sock
    port = sock.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeAPI.seen = []
    try:
        ns = make_netns()
        conf = node.conf(policy={"type": "k8s", "k8s_auth_token": "tok"},
                         kubernetes={"k8s_api_root": f"http://127.0.0.1:{port}"})  # fmt: skip
        args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d9f"
        r = node.run("ADD", conf, container_id="r1", netns=f"/var/run/netns/{ns}", args=args)
        assert r.rc == 0, r.stdout + r.stderr
        assert FakeAPI.seen == [("/api/v1/namespaces/shop/pods/web-7d9f", "Bearer tok")]
        wep = datastore.get("WorkloadEndpoint", "node1-k8s-web--7d9f-eth0", "shop")
        assert wep["metadata"]["labels"]["app"] == "web"
        assert node.run("DEL", conf, container_id="r1", netns="", args=args).rc == 0
    finally:
        server.shutdown()
        server.server_close()


def test_server_keeps_tls_and_connection_until_the_kubeconfig_changes(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
    tmp_path: Path,
) -> None:
    """Issue #19: in the CNI server the pod lookup reuses one TLS context and one kept-alive
    connection per API server; a changed kubeconfig (a rotated token) is read again."""
    node = make_node("node1")
    with FakeKube(tls_dir=tmp_path / "tls", token="t1") as fake:
        fake.create("namespaces", {"metadata": {"name": "shop"}})
        for i in range(4):
            fake.create("pods", {"metadata": {"name": f"p{i}", "namespace": "shop",
                                              "labels": {"app": f"a{i}"}}, "spec": {}})  # fmt: skip
        fwd = Forwarder(node.netns, fake.port)
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        srv = ServerProc(node.netns, tmp_path / "cni.sock", tmp_path / "server.log")
        try:
            conf = node.conf(policy={"type": "k8s"}, kubernetes={"kubeconfig": str(kubeconfig)})

            def add(i: int) -> None:
                ns = make_netns()
                args = f"K8S_POD_NAMESPACE=shop;K8S_POD_NAME=p{i}"
                r = node.run("ADD", conf, container_id=f"c{i}", netns=f"/var/run/netns/{ns}",
                             args=args)  # fmt: skip
                assert r.rc == 0, r.stdout + r.stderr
                wep = datastore.get("WorkloadEndpoint", f"node1-k8s-p{i}-eth0", "shop")
                assert wep["metadata"]["labels"]["app"] == f"a{i}"

            for i in range(3):
                add(i)
            gets = [r for r in fake.requests if r[1].startswith("/api/v1/namespaces/shop/pods/")]
            assert len(gets) == 3
            assert fwd.connections == 1  # one TLS handshake for three calls
            fake.token = "t2"  # the old token is refused from now on
            fake.write_kubeconfig(kubeconfig)
            add(3)
            assert fwd.connections == 2  # the new kubeconfig: a new context and connection
        finally:
            srv.stop()
            fwd.close()
    assert [line for line in srv.lines() if "fallback" in line] == []


def test_netns_that_vanishes_during_add_leaves_nothing(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
    etcd: EtcdClient,
) -> None:
    """The runtime deletes the pod's netns while ADD runs (here: while the plugin looks the pod
    up): the spec's code 3, and no address, endpoint or veth is left."""
    node = make_node("node1")
    pod_ns = make_netns()

    class Vanishing(FakeAPI):
        def do_GET(self) -> None:
            subprocess.run(["ip", "netns", "del", pod_ns], check=True)
            super().do_GET()

    server = http.server.HTTPServer(("127.0.0.1", 0), Vanishing, bind_and_activate=False)
    server.socket.close()
    sock = socket_in_netns(node.netns)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server.socket = sock
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = f"http://127.0.0.1:{sock.getsockname()[1]}"
        conf = node.conf(policy={"type": "k8s"}, kubernetes={"k8s_api_root": root})
        args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d9f"
        r = node.run("ADD", conf, container_id="v1", netns=f"/var/run/netns/{pod_ns}", args=args)
    finally:
        server.shutdown()
        server.server_close()
    assert (r.rc, r.answer["code"]) == (1, 3), r.stdout + r.stderr
    assert "went away during ADD" in r.answer["msg"]
    assert datastore.list("WorkloadEndpoint") == []
    assert IPAMClient(etcd).ips_by_handle("net1.v1") == []
    assert [link["ifname"] for link in ip_json(node.netns, "link")] == ["lo", "uplink0", "eth0"]
