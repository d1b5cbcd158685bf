"""VXLAN across subnets with real agents: two node subnets joined by a router that has no pod
routes, so pod traffic between subnets only works encapsulated."""

from __future__ import annotations

import time

import pytest

from tests.integration.agent.encap_cluster import (
    Cluster,
    expect_matrix,
    ipx,
    nsx,
    probe,
    wait_for,
)

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def three_nodes(cluster: Cluster, **pool: str) -> None:
    cluster.pool("pool1", "10.65.0.0/16", **pool)
    for name, subnet, index in (("node1", 1, 1), ("node2", 2, 2), ("node3", 1, 3)):
        cluster.add_node(name, subnet, index)
    for node in cluster.nodes.values():
        cluster.add_pod(node, f"pod{node.index}")
        cluster.start(node)
    for node in cluster.nodes.values():
        cluster.wait_ready(node)


def test_vxlan_always_carries_tcp_and_udp_between_every_pod(cluster: Cluster) -> None:
    three_nodes(cluster, vxlanMode="Always")
    n1, n2, n3 = (cluster.nodes[n] for n in ("node1", "node2", "node3"))
    pods = [p for n in (n1, n2, n3) for p in n.pods]
    expect_matrix(
        [
            (s, d, proto, port, True)
            for s in pods
            for d in pods
            if s is not d
            for proto, port in (("tcp", 80), ("udp", 53))
        ],
        n1,
        n2,
        n3,
    )
    dev = n1.link("vxlan.calico")
    assert dev is not None
    info = dev["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["local"], info["learning"]) == (
        4096,
        4789,
        n1.addr,
        False,
    )
    assert dev["address"] == n1.mac
    assert dev["mtu"] == 1450  # the parent's 1500 - 50
    routes = n1.routes()
    assert f"{n2.block} via {n2.vxlan_addr} dev vxlan.calico" in routes
    assert f"{n3.block} via {n3.vxlan_addr} dev vxlan.calico" in routes  # Always: same subnet too
    assert f"{n2.vxlan_addr} lladdr {n2.mac} PERMANENT" in n1.neigh()
    assert f"{n2.mac} dst {n2.addr} self permanent" in n1.fdb()
    for node in (n1, n2, n3):
        assert node.status()["problems"] == []


def test_cross_subnet_encapsulates_only_across_subnets(cluster: Cluster) -> None:
    three_nodes(cluster, vxlanMode="CrossSubnet")
    n1, n2, n3 = (cluster.nodes[n] for n in ("node1", "node2", "node3"))
    # Same-subnet routes are BIRD's in CrossSubnet: put them where BIRD would (proto bird).
    ipx(n1.ns, f"route add {n3.block} via {n3.addr} dev eth0 proto bird")
    ipx(n3.ns, f"route add {n1.block} via {n1.addr} dev eth0 proto bird")
    p1, p2, p3 = n1.pods[0], n2.pods[0], n3.pods[0]
    expect_matrix(
        [
            (a, b, proto, 80 if proto == "tcp" else 53, True)
            for a, b in ((p1, p2), (p2, p1), (p1, p3), (p3, p1), (p2, p3), (p3, p2))
            for proto in ("tcp", "udp")
        ],
        n1,
        n2,
        n3,
    )
    assert n2.block in n1.routes()
    assert n3.block not in n1.routes()  # same subnet: not the agent's route
    before = n1.tx_packets()
    for _ in range(5):
        assert probe(p1, p3, "tcp", 80)
        assert probe(p1, p3, "udp", 53)
    assert n1.tx_packets() == before, "same-subnet traffic went through vxlan.calico"
    for _ in range(5):
        assert probe(p1, p2, "tcp", 80)
    assert n1.tx_packets() >= before + 5, "cross-subnet traffic did not use vxlan.calico"
    # BIRD's route is not the agent's: a resync (every 5 s here) leaves it alone.
    time.sleep(5.5)
    n1_routes = nsx(n1.ns, "ip", "route", "show", "proto", "bird")
    assert f"{n3.block} via {n3.addr} dev eth0" in n1_routes


def test_policy_still_denies_over_the_tunnel(cluster: Cluster) -> None:
    three_nodes(cluster, vxlanMode="Always")
    n1, n2 = cluster.nodes["node1"], cluster.nodes["node2"]
    p1, p2 = n1.pods[0], n2.pods[0]
    expect_matrix([(p1, p2, "tcp", 80, True), (p1, p2, "udp", 53, True)], n1, n2)
    cluster.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-pod1", "namespace": "default"},
            "spec": {
                "selector": f"app == '{p2.name}'",
                "ingress": [
                    {"action": "Deny", "source": {"selector": f"app == '{p1.name}'"}},
                    {"action": "Allow"},
                ],
            },
        }
    )
    expect_matrix(
        [
            (p1, p2, "tcp", 80, False),
            (p1, p2, "udp", 53, False),
            (p2, p1, "tcp", 80, True),
            (n1.pods[0], cluster.nodes["node3"].pods[0], "tcp", 80, True),
        ],
        n1,
        n2,
    )


def test_live_mode_switch_always_never_always(cluster: Cluster) -> None:
    three_nodes(cluster, vxlanMode="Always")
    n1, n2 = cluster.nodes["node1"], cluster.nodes["node2"]
    p1, p2 = n1.pods[0], n2.pods[0]
    pids = {n.name: n.proc.pid for n in cluster.nodes.values() if n.proc}
    expect_matrix([(p1, p2, "tcp", 80, True), (p2, p1, "udp", 53, True)], n1, n2)
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Never")
    wait_for("vxlan.calico gone", lambda: n1.link("vxlan.calico") is None, 15, n1)
    assert "vxlan.calico" not in n1.routes()
    expect_matrix([(p1, p2, "tcp", 80, False), (p2, p1, "udp", 53, False)], n1, n2)
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always")
    expect_matrix([(p1, p2, "tcp", 80, True), (p2, p1, "udp", 53, True)], n1, n2)
    assert f"{n2.mac} dst {n2.addr} self permanent" in n1.fdb()
    assert {n.name: n.proc.pid for n in cluster.nodes.values() if n.proc} == pids  # no restart
