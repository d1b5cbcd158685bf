"""The lab's network options and addressing: flag checks, defaults, recorded options, MTU,
calico-node's environment, round-robin subnets, the router's ruleset and the state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico_lab import cluster, network, nodes, state, topology, views
from calico_lab.network import Network
from calico_lab.state import LabError


def test_flag_values_are_spelled_canonically_in_any_case() -> None:
    given = network.requested(
        3, subnets=2, ipip="never", vxlan="ALWAYS", nat_outgoing=False, backend="VXLAN"
    )
    assert given == {
        "subnets": 2,
        "ipip": "Never",
        "vxlan": "Always",
        "nat_outgoing": False,
        "backend": "vxlan",
    }
    assert network.requested(3) == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ipip": "sometimes"}, "--ipip 'sometimes': use one of Always, CrossSubnet, Never"),
        ({"vxlan": "on"}, "--vxlan 'on': use one of Always, CrossSubnet, Never"),
        ({"backend": "bgp"}, "--backend 'bgp': use one of bird, vxlan, none"),
        ({"subnets": 0}, "--subnets 0: must be between 1 and the node count (3"),
        ({"subnets": 4}, "--subnets 4: must be between 1 and the node count (3"),
        ({"ipip": "Always", "vxlan": "CrossSubnet"}, "--ipip Always with --vxlan CrossSubnet"),
    ],
)
def test_bad_flag_values_name_the_flag_and_the_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(LabError) as exc:
        network.requested(3, **kwargs)  # type: ignore[arg-type]
    assert message in str(exc.value)


def test_a_new_lab_takes_the_lab_defaults() -> None:
    net = network.resolve({}, None, lab="t")
    assert net == Network(subnets=1, ipip="Never", vxlan="CrossSubnet", nat_outgoing=True)
    assert net.backend == "bird"
    assert net.bgp
    # IPIP asked for: VXLAN's default steps aside (a pool has one encapsulation)
    ipip = network.resolve(network.requested(2, ipip="Always"), None, lab="t")
    assert (ipip.ipip, ipip.vxlan) == ("Always", "Never")
    assert not network.resolve({"backend": "none"}, None, lab="t").bgp


def test_an_existing_lab_keeps_its_options_and_refuses_others() -> None:
    recorded = Network(subnets=2, vxlan="Always", nat_outgoing=False)
    assert network.resolve({}, recorded, lab="t") is recorded
    assert network.resolve({"subnets": 2, "vxlan": "Always"}, recorded, lab="t") is recorded
    with pytest.raises(LabError, match=r"already up with --subnets 2, not 1"):
        network.resolve({"subnets": 1}, recorded, lab="t")
    with pytest.raises(LabError, match=r"already up with --nat-outgoing false, not true"):
        network.resolve({"nat_outgoing": True}, recorded, lab="t")


def test_mtu_and_calico_node_environment() -> None:
    assert Network(vxlan="Never").mtu == 1500
    assert Network(vxlan="CrossSubnet").mtu == 1450
    assert Network(vxlan="Always").mtu == 1450
    assert Network(ipip="CrossSubnet", vxlan="Never").mtu == 1480
    env = Network(ipip="Always", vxlan="Never", nat_outgoing=False, backend="none").node_env()
    assert env == {
        "CALICO_IPV4POOL_IPIP": "Always",
        "CALICO_IPV4POOL_VXLAN": "Never",
        "CALICO_IPV4POOL_NAT_OUTGOING": "false",
        "CALICO_NETWORKING_BACKEND": "none",
    }


def test_nodes_round_robin_over_subnets() -> None:
    assert [network.subnet_of(i, 2) for i in range(1, 6)] == [0, 1, 0, 1, 0]
    assert [network.node_ip(i, 2) for i in (1, 2, 3)] == ["10.99.0.11", "10.99.1.12", "10.99.0.13"]
    assert [network.node_ip(i) for i in (1, 2, 3)] == ["10.99.0.11", "10.99.0.12", "10.99.0.13"]
    assert network.router_ip(1) == "10.99.1.1"
    assert network.subnet_cidr(1) == "10.99.1.0/24"
    assert network.bridge_name(0) == "br0"  # a one-subnet lab has today's single bridge


def test_new_state_places_nodes_and_records_every_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = cluster.new_state("t", 3, Network(subnets=2))
    assert [(n.name, n.ip, n.subnet) for n in lab.nodes] == [
        ("node1", "10.99.0.11", 0),
        ("node2", "10.99.1.12", 1),
        ("node3", "10.99.0.13", 0),
    ]
    assert lab.netns == [
        "calab-t-core",
        "calab-t-outside",
        "calab-t-node1",
        "calab-t-node2",
        "calab-t-node3",
    ]
    env = nodes.node_env(lab, lab.nodes[1])
    assert env["IP"] == "10.99.1.12/24"  # the prefix is the node's subnet for CrossSubnet
    assert env["CALICO_IPV4POOL_VXLAN"] == "CrossSubnet"
    assert env["ETCD_ENDPOINTS"] == "http://10.99.0.1:2379"  # etcd stays on subnet 0
    assert nodes.conflist(lab, lab.nodes[1])["plugins"][0]["mtu"] == 1450


def test_state_file_round_trip_and_older_state_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = cluster.new_state("t", 2, Network(subnets=2, ipip="CrossSubnet", vxlan="Never"))
    lab.save()
    loaded = state.require("t")
    assert loaded.network == lab.network
    assert loaded.nodes[1].subnet == 1
    # A state file written before the network options existed loads as a one-subnet lab.
    data = json.loads((tmp_path / "t" / "state.json").read_text())
    del data["network"], data["outside_pid"]
    for node in data["nodes"]:
        del node["subnet"]
    (tmp_path / "t" / "state.json").write_text(json.dumps(data))
    old = state.require("t")
    assert old.network == Network()
    assert {n.subnet for n in old.nodes} == {0}


def test_router_ruleset_accepts_only_host_subnets_and_outside() -> None:
    text = topology.router_ruleset("t", 2)
    assert "table ip calab-t-router {}\ndelete table ip calab-t-router\n" in text  # replaceable
    assert "elements = { 10.99.0.0/24, 10.99.1.0/24, 203.0.113.0/24 }" in text
    assert "policy drop;" in text
    assert "ip saddr @hosts ip daddr @hosts counter accept" in text


def test_status_text_shows_subnets_tunnels_and_outside() -> None:
    snap = {
        "name": "t",
        "dir": "/x",
        "etcd": {"endpoint": "http://10.99.0.1:2379", "running": True},
        "network": {**Network(subnets=2).__dict__, "mtu": 1450},
        "outside": {
            "ip": "203.0.113.1",
            "netns": "calab-t-outside",
            "exists": True,
            "serving": True,
        },
        "nodes": [
            {
                "name": "node2",
                "ip": "10.99.1.12",
                "subnet": "10.99.1.0/24",
                "running": True,
                "bgp": [],
                "tunnels": {"ipip": "", "vxlan": "192.168.3.0", "vxlan_mac": "66:aa:bb:cc:dd:ee"},
            }
        ],
        "pods": [],
    }
    text = views.status_text(snap)
    assert "network: 2 subnet(s); IPIP Never, VXLAN CrossSubnet, natOutgoing on" in text
    assert "outside: 203.0.113.1 (calab-t-outside) serving TCP/UDP 80" in text
    assert "10.99.1.0/24" in text
    assert "vxlan 192.168.3.0 66:aa:bb:cc:dd:ee" in text


def test_tunnel_addresses_come_from_calicos_node_fields() -> None:
    from calico_lab import status

    node = {
        "spec": {
            "bgp": {"ipv4Address": "10.99.1.12/24", "ipv4IPIPTunnelAddr": "192.168.3.1"},
            "ipv4VXLANTunnelAddr": "192.168.3.0",
            "vxlanTunnelMACAddr": "66:aa:bb:cc:dd:ee",
        }
    }
    assert status.tunnel_addresses(node) == {
        "ipip": "192.168.3.1",
        "vxlan": "192.168.3.0",
        "vxlan_mac": "66:aa:bb:cc:dd:ee",
    }
    assert status.tunnel_addresses({}) == {"ipip": "", "vxlan": "", "vxlan_mac": ""}
