"""natOutgoing with real agents: a pod reaching the ``outside`` host (which has no route to any
pod CIDR) is seen with its node's address; pod-to-pod and pod-to-node traffic keeps the pod's
address; with natOutgoing off there is no answer; NATOutgoingAddress picks the address."""

from __future__ import annotations

import pytest

from tests.integration.agent.encap_cluster import OUTSIDE_IP, Cluster, ipx, nsx, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_nat_outgoing_masquerades_only_traffic_leaving_the_pools(cluster: Cluster) -> None:
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always", natOutgoing=True)
    n1, n2 = cluster.add_node("node1", 1, 1), cluster.add_node("node2", 2, 2)
    p1, p2 = cluster.add_pod(n1, "pod1"), cluster.add_pod(n2, "pod2")
    for node in (n1, n2):
        cluster.start(node)
    for node in (n1, n2):
        cluster.wait_ready(node)
    cluster.serve_outside()
    cluster.serve_whoami(p2.ns, p2.ip, 8081)
    cluster.serve_whoami(n2.ns, n2.addr, 8082)
    wait_for("outside answers pod1", lambda: cluster.ask(p1) == n1.addr, 15, n1)
    assert cluster.ask(p2) == n2.addr
    assert cluster.ask(p1, p2.ip, 8081) == p1.ip  # to another pool address: not NATed
    assert cluster.ask(p1, n2.addr, 8082) == p1.ip  # to a cluster node: not NATed
    table = nsx(n1.ns, "nft", "list", "table", "inet", "calico")
    assert "10.65.0.0/16" in table.split("cali40-masq-pools")[1].split("}")[0]

    # Off, live: the outside host still gets the SYN but cannot answer a pod address.
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always", natOutgoing=False)
    wait_for("no answer with natOutgoing off", lambda: cluster.ask(p1) is None, 15, n1)
    assert cluster.ask(p1, p2.ip, 8081) == p1.ip
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always", natOutgoing=True)
    wait_for("answer again", lambda: cluster.ask(p1) == n1.addr, 15, n1)


def test_disabled_pool_is_still_a_pool_destination_and_still_routed(cluster: Cluster) -> None:
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always", natOutgoing=True)
    cluster.pool("old", "10.70.0.0/16", vxlanMode="Always", disabled=True)
    n1, n2 = cluster.add_node("node1", 1, 1), cluster.add_node("node2", 2, 2)
    cluster.write_block("10.70.2.0/26", "node2")
    p1 = cluster.add_pod(n1, "pod1")
    old = cluster.add_pod(n2, "old", ip="10.70.2.10")
    for node in (n1, n2):
        cluster.start(node)
    for node in (n1, n2):
        cluster.wait_ready(node)
    cluster.serve_whoami(old.ns, old.ip, 8081)
    wait_for("pod1 -> the disabled pool's pod", lambda: cluster.ask(p1, old.ip, 8081), 15, n1)
    assert cluster.ask(p1, old.ip, 8081) == p1.ip  # a pool destination: not NATed
    assert "10.70.2.0/26 via 10.65.2.1 dev vxlan.calico" in n1.routes()


def test_nat_outgoing_address_from_felix_configuration(cluster: Cluster) -> None:
    cluster.pool("pool1", "10.65.0.0/16", vxlanMode="Always", natOutgoing=True)
    n1 = cluster.add_node("node1", 1, 1)
    ipx(n1.ns, "addr add 10.99.1.99/24 dev eth0")  # a second address of node1's
    p1 = cluster.add_pod(n1, "pod1")
    cluster.start(n1)
    cluster.wait_ready(n1)
    cluster.serve_outside()
    wait_for("masqueraded", lambda: cluster.ask(p1) == n1.addr, 15, n1)
    cluster.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {"natOutgoingAddress": "10.99.1.99"},
        }
    )
    wait_for("SNAT to natOutgoingAddress", lambda: cluster.ask(p1) == "10.99.1.99", 15, n1)
    assert OUTSIDE_IP not in nsx(n1.ns, "ip", "route", "show", "proto", "80")
