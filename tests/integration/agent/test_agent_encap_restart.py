"""Restart with tunnel objects: kill the agent, change the datastore (a node leaves; later VXLAN
is switched off), leave orphans in the kernel, start it again: what no longer belongs (routes on
vxlan.calico, ARP and FDB entries, the device itself) is swept; the rest stays and works."""

from __future__ import annotations

import pytest

from tests.integration.agent.encap_cluster import Cluster, expect_matrix, ipx, nsx, probe, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_restart_sweeps_orphaned_routes_neighbours_fdb_and_device(cluster: Cluster) -> None:
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always")
    n1, n2, n3 = (
        cluster.add_node(n, s, i) for n, s, i in (("node1", 1, 1), ("node2", 2, 2), ("node3", 1, 3))
    )
    p1, p2, p3 = (cluster.add_pod(n, f"pod{n.index}") for n in (n1, n2, n3))
    for node in (n1, n2, n3):
        cluster.start(node)
    for node in (n1, n2, n3):
        cluster.wait_ready(node)
    expect_matrix([(p1, p2, "tcp", 80, True), (p1, p3, "tcp", 80, True)], n1, n2, n3)
    assert n3.mac in n1.fdb()

    cluster.kill(n1)
    # While node1's agent is down: node3 leaves the cluster, and someone leaves orphans that look
    # like ours on vxlan.calico.
    cluster.delete("Node", "node3")
    cluster.delete_block(n3.block)
    ipx(n1.ns, "route add 10.65.9.0/26 via 10.65.9.1 dev vxlan.calico proto 80 onlink")
    ipx(n1.ns, "neigh add 10.65.9.1 lladdr 66:ca:00:00:00:09 dev vxlan.calico nud permanent")
    nsx(
        n1.ns,
        "bridge",
        "fdb",
        "add",
        "66:ca:00:00:00:09",
        "dev",
        "vxlan.calico",
        "dst",
        "10.99.9.9",
        "self",
        "permanent",
    )
    assert probe(p1, p2, "tcp", 80), "the kernel state must keep working while the agent is down"

    cluster.start(n1)
    cluster.wait_ready(n1)

    def swept() -> bool:
        routes, neigh, fdb = n1.routes(), n1.neigh(), n1.fdb()
        gone = n3.block not in routes and "10.65.9.0" not in routes
        gone = gone and n3.vxlan_addr not in neigh and "10.65.9.1" not in neigh
        return gone and n3.mac not in fdb and "66:ca:00:00:00:09" not in fdb

    wait_for("orphans swept", swept, 15, n1)
    assert f"{n2.block} via {n2.vxlan_addr} dev vxlan.calico" in n1.routes()
    assert f"{n2.vxlan_addr} lladdr {n2.mac} PERMANENT" in n1.neigh()
    assert f"{n2.mac} dst {n2.addr} self permanent" in n1.fdb()
    expect_matrix([(p1, p2, "tcp", 80, True), (p2, p1, "udp", 53, True)], n1, n2)

    cluster.kill(n1)
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Never")  # no pool uses VXLAN any more
    assert n1.link("vxlan.calico") is not None
    cluster.start(n1)
    cluster.wait_ready(n1)
    wait_for("vxlan.calico deleted", lambda: n1.link("vxlan.calico") is None, 15, n1)
    assert "vxlan.calico" not in n1.routes()
    assert f"{p1.ip} dev {p1.iface}" in n1.routes()  # the workload's own route stays
