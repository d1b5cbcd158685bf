"""IPIP. End to end where the kernel has the ``ipip`` device type (skipped here, with the reason
printed); on a kernel without it, the real failure is reported - in the agent's log, its
readiness and felix-status.json, naming the pool and the missing module - while every other pool
and policy keeps working."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.integration.agent.encap_cluster import Cluster, expect_matrix, nsx, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.etcd]
NO_IPIP = "kernel has no ipip device type"


def kernel_has_ipip(make_netns: Callable[[], str]) -> bool:
    """Try to make the kernel's ipip device in a namespace of our own."""
    ns = make_netns()
    proc = subprocess.run(
        ["ip", "-n", ns, "link", "add", "name", "tunl0", "type", "ipip"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0 or "File exists" in proc.stderr:
        return True
    assert "Unknown device type" in proc.stderr, proc.stderr
    return False


@pytest.fixture
def ipip_kernel(make_netns: Callable[[], str]) -> None:
    if not kernel_has_ipip(make_netns):
        pytest.skip(NO_IPIP)


def start_three(cluster: Cluster, **pool: str) -> None:
    cluster.pool("pool1", "10.65.0.0/16", **pool)
    for name, subnet, index in (("node1", 1, 1), ("node2", 2, 2), ("node3", 1, 3)):
        node = cluster.add_node(name, subnet, index)
        cluster.add_pod(node, f"pod{index}")
        cluster.start(node)
    for node in cluster.nodes.values():
        cluster.wait_ready(node)


@pytest.mark.usefixtures("ipip_kernel")
def test_ipip_always_carries_tcp_and_udp(cluster: Cluster) -> None:
    start_three(cluster, ipipMode="Always")
    n1, n2, n3 = (cluster.nodes[n] for n in ("node1", "node2", "node3"))
    pods = [n.pods[0] for n in (n1, n2, n3)]
    expect_matrix(
        [
            (s, d, pr, pt, True)
            for s in pods
            for d in pods
            if s is not d
            for pr, pt in (("tcp", 80), ("udp", 53))
        ],
        n1,
        n2,
        n3,
    )
    assert f"{n2.block} via {n2.addr} dev tunl0" in n1.routes()
    tunl0 = n1.link("tunl0")
    assert tunl0 is not None
    assert tunl0["mtu"] == 1480
    assert n1.ipip_addr in nsx(n1.ns, "ip", "-4", "addr", "show", "dev", "tunl0")


@pytest.mark.usefixtures("ipip_kernel")
def test_ipip_cross_subnet_and_live_switch_to_never(cluster: Cluster) -> None:
    start_three(cluster, ipipMode="CrossSubnet")
    n1, n2, n3 = (cluster.nodes[n] for n in ("node1", "node2", "node3"))
    assert f"{n2.block} via {n2.addr} dev tunl0" in wait_for("IPIP route", n1.routes, 15, n1)
    assert n3.block not in n1.routes()
    expect_matrix([(n1.pods[0], n2.pods[0], "tcp", 80, True)], n1, n2)
    cluster.pool("pool1", "10.65.0.0/16", ipipMode="Never")
    wait_for("IPIP routes gone", lambda: "tunl0" not in n1.routes(), 15, n1)
    expect_matrix([(n1.pods[0], n2.pods[0], "tcp", 80, False)], n1, n2)


def test_missing_ipip_module_is_reported_and_other_pools_keep_working(
    cluster: Cluster, make_netns: Callable[[], str]
) -> None:
    if kernel_has_ipip(make_netns):
        pytest.skip("this kernel has ipip: the missing-module report cannot happen here")
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always")
    cluster.pool("ipip-pool", "10.70.0.0/16", ipipMode="Always")
    n1, n2 = cluster.add_node("node1", 1, 1), cluster.add_node("node2", 2, 2)
    cluster.write_block("10.70.2.0/26", "node2")
    p1, p2 = cluster.add_pod(n1, "pod1"), cluster.add_pod(n2, "pod2")
    for node in (n1, n2):
        cluster.start(node)

    problems = wait_for("a reported problem", lambda: n1.status().get("problems"), 20, n1)
    assert len(problems) == 1
    assert "ipip-pool" in problems[0]
    assert "the kernel has no 'ipip' module" in problems[0]
    assert "Unknown device type" in problems[0]  # the kernel's own words
    status = n1.status()
    assert status["in_sync"] is True
    assert status["ready"] is False
    assert status["applies"] >= 1
    code, detail = n1.readiness()
    assert code == 503
    assert detail["problems"] == problems
    assert "problem: IPIP pool(s) ipip-pool" in n1.log_tail()
    assert n1.proc is not None
    assert n1.proc.poll() is None  # not a crash
    # Everything else keeps being programmed: the VXLAN pool and policy.
    assert "10.70.2.0/26" not in n1.routes()
    expect_matrix([(p1, p2, "tcp", 80, True), (p2, p1, "udp", 53, True)], n1, n2)
    cluster.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all-pod2", "namespace": "default"},
            "spec": {"selector": "app == 'pod2'", "ingress": [{"action": "Deny"}]},
        }
    )
    expect_matrix([(p1, p2, "tcp", 80, False), (p2, p1, "tcp", 80, True)], n1, n2)

    # The pool goes: the problem is solved, the node becomes ready.
    cluster.delete("IPPool", "ipip-pool")
    wait_for("ready again", lambda: n1.readiness()[0] == 200, 15, n1)
    assert n1.status()["problems"] == []
    assert n1.status()["ready"] is True
    assert "problem solved" in n1.log_tail()
