"""The node controller (``ENABLED_CONTROLLERS=node``): a deleted Kubernetes Node takes its Calico
Node (the one whose ``orchRefs`` names it), its WorkloadEndpoints, its pods' and tunnel addresses
(also a leaked one no WorkloadEndpoint lists), its affinities and empty blocks; a block another
node borrowed from stays, without affinity; nothing happens while a pod is still bound to the
deleted Node; Calico Nodes of other or no Kubernetes Nodes are untouched; a Node deleted while
the controller was down is found at start. Real etcd; the fake API server, then a real
kube-apiserver v1.20."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.controllers.manager import KubeControllers
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.ipam import keys
from calico.ipam.client import IPAMClient
from tests.fakekube import FakeKube
from tests.integration.controllers import kube_apiserver
from tests.integration.controllers.conftest import eventually

pytestmark = pytest.mark.etcd


def res(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def k8s_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def k8s_pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
    }


def pod_address(ds: Client, ipam: IPAMClient, node: str, pod: str, *, wep: bool = True) -> str:
    attrs = {"node": node, "namespace": "default", "pod": pod}
    (ip,) = ipam.auto_assign(handle_id=f"k8s-pod-network.{pod}", host=node, attrs=attrs)
    if wep:
        ds.create(res("WorkloadEndpoint", f"{node}-k8s-{pod}-eth0", {
            "orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
            "interfaceName": f"cali{pod}", "ipNetworks": [f"{ip}/32"], "containerID": pod,
        }, namespace="default"))  # fmt: skip
    return ip


class World:
    """Calico state of three hosts: c1 (Kubernetes Node k1), c2 (k2), c3 (no Kubernetes Node)."""

    def __init__(self, etcd: EtcdClient, ds: Client) -> None:
        self.etcd, self.ds, self.ipam = etcd, ds, IPAMClient(etcd, client=ds)
        ds.create(res("IPPool", "p", {"cidr": "10.70.0.0/24", "blockSize": 29}))
        for i, k8s in ((1, "k1"), (2, "k2"), (3, None)):
            spec: dict[str, Any] = {"bgp": {"ipv4Address": f"10.0.0.{i}/24"}}
            if k8s:
                spec["orchRefs"] = [{"nodeName": k8s, "orchestrator": "k8s"}]
            ds.create(res("Node", f"c{i}", spec))
        self.a = pod_address(ds, self.ipam, "c1", "a")
        self.leaked = pod_address(ds, self.ipam, "c1", "gone", wep=False)  # CNI DEL never ran
        (self.tunnel,) = self.ipam.auto_assign(
            handle_id="vxlan-tunnel-addr-c1",
            host="c1",
            attrs={"node": "c1", "type": "vxlanTunnelAddress"},
        )
        node = ds.get("Node", "c1")
        node["spec"]["ipv4VXLANTunnelAddr"] = self.tunnel
        ds.update(node)
        self.c1_blocks = {str(c) for c in self.ipam.host_blocks("c1")}
        # c2 borrows the last address of c1's block: that block stays, without affinity.
        self.shared = sorted(self.c1_blocks)[0]
        self.borrowed = str(list(ipaddress.ip_network(self.shared).hosts())[-1])
        self.ipam.assign_ip(self.borrowed, handle_id="k8s-pod-network.b", host="c2",
                            attrs={"node": "c2", "namespace": "default", "pod": "b"})  # fmt: skip
        self.c3 = pod_address(ds, self.ipam, "c3", "c")

    def nodes(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.ds.list("Node")}

    def assert_c1_intact(self) -> None:
        assert self.nodes() == {"c1", "c2", "c3"}
        assert {str(c) for c in self.ipam.host_blocks("c1")} == self.c1_blocks
        for ip in (self.a, self.leaked, self.tunnel):
            assert self.ipam.ip_info(ip) is not None, ip

    def assert_c1_cleaned(self) -> None:
        assert self.nodes() == {"c2", "c3"}
        assert self.etcd.get_prefix(f"{keys.HOST_PREFIX}c1/")[0] == []  # no affinity left
        for ip in (self.a, self.leaked, self.tunnel):
            assert self.ipam.ip_info(ip) is None, f"{ip} still allocated"
        assert [w["spec"]["node"] for w in self.ds.list("WorkloadEndpoint")] == ["c3"]
        blocks = {str(b.cidr): b for b in self.ipam.blocks()}
        for cidr in self.c1_blocks - {self.shared}:
            assert cidr not in blocks  # empty: deleted
        kept = blocks[self.shared]
        assert kept.affinity is None
        assert [ip for ip, _ in kept.allocated()] == [self.borrowed]
        assert self.ipam.ip_info(self.c3) is not None


def cleaned(world: World) -> Callable[[], None]:
    def check() -> None:
        assert "c1" not in world.nodes(), "Calico Node c1 still there"
        world.assert_c1_cleaned()

    return check


def test_a_deleted_node_is_cleaned_up_once_its_pods_are_gone(
    fake_kube: FakeKube,
    make_controller: Callable[..., KubeControllers],
    etcd: EtcdClient,
    datastore: Client,
) -> None:
    world = World(etcd, datastore)
    for name in ("k1", "k2"):
        fake_kube.create("nodes", k8s_node(name))
    fake_kube.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "default"}})  # fmt: skip
    fake_kube.create("pods", k8s_pod("a", "k1"))
    make_controller(controllers=("node",))
    fake_kube.delete("nodes", "k1")
    # A pod is still bound to k1 (its kubelet may run on): nothing is released meanwhile.
    time.sleep(1.5)
    world.assert_c1_intact()
    fake_kube.delete("pods", "a", "default")
    eventually(cleaned(world), timeout=30)  # at the next look (every PENDING_RETRY = 10 s)
    fake_kube.delete("nodes", "k2")  # c2's Node: its borrowed address goes with it
    eventually(lambda: _check("c2" not in world.nodes()), timeout=30)
    assert world.ipam.ip_info(world.borrowed) is None
    assert world.nodes() == {"c3"}  # no Kubernetes Node: never touched


def test_a_node_deleted_while_the_controller_was_down_is_found_at_start(
    fake_kube: FakeKube,
    make_controller: Callable[..., KubeControllers],
    etcd: EtcdClient,
    datastore: Client,
) -> None:
    world = World(etcd, datastore)
    fake_kube.create("nodes", k8s_node("k2"))  # k1 is gone already
    make_controller(controllers=("node",))
    eventually(cleaned(world), timeout=30)
    assert world.nodes() == {"c2", "c3"}


def test_through_a_real_api_server(
    tmp_path: Path, etcd: EtcdClient, datastore: Client, etcd_server: Any
) -> None:
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    from calico.controllers.manager import ControllerConfig
    from calico.datastore.config import DatastoreConfig

    world = World(etcd, datastore)
    with kube_apiserver.running(tmp_path / "kube") as api:
        for name in ("k1", "k2"):
            api.kubectl("apply", "-f", "-", input=json.dumps(k8s_node(name)))
        ctl = KubeControllers(
            ControllerConfig(
                datastore=DatastoreConfig(endpoints=etcd_server.endpoint),
                kubeconfig=str(api.kubeconfig),
                controllers=("node",),
                listen=None,
                workers=2,
                resync_period=3600.0,
            )
        )
        ctl.start()
        try:
            assert ctl.wait_ready(30), ctl.status()
            time.sleep(1)
            world.assert_c1_intact()
            api.kubectl("delete", "node", "k1")
            eventually(cleaned(world), timeout=30)
            assert world.nodes() == {"c2", "c3"}
        finally:
            ctl.stop()


def _check(ok: object) -> None:
    assert ok
