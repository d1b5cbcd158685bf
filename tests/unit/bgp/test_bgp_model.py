"""The BGP model: who peers with whom, with which AS, which blocks and pools are exported."""

from __future__ import annotations

from typing import Any

import pytest

from calico.bgp import model


def node(
    name: str,
    ip: str | None,
    *,
    as_num: int | None = None,
    rr: str = "",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    bgp: dict[str, Any] = {}
    if ip:
        bgp["ipv4Address"] = ip
    if as_num is not None:
        bgp["asNumber"] = as_num
    if rr:
        bgp["routeReflectorClusterID"] = rr
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"bgp": bgp},
    }


def peer(name: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}


NODES = {
    n["metadata"]["name"]: n
    for n in (
        node("a", "10.0.0.1/24"),
        node("b", "10.0.0.2/24", as_num=65002),
        node("c", "10.0.0.3/24"),
        node("noip", None),
    )
}


def names(m: model.BirdModel) -> list[str]:
    return [p.name for p in m.peers]


def test_full_mesh_by_default_skips_self_and_nodes_without_address() -> None:
    m = model.build("a", nodes=NODES)
    assert m.router_id == "10.0.0.1"
    assert m.local_as == 64512
    assert names(m) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]
    assert [p.as_number for p in m.peers] == [65002, 64512]  # b's own AS, c the global default


def test_global_as_and_mesh_off() -> None:
    cfg = {"spec": {"asNumber": 65100, "nodeToNodeMeshEnabled": False}}
    m = model.build("a", nodes=NODES, bgpconfig=cfg)
    assert m.local_as == 65100
    assert m.peers == ()


def test_global_and_node_specific_peers() -> None:
    peers = [
        peer("tor", peerIP="10.0.0.254", asNumber=65000),
        peer("only-c", node="c", peerIP="10.0.0.253", asNumber=65001),
        peer("v6", peerIP="fd00::1", asNumber=65000),
    ]
    cfg = {"spec": {"nodeToNodeMeshEnabled": False}}
    assert names(model.build("a", nodes=NODES, bgppeers=peers, bgpconfig=cfg)) == [
        "Global_10_0_0_254"
    ]
    m = model.build("c", nodes=NODES, bgppeers=peers, bgpconfig=cfg)
    assert names(m) == ["Node_10_0_0_253", "Global_10_0_0_254"]
    assert {p.name: p.as_number for p in m.peers}["Node_10_0_0_253"] == 65001


def test_peer_ip_with_port() -> None:
    m = model.build(
        "a",
        nodes=NODES,
        bgpconfig={"spec": {"nodeToNodeMeshEnabled": False}},
        bgppeers=[peer("p", peerIP="10.0.0.9:1179", asNumber=65000)],
    )
    assert [(p.address, p.port) for p in m.peers] == [("10.0.0.9", 1179)]


def test_one_session_per_address_mesh_first() -> None:
    m = model.build("a", nodes=NODES, bgppeers=[peer("dup", peerIP="10.0.0.2", asNumber=65002)])
    assert names(m) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]


def test_route_reflector_selectors_both_directions() -> None:
    nodes = {
        n["metadata"]["name"]: n
        for n in (
            node("rr", "10.0.0.1/24", rr="224.0.0.1", labels={"route-reflector": "true"}),
            node("c1", "10.0.0.2/24"),
            node("c2", "10.0.0.3/24"),
            node("ext", "10.0.0.4/24", as_num=65009),
        )
    }
    peers = [peer("to-rr", nodeSelector="all()", peerSelector="route-reflector == 'true'")]
    cfg = {"spec": {"nodeToNodeMeshEnabled": False}}
    client = model.build("c1", nodes=nodes, bgppeers=peers, bgpconfig=cfg)
    assert [(p.name, p.rr_client) for p in client.peers] == [("Node_10_0_0_1", False)]
    rr = model.build("rr", nodes=nodes, bgppeers=peers, bgpconfig=cfg)
    assert rr.rr_cluster_id == "224.0.0.1"
    # the reflector peers back with every node the nodeSelector picks; eBGP ones are not clients
    assert [(p.name, p.rr_client) for p in rr.peers] == [
        ("Node_10_0_0_2", True),
        ("Node_10_0_0_3", True),
        ("Node_10_0_0_4", False),
    ]


def test_node_selector_limits_where_a_peer_applies() -> None:
    nodes = {
        n["metadata"]["name"]: n
        for n in (
            node("a", "10.0.0.1/24", labels={"rack": "1"}),
            node("b", "10.0.0.2/24"),
        )
    }
    peers = [peer("rack1-tor", nodeSelector="rack == '1'", peerIP="10.0.0.254", asNumber=65000)]
    cfg = {"spec": {"nodeToNodeMeshEnabled": False}}
    assert names(model.build("a", nodes=nodes, bgppeers=peers, bgpconfig=cfg)) == [
        "Node_10_0_0_254"
    ]
    assert model.build("b", nodes=nodes, bgppeers=peers, bgpconfig=cfg).peers == ()


def test_blocks_pools_and_affinity_states() -> None:
    pools: list[dict[str, Any]] = [
        {"spec": {"cidr": "192.168.0.0/16"}},
        {"spec": {"cidr": "fd00::/48"}},
        {"spec": {"cidr": "10.10.0.0/16", "disableBGPExport": True}},
    ]
    affinities = {
        "192.168.0.64/26": {"state": "confirmed", "deleted": False},
        "192.168.0.0/26": {"state": "confirmed"},
        "192.168.1.0/26": {"state": "pending"},
        "192.168.2.0/26": {"state": "confirmed", "deleted": True},
    }
    m = model.build("a", nodes=NODES, pools=pools, affinities=affinities)
    assert m.pools == ("192.168.0.0/16",)
    assert m.blocks == ("192.168.0.0/26", "192.168.0.64/26")


def test_missing_node_or_address_is_a_model_error() -> None:
    with pytest.raises(model.ModelError, match="does not exist"):
        model.build("zzz", nodes=NODES)
    with pytest.raises(model.ModelError, match="ipv4Address"):
        model.build("noip", nodes=NODES)


def test_bad_selector_names_it() -> None:
    with pytest.raises(model.ModelError, match="BGPPeer selector"):
        model.build(
            "a", nodes=NODES, bgppeers=[peer("x", nodeSelector="((", peerIP="10.0.0.9", asNumber=1)]
        )


def test_listen_port_applies_to_calico_nodes_not_external_peers() -> None:
    cfg = {"spec": {"listenPort": 1790}}
    m = model.build(
        "a", nodes=NODES, bgpconfig=cfg, bgppeers=[peer("tor", peerIP="10.0.0.254", asNumber=65000)]
    )
    assert m.listen_port == 1790
    assert [(p.name, p.port) for p in m.peers] == [
        ("Mesh_10_0_0_2", 1790),
        ("Mesh_10_0_0_3", 1790),
        ("Global_10_0_0_254", None),
    ]


def test_ipv6_sessions_pools_and_blocks_when_the_node_has_an_ipv6_address() -> None:
    nodes = {
        n["metadata"]["name"]: n
        for n in (
            node("a", "10.0.0.1/24"),
            node("b", "10.0.0.2/24"),
            node("c", "10.0.0.3/24"),
        )
    }
    nodes["a"]["spec"]["bgp"]["ipv6Address"] = "fd00::1/64"
    nodes["b"]["spec"]["bgp"]["ipv6Address"] = "fd00::2/64"
    pools = [{"spec": {"cidr": "192.168.0.0/16"}}, {"spec": {"cidr": "fd80:24e2::/64"}}]
    aff = {"192.168.0.0/26": {"state": "confirmed"}, "fd80:24e2::/122": {"state": "confirmed"}}
    peers = [peer("tor6", peerIP="fd00::fe", asNumber=65000)]
    m = model.build("a", nodes=nodes, pools=pools, affinities=aff, bgppeers=peers)
    assert names(m) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]
    assert [p.name for p in m.peers6] == ["Mesh_fd00__2", "Global_fd00__fe"]
    assert (m.pools, m.pools6) == (("192.168.0.0/16",), ("fd80:24e2::/64",))
    assert (m.blocks, m.blocks6) == (("192.168.0.0/26",), ("fd80:24e2::/122",))
    # a node without an IPv6 address renders no IPv6 at all
    m3 = model.build("c", nodes=nodes, pools=pools, affinities=aff, bgppeers=peers)
    assert (m3.ipv6_address, m3.peers6, m3.pools6, m3.blocks6) == ("", (), (), ())
