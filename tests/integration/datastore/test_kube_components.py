"""Each component on the Kubernetes datastore (the API server stand-in, Calico's CRDs installed):
calico-node's start-up registers into the Kubernetes Node's annotations, the BGP side renders its
BIRD config from those Nodes and the host's block affinities, and the calico CNI plugin's ADD
annotates the pod (``cni.projectcalico.org/podIP(s)``, ``containerID``: its WorkloadEndpoint in
this mode) and DEL takes the annotations and the address back. The agent enforcing NetworkPolicies
read from the API server: tests/integration/agent/test_agent_kdd.py, and the lab's e2e suite
(tests/e2e/test_lab_netpol.py, ``kubernetes``)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.kube import KubeBackend
from calico.datastore.kube_api import Access
from tests.fakekube import FakeKube
from tests.integration.datastore.backends import install_crds

KUBE_NODE = "/calico/resources/v3/projectcalico.org/nodes/"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        install_crds(lambda d: server.create("customresourcedefinitions", d))
        yield server


def client_of(fake: FakeKube) -> Client:
    return Client(KubeBackend(Access({"server": fake.url}, "test"), timeout=5))


def kube_node(fake: FakeKube, name: str) -> dict[str, Any]:
    """A Node as a kubelet registers it (the Calico Node's precondition in this mode)."""
    return fake.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": name, "labels": {"rack": "r1"}}})  # fmt: skip


def calico_node(client: Client, name: str, ip: str) -> None:
    """What calico-node's start-up writes onto its (existing) Node: the BGP address."""
    node = client.get("Node", name)
    node["spec"]["bgp"] = {"ipv4Address": ip}
    client.update(node)


def wait(what: str, pred: Callable[[], object], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---- calico-node -----------------------------------------------------------------------------


def startup_env(name: str, ip: str) -> dict[str, str]:
    return {"NODENAME": name, "IP": ip, "CALICO_IPV4POOL_CIDR": "10.65.0.0/16",
            "CALICO_IPV4POOL_VXLAN": "Always", "CALICO_IPV4POOL_IPIP": "Never",
            "CALICO_NETWORKING_BACKEND": "bird", "AS": "64512"}  # fmt: skip


def test_calico_node_registers_into_the_kubernetes_node(fake: FakeKube) -> None:
    from calico.node import startup

    kube_node(fake, "n1")
    client = client_of(fake)
    node = startup.run_startup(client, startup_env("n1", "10.99.0.11/24"))
    notes = fake.get("nodes", "n1")["metadata"]["annotations"]
    assert notes["projectcalico.org/IPv4Address"] == "10.99.0.11/24"
    assert notes["projectcalico.org/ASNumber"] == "64512"
    # VXLAN Always: the tunnel allocator's address and MAC land on the Node too
    assert notes["projectcalico.org/IPv4VXLANTunnelAddr"].startswith("10.65.")
    assert notes["projectcalico.org/VXLANTunnelMACAddr"]
    assert fake.get("nodes", "n1")["metadata"]["labels"] == {"rack": "r1"}  # kubelet's, kept
    assert node["spec"]["bgp"]["ipv4Address"] == "10.99.0.11/24"
    assert node["spec"]["ipv4VXLANTunnelAddr"] == notes["projectcalico.org/IPv4VXLANTunnelAddr"]
    pools = fake.list("ippools.crd.projectcalico.org")
    assert [p["spec"]["cidr"] for p in pools] == ["10.65.0.0/16"]
    assert fake.list(
        "clusterinformations.crd.projectcalico.org"
    )  # ClusterInformation default, as a custom resource
    client.backend.close()


def test_calico_node_without_its_kubernetes_node_writes_nothing_of_it(fake: FakeKube) -> None:
    from calico.node import startup

    client = client_of(fake)
    with pytest.raises(Exception, match="n9"):
        startup.run_startup(client, startup_env("n9", "10.99.0.19/24"))
    assert fake.list("nodes") == []  # never made up: the kubelet registers Nodes
    client.backend.close()


# ---- the BGP side ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD (bird) is not installed")
def test_bgp_renders_the_mesh_from_kubernetes_nodes(fake: FakeKube, tmp_path: Path) -> None:
    from calico.bgp.main import BgpRenderer, watched_prefixes
    from calico.datastore.syncer import Syncer

    client = client_of(fake)
    for name, ip in (("me", "10.0.0.1/24"), ("other", "10.0.0.2/24")):
        kube_node(fake, name)
        calico_node(client, name, ip)
    r = BgpRenderer("me", cfg_path=tmp_path / "bird.cfg", sock_path=tmp_path / "bird.ctl")
    backend = KubeBackend(Access({"server": fake.url}, "test"), timeout=5)
    syncer = Syncer(backend, watched_prefixes("me"), on_updates=r.on_updates,
                    on_status=r.on_status)  # fmt: skip
    stop = threading.Event()
    syncer.start()
    loop = threading.Thread(target=r.run, args=(stop,), daemon=True)
    loop.start()
    try:
        wait(
            "the first render", lambda: r.cfg_path.exists() and "10.0.0.2" in r.cfg_path.read_text()
        )
        text = r.cfg_path.read_text()
        assert "protocol bgp Mesh_10_0_0_2" in text
        assert "10.0.0.1" in text  # this node's router id / source address
        # a third Node registers; this host gets a block affinity (a BlockAffinity resource)
        kube_node(fake, "third")
        calico_node(client, "third", "10.0.0.3/24")
        backend.put("/calico/ipam/v2/host/me/ipv4/block/192.168.7.0-26",
                    '{"state":"confirmed","deleted":false}')  # fmt: skip
        wait("the third peer and the blackhole route",
             lambda: "Mesh_10_0_0_3" in r.cfg_path.read_text()
             and "192.168.7.0/26" in r.cfg_path.read_text())  # fmt: skip
        assert fake.list(
            "blockaffinities.crd.projectcalico.org"
        )  # stored as Calico's custom resource
        subprocess.run(["bird", "-p", "-c", str(r.cfg_path)], check=True)  # BIRD parses it
    finally:
        stop.set()
        syncer.stop()
        backend.close()
        client.backend.close()
