"""The lab's Node registration (``up --kubeconfig``) against the fake API server: Nodes with
addresses and a Ready condition, Leases renewed, foreign Nodes refused, only the lab's own
removed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_lab import kubenode
from calico_lab.state import LabError
from tests.fakekube import ApiError, FakeKube


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKube, str]]:
    with FakeKube() as fake:
        fake.create(
            "namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-node-lease"}},
        )
        yield fake, str(fake.write_kubeconfig(tmp_path / "kubeconfig"))


NODES = [("node1", "10.99.0.11"), ("node2", "10.99.0.12")]


def test_registers_nodes_with_addresses_ready_and_leases(kube: tuple[FakeKube, str]) -> None:
    fake, conf = kube
    agent = kubenode.NodeAgent(conf, "lab1", NODES, interval=0.1, status_every=0.3)
    agent.register()
    for name, ip in NODES:
        node = fake.get("nodes", name)
        assert node["metadata"]["labels"][kubenode.LAB_LABEL] == "lab1"
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        status = node["status"]
        assert {"type": "InternalIP", "address": ip} in status["addresses"]
        (ready,) = status["conditions"]
        assert (ready["type"], ready["status"], ready["reason"]) == (
            "Ready",
            "True",
            "KubeletReady",
        )
        lease = fake.get("leases", name, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name
        assert lease["spec"]["leaseDurationSeconds"] == 40
        owner = lease["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Node",
            name,
            node["metadata"]["uid"],
        )
    first = fake.get("leases", "node1", "kube-node-lease")["spec"]["renewTime"]
    beat = fake.get("nodes", "node1")["status"]["conditions"][0]["lastHeartbeatTime"]
    agent.start()
    try:
        deadline = time.monotonic() + 5
        while fake.get("leases", "node1", "kube-node-lease")["spec"]["renewTime"] == first:
            assert time.monotonic() < deadline, "the Lease was not renewed"
            time.sleep(0.05)
        # Status heartbeats too (every status_every); the transition time stays.
        deadline = time.monotonic() + 5
        while True:
            ready = fake.get("nodes", "node1")["status"]["conditions"][0]
            if ready["lastHeartbeatTime"] != beat or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Seconds resolution: equal within the first second, so only the transition is checked.
        assert ready["lastTransitionTime"] <= ready["lastHeartbeatTime"]
        # A Node deleted while the lab runs is not registered again (as a kubelet behaves).
        fake.delete("nodes", "node2")
        deadline = time.monotonic() + 5
        while "node2" in agent.uids:  # noticed at its next status heartbeat
            assert time.monotonic() < deadline, "the deleted Node was not noticed"
            time.sleep(0.05)
        time.sleep(0.5)  # further heartbeats
        with pytest.raises(ApiError):
            fake.get("nodes", "node2")
    finally:
        agent.stop()


def test_a_foreign_node_of_the_same_name_is_an_error(kube: tuple[FakeKube, str]) -> None:
    fake, conf = kube
    fake.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node2"}})
    agent = kubenode.NodeAgent(conf, "lab1", NODES)
    with pytest.raises(LabError, match=r"Node node2 already exists .* other than a calico-lab"):
        agent.register()
    assert "calico-lab" not in str(fake.get("nodes", "node2").get("metadata", {}).get("labels"))


def test_down_removes_only_this_labs_nodes_and_leases(kube: tuple[FakeKube, str]) -> None:
    fake, conf = kube
    kubenode.NodeAgent(conf, "lab1", NODES[:1]).register()
    kubenode.NodeAgent(conf, "other", NODES[1:]).register()
    steps: list[str] = []
    kubenode.unregister(conf, "lab1", ["node1", "node2", "node3"], steps.append)
    assert [n["metadata"]["name"] for n in fake.list("nodes")] == ["node2"]
    assert [ls["metadata"]["name"] for ls in fake.list("leases")] == ["node2"]
    assert "leaving Node node2: not registered by this lab" in steps


def test_without_kube_node_lease_heartbeats_are_node_status(tmp_path: Path) -> None:
    with FakeKube() as fake:
        conf = str(fake.write_kubeconfig(tmp_path / "kubeconfig"))
        agent = kubenode.NodeAgent(conf, "lab1", NODES[:1])
        agent.register()
        assert not agent.leases
        assert fake.list("leases") == []
        assert fake.get("nodes", "node1")["status"]["conditions"][0]["status"] == "True"
