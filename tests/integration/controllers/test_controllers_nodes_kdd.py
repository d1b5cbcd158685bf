"""The node controller with the Kubernetes datastore (``DATASTORE_TYPE=kubernetes``): the Calico
Node is the Kubernetes Node, so a deleted Node leaves only its IPAM host (BlockAffinity,
IPAMBlock, IPAMHandle custom resources). Once no pod is bound to it any more, the controller
releases the pod and tunnel addresses attributed to the host, deletes its affinities and its empty
block; the block where a live pod of another node holds an address keeps that address, without
affinity; another node's IPAM is untouched. A Node deleted while the controller was down is
found by the sweep at start. The API server stand-in (calico_lab.kubeapi) with Calico's CRDs."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.controllers.manager import ControllerConfig, KubeControllers
from calico.datastore.client import Client
from calico.datastore.config import DatastoreConfig
from calico.datastore.kube import KubeBackend
from calico.datastore.kube_api import Access
from calico.ipam import keys
from calico.ipam.client import IPAMClient
from tests.fakekube import FakeKube
from tests.integration.controllers.conftest import eventually
from tests.integration.datastore.backends import install_crds


def k8s_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def k8s_pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    fake = FakeKube(bookmark_interval=3600).start()
    install_crds(lambda d: fake.create("customresourcedefinitions", d))
    fake.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": "default"}})  # fmt: skip
    yield fake
    fake.stop()


class World:
    """Kubernetes Nodes k1, k2, k3; IPAM host k1: pods a..d fill one block (blockSize 30), its
    tunnel address and a leaked pod address sit in a second, where live pod ``live`` of k2 holds
    an address too; k3's pod has an address of its own block."""

    def __init__(self, fake: FakeKube) -> None:
        self.ds = Client(KubeBackend(Access({"server": fake.url}, "test"), timeout=5))
        self.ipam = IPAMClient(self.ds.backend, client=self.ds)
        for name in ("k1", "k2", "k3"):
            fake.create("nodes", k8s_node(name))
        self.ds.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                        "metadata": {"name": "p"},
                        "spec": {"cidr": "10.70.0.0/24", "blockSize": 30}})  # fmt: skip
        self.pods = [self.address("k1", pod=p) for p in ("a", "b", "c", "d", "leaked")]
        self.tunnel = self.address("k1", type="vxlanTunnelAddress")
        self.k1_blocks = {str(c) for c in self.ipam.host_blocks("k1")}
        assert len(self.k1_blocks) == 2, self.k1_blocks
        info = self.ipam.ip_info(self.tunnel)
        assert info is not None
        self.shared = str(info["block"])
        self.borrowed = next(str(ip) for ip in ipaddress.ip_network(self.shared)
                             if self.ipam.ip_info(str(ip)) is None)  # fmt: skip
        live = {"node": "k2", "namespace": "default", "pod": "live"}
        self.ipam.assign_ip(self.borrowed, handle_id="k8s-pod-network.live", host="k2", attrs=live)
        fake.create("pods", k8s_pod("live", "k2"))
        self.k3 = self.address("k3", pod="e")

    def address(self, host: str, **attrs: str) -> str:
        if "pod" in attrs:
            attrs["namespace"] = "default"
        handle = f"h-{host}-{attrs.get('pod') or attrs.get('type')}"
        (ip,) = self.ipam.auto_assign(handle_id=handle, host=host, attrs={"node": host, **attrs})
        return str(ip)

    def handles(self) -> set[str]:
        kvs, _ = self.ds.backend.get_prefix(keys.HANDLE_PREFIX)
        return {kv.key[len(keys.HANDLE_PREFIX) :] for kv in kvs}

    def assert_k1_intact(self) -> None:
        assert {str(c) for c in self.ipam.host_blocks("k1")} == self.k1_blocks
        for ip in [*self.pods, self.tunnel]:
            assert self.ipam.ip_info(ip) is not None, ip

    def assert_k1_cleaned(self) -> None:
        assert self.ds.backend.get_prefix(f"{keys.HOST_PREFIX}k1/")[0] == []  # no affinity
        for ip in [*self.pods, self.tunnel]:
            assert self.ipam.ip_info(ip) is None, f"{ip} still allocated"
        assert not {h for h in self.handles() if h.startswith("h-k1-")}, self.handles()
        blocks = {str(b.cidr): b for b in self.ipam.blocks()}
        assert self.k1_blocks & set(blocks) == {self.shared}  # the empty one is deleted
        kept = blocks[self.shared]
        assert kept.affinity is None
        assert [ip for ip, _ in kept.allocated()] == [self.borrowed]
        assert self.ipam.ip_info(self.k3) is not None
        assert self.ipam.host_blocks("k3")


def start(fake: FakeKube, tmp_path: Path) -> KubeControllers:
    kubeconfig = str(fake.write_kubeconfig(tmp_path / "kubeconfig"))
    ctl = KubeControllers(ControllerConfig(
        datastore=DatastoreConfig(datastore_type="kubernetes", kube={"kubeconfig": kubeconfig}),
        kubeconfig=kubeconfig, controllers=("node",), listen=None, workers=2,
        resync_period=3600.0,
    ))  # fmt: skip
    ctl.start()
    assert ctl.wait_ready(20), ctl.status()
    return ctl


def test_a_deleted_nodes_ipam_is_released_once_its_pods_are_gone(
    fake: FakeKube, tmp_path: Path
) -> None:
    world = World(fake)
    fake.create("pods", k8s_pod("a", "k1"))
    ctl = start(fake, tmp_path)
    try:
        fake.delete("nodes", "k1")
        # Pod a is still bound to k1 (its kubelet may run on): nothing is released meanwhile.
        time.sleep(1.5)
        world.assert_k1_intact()
        fake.delete("pods", "a", "default")
        eventually(world.assert_k1_cleaned, timeout=30)  # at the next look (PENDING_RETRY)
        assert {n["metadata"]["name"] for n in world.ds.list("Node")} == {"k2", "k3"}
    finally:
        ctl.stop()


def test_a_node_deleted_while_the_controller_was_down_is_found_at_start(
    fake: FakeKube, tmp_path: Path
) -> None:
    world = World(fake)
    fake.delete("nodes", "k1")
    ctl = start(fake, tmp_path)
    try:
        eventually(world.assert_k1_cleaned, timeout=30)
    finally:
        ctl.stop()
