"""The node controller's decisions without a datastore: which Calico Node belongs to which
Kubernetes Node, which pods still count, and that a deleted Node with live pods, a Node that still
exists, or a Calico Node of no Kubernetes Node leads to no deletion; calico-node's orchRefs.
With the Kubernetes datastore (the in-memory backend holding what it would): a deleted Node's IPAM
host is released once its pods are gone (affinities, pod and tunnel addresses, the empty block;
a block holding a live pod's address keeps it), and the sweep finds such hosts; etcd mode does
neither."""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.controllers import nodes
from calico.controllers.calico_cache import Key
from calico.node import startup


def cnode(name: str, k8s: str | None = None, other: bool = False) -> dict[str, Any]:
    refs = [{"nodeName": "vm-7", "orchestrator": "openstack"}] if other else []
    if k8s:
        refs.append({"nodeName": k8s, "orchestrator": "k8s"})
    return {"metadata": {"name": name}, "spec": {"orchRefs": refs} if refs else {}}


def pod(name: str, node: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "x"},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


class FakeStore:
    synced = True

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return {"metadata": {"name": key[1]}} if key[1] in self.names else None

    def store_keys(self) -> list[tuple[str, str]]:
        return [("", n) for n in self.names]


class FakeQueue:
    def __init__(self) -> None:
        self.added: list[Key] = []
        self.later: list[tuple[Key, float]] = []

    def add(self, key: Key, added_at: float | None = None) -> None:
        self.added.append(key)

    def add_after(self, key: Key, delay: float, added_at: float | None = None) -> None:
        self.later.append((key, delay))


class FakeClient:
    """Lists Calico Nodes; any write fails the test (no deletion is expected here)."""

    def __init__(self, calico_nodes: list[dict[str, Any]]) -> None:
        self.calico_nodes = calico_nodes

    def list(self, kind: str) -> list[dict[str, Any]]:
        assert kind == "Node"
        return self.calico_nodes

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected datastore call: {name}")


def controller(
    calico_nodes: list[dict[str, Any]], k8s_nodes: list[str], pods: list[dict[str, Any]]
) -> tuple[nodes.NodeController, FakeQueue]:
    queue = FakeQueue()
    ctl = nodes.NodeController(
        FakeClient(calico_nodes),  # type: ignore[arg-type]
        FakeStore(k8s_nodes),
        queue,
        list_pods=lambda node: pods,
    )
    return ctl, queue


def test_the_k8s_orchref_names_the_kubernetes_node() -> None:
    assert nodes.k8s_node_name(cnode("c1", "k1", other=True)) == "k1"
    assert nodes.k8s_node_name(cnode("c1", other=True)) is None
    assert nodes.k8s_node_name(cnode("c1")) is None


def test_live_pods_are_the_unfinished_ones_bound_to_the_node() -> None:
    pods = [pod("a", "k1"), pod("b", "k1", "Succeeded"), pod("c", "k2"), pod("d", "k1", "Pending")]
    assert nodes.live_pods(pods, "k1") == ["x/a", "x/d"]


def test_live_pods_postpone_the_cleanup() -> None:
    ctl, queue = controller([cnode("c1", "k1")], [], [pod("a", "k1")])
    out = ctl.reconcile(("Node", "", "k1"))
    assert out is not None
    assert not out.wrote()
    assert queue.later == [(("Node", "", "k1"), nodes.PENDING_RETRY)]


def test_nothing_to_do_for_existing_or_unreferenced_nodes() -> None:
    ctl, queue = controller([cnode("c1", "k1"), cnode("c3")], ["k1"], [])
    for name in ("k1", "k9"):  # k1 exists; no Calico Node refers to k9
        out = ctl.reconcile(("Node", "", name))
        assert out is not None
        assert not out.wrote()
    assert queue.later == []


def test_the_sweep_queues_calico_nodes_whose_kubernetes_node_is_missing() -> None:
    calico = [cnode("c1", "k1"), cnode("c2", "k2"), cnode("c3"), cnode("c4", other=True)]
    ctl, queue = controller(calico, ["k2"], [])
    ctl.reconcile(nodes.SWEEP)
    assert queue.added == [("Node", "", "k1")]


def test_not_synced_means_no_decision() -> None:
    ctl, _ = controller([cnode("c1", "k1")], [], [])
    ctl.nodes.synced = False
    assert ctl.reconcile(("Node", "", "k1")) is None


def test_calico_node_writes_the_k8s_orchref() -> None:
    refs = [{"nodeName": "old", "orchestrator": "k8s"},
            {"nodeName": "vm", "orchestrator": "openstack"}]  # fmt: skip
    spec: dict[str, Any] = {"orchRefs": refs}
    startup._set_k8s_ref(spec, "k1")
    assert spec["orchRefs"] == [
        {"nodeName": "vm", "orchestrator": "openstack"},
        {"nodeName": "k1", "orchestrator": "k8s"},
    ]
    env = {"NODENAME": "c1", "CALICO_K8S_NODE_REF": "k1", "IP": "none"}
    assert startup.settings_from_env(env).k8s_node_ref == "k1"
    assert startup.settings_from_env({"NODENAME": "c1", "IP": "none"}).k8s_node_ref == ""


# ---- the Kubernetes datastore: the Calico Node went with its Kubernetes Node; IPAM is left ----


class KddWorld:
    """The in-memory backend holding what a Kubernetes datastore holds after Node k1 went: the
    Calico Nodes of k2 and k3 (each its own Kubernetes Node), and IPAM host k1's affinities and
    addresses (pods a..d fill one block; a tunnel, a leaked pod address and one of unknown source
    sit in a second block, where a live pod of k2 holds an address too)."""

    def __init__(self) -> None:
        from calico.datastore.client import Client
        from calico.datastore.memory import MemoryBackend
        from calico.ipam.client import IPAMClient

        self.ds = Client(MemoryBackend())
        self.ipam = IPAMClient(self.ds.backend, client=self.ds)
        self.ds.create(res("IPPool", "p", {"cidr": "10.70.0.0/24", "blockSize": 30}))
        for name in ("k2", "k3"):
            self.ds.create(res("Node", name, {"orchRefs": [{"nodeName": name,
                                                            "orchestrator": "k8s"}]}))  # fmt: skip
        self.pods = [self.address("k1", pod=p) for p in ("a", "b", "c", "d", "gone")]
        self.tunnel = self.address("k1", type="vxlanTunnelAddress")
        self.k1_blocks = {str(c) for c in self.ipam.host_blocks("k1")}
        info = self.ipam.ip_info(self.tunnel)
        assert info is not None
        self.shared = str(info["block"])
        free = [str(ip) for ip in ipaddress.ip_network(self.shared)
                if self.ipam.ip_info(str(ip)) is None]  # fmt: skip
        self.borrowed, self.unknown = free[:2]
        self.ipam.assign_ip(self.borrowed, handle_id="k8s-pod-network.live", host="k2",
                            attrs={"node": "k2", "namespace": "x", "pod": "live"})  # fmt: skip
        self.ipam.assign_ip(self.unknown, handle_id="mystery", host="k1", attrs={"node": "k1"})
        self.k3 = self.address("k3", pod="k3pod")
        assert len(self.k1_blocks) == 2, self.k1_blocks

    def address(self, host: str, **attrs: str) -> str:
        if "pod" in attrs:
            attrs["namespace"] = "x"
        handle = f"h-{host}-{attrs.get('pod') or attrs.get('type')}"
        (ip,) = self.ipam.auto_assign(handle_id=handle, host=host, attrs={"node": host, **attrs})
        return str(ip)

    def controller(
        self, pods: list[dict[str, Any]], *, kdd: bool = True
    ) -> tuple[nodes.NodeController, FakeQueue]:
        queue = FakeQueue()
        ctl = nodes.NodeController(
            self.ds, FakeStore(["k2", "k3"]), queue, list_pods=lambda _: pods, kdd=kdd
        )
        return ctl, queue

    def k1_state(self) -> tuple[set[str], list[str]]:
        held = [ip for ip in [*self.pods, self.tunnel] if self.ipam.ip_info(ip) is not None]
        return {str(c) for c in self.ipam.host_blocks("k1")}, held


def res(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def test_kdd_a_deleted_nodes_ipam_host_is_released_once_its_pods_are_gone() -> None:
    world = KddWorld()
    pods = [pod("a", "k1")]
    ctl, queue = world.controller(pods)
    out = ctl.reconcile(("Node", "", "k1"))
    assert out is not None
    assert not out.wrote()
    assert queue.later == [(("Node", "", "k1"), nodes.PENDING_RETRY)]
    assert world.k1_state() == (world.k1_blocks, [*world.pods, world.tunnel])  # untouched
    pods[0]["status"]["phase"] = "Succeeded"  # finished: holds nothing any more
    out = ctl.reconcile(("Node", "", "k1"))
    assert out is not None
    assert out.wrote()
    assert world.k1_state() == (set(), [])  # no affinity, no pod or tunnel address of k1
    blocks = {str(b.cidr): b for b in world.ipam.blocks()}
    assert set(world.k1_blocks) & set(blocks) == {world.shared}  # the empty one is deleted
    kept = blocks[world.shared]
    assert kept.affinity is None
    assert sorted(ip for ip, _ in kept.allocated()) == sorted([world.borrowed, world.unknown])
    assert world.ipam.ip_info(world.k3) is not None
    assert {n["metadata"]["name"] for n in world.ds.list("Node")} == {"k2", "k3"}
    # Done: a second look finds nothing of k1 left (the unknown-source address is not "left").
    again = ctl.reconcile(("Node", "", "k1"))
    assert again is not None
    assert not again.wrote()


def test_etcd_mode_never_touches_a_host_without_a_calico_node() -> None:
    world = KddWorld()
    ctl, queue = world.controller([], kdd=False)
    out = ctl.reconcile(("Node", "", "k1"))
    assert out is not None
    assert not out.wrote()
    assert world.k1_state() == (world.k1_blocks, [*world.pods, world.tunnel])
    ctl.reconcile(nodes.SWEEP)
    assert queue.added == []


def test_kdd_sweep_queues_affinity_hosts_whose_kubernetes_node_is_missing() -> None:
    world = KddWorld()
    ctl, queue = world.controller([])
    ctl.reconcile(nodes.SWEEP)
    assert queue.added == [("Node", "", "k1")]  # k2, k3 exist
    ctl.reconcile(("Node", "", "k1"))
    assert world.k1_state() == (set(), [])
