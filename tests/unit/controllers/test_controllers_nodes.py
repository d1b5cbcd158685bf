"""The node controller's decisions without a datastore: which Calico Node belongs to which
Kubernetes Node, which pods still count, and that a deleted Node with live pods, a Node that still
exists, or a Calico Node of no Kubernetes Node leads to no deletion; calico-node's orchRefs."""

from __future__ import annotations

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
