"""IPPools, Nodes and IPAM blocks in -> pools, hosts, VTEPs and encapsulated routes out (state
sequences; every step is also checked against a full recompute and the ordering contract)."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc import route_resolver
from calico.calc.graph import CalcGraph
from calico.calc.network_validation import Net
from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState
from tests.unit.calc import states
from tests.unit.calc.test_calc_resync_oracle import wep

Step = tuple[dict[str, Any], bool]  # (object, delete it)


def pool(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


def node(
    name: str,
    addr: str | None,
    *,
    vxlan: str | None = None,
    mac: str | None = None,
    ipip: str | None = None,
) -> dict[str, Any]:
    bgp: dict[str, Any] = {"ipv4Address": addr} if addr else {}
    if ipip:
        bgp["ipv4IPIPTunnelAddr"] = ipip
    spec: dict[str, Any] = {"bgp": bgp}
    if vxlan:
        spec["ipv4VXLANTunnelAddr"] = vxlan
    if mac:
        spec["vxlanTunnelMACAddr"] = mac
    return {"kind": "Node", "metadata": {"name": name}, "spec": spec}


def block(cidr: str, host: str | None) -> dict[str, Any]:
    return {"kind": "IPAMBlock", "cidr": cidr, "affinity": f"host:{host}" if host else None}


# node1 (me) and node2 share 10.99.1.0/24; node3 is on 10.99.2.0/24.
ME = node("node1", "10.99.1.11/24", vxlan="10.65.0.1", mac="66:ca:00:00:00:01", ipip="10.65.0.2")
SAME = node("node2", "10.99.1.12/24", vxlan="10.65.1.1", mac="66:ca:00:00:00:02")
OTHER = node("node3", "10.99.2.13/24", vxlan="10.65.2.1", mac="66:ca:00:00:00:03")
BLOCKS = [block("10.65.0.0/26", "node1"), block("10.65.1.0/26", "node2")]
BLOCKS += [block("10.65.2.0/26", "node3")]


class Run:
    """One long-lived graph; after every batch: output == full recompute, contract holds."""

    def __init__(self, hostname: str = "node1") -> None:
        self.graph = CalcGraph(hostname)
        self.graph.on_in_sync()
        self.state = DataplaneState()
        self.snapshot: dict[str, dict[str, Any]] = {}
        self.hostname = hostname

    def __call__(self, *steps: dict[str, Any] | Step) -> list[m.Message]:
        for step in steps:
            obj, delete = step if isinstance(step, tuple) else (step, False)
            key = states.key_of(obj)
            if delete:
                self.snapshot.pop(key, None)
            else:
                self.snapshot[key] = obj
            self.graph.on_update(key, None if delete else obj)
        out = self.graph.flush()
        self.state.apply_all(out)
        assert self.state == states.full_state(self.snapshot, self.hostname)
        assert self.graph.full_recompute_differences() == []
        return out

    def routes(self) -> dict[str, tuple[str, str, str, str]]:
        return {d: (r.dst_node, r.gateway, r.device, r.type) for d, r in self.state.routes.items()}


def test_vxlan_always_routes_every_remote_block_via_its_vtep() -> None:
    run = Run()
    out = run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, SAME, OTHER, *BLOCKS)
    assert run.routes() == {
        "10.65.1.0/26": ("node2", "10.65.1.1", m.VXLAN_DEVICE, m.ROUTE_REMOTE_BLOCK),
        "10.65.2.0/26": ("node3", "10.65.2.1", m.VXLAN_DEVICE, m.ROUTE_REMOTE_BLOCK),
    }
    assert set(run.state.vteps) == {"node1", "node2", "node3"}
    assert run.state.vteps["node3"].parent_device_ip == "10.99.2.13"
    assert run.state.hosts["node1"].ipv4_addr == "10.99.1.11/24"
    assert run.state.pools["p"] == m.IPPool("10.65.0.0/16", vxlan_mode="Always")
    kinds = [type(x).__name__ for x in out]
    assert kinds.index("IPAMPoolUpdate") < kinds.index("VXLANTunnelEndpointUpdate")
    assert kinds.index("VXLANTunnelEndpointUpdate") < kinds.index("RouteUpdate")


def test_cross_subnet_encapsulates_only_across_subnets_and_follows_my_subnet() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", vxlanMode="CrossSubnet"), ME, SAME, OTHER, *BLOCKS)
    assert set(run.routes()) == {"10.65.2.0/26"}
    # I move to node3's subnet: now node2 is across, node3 is not.
    run(node("node1", "10.99.2.11/24", vxlan="10.65.0.1", mac="66:ca:00:00:00:01"))
    assert set(run.routes()) == {"10.65.1.0/26"}
    # A /16 subnet holds them all: nothing is encapsulated.
    run(node("node1", "10.99.1.11/16", vxlan="10.65.0.1", mac="66:ca:00:00:00:01"))
    assert run.routes() == {}


def test_ipip_routes_go_via_the_node_address_on_tunl0() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", ipipMode="Always"), ME, SAME, OTHER, *BLOCKS)
    assert run.routes()["10.65.2.0/26"] == (
        "node3",
        "10.99.2.13",
        m.IPIP_DEVICE,
        m.ROUTE_REMOTE_BLOCK,
    )
    assert run.state.hosts["node1"].ipip_tunnel_addr == "10.65.0.2"


def test_node_lacking_vxlan_fields_gets_no_route_and_the_reason_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = Run()
    caplog.set_level(logging.INFO, logger="calico.calc.route_resolver")
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, *BLOCKS)
    no_mac = node("node3", "10.99.2.13/24", vxlan="10.65.2.1")
    run(no_mac)
    assert "10.65.2.0/26" not in run.routes()
    assert "node3" not in run.state.vteps
    assert "Node node3 has no spec.vxlanTunnelMACAddr" in caplog.text
    assert run.graph.routes.problems() == {
        ("node2", "p"): "no Node node2 with spec.bgp.ipv4Address",  # a block, no Node
        ("node3", "p"): "Node node3 has no spec.vxlanTunnelMACAddr",
    }
    run(OTHER, SAME)  # the MAC arrives, and node2's Node
    assert "10.65.2.0/26" in run.routes()
    assert "resolved" in caplog.text
    assert run.graph.routes.problems() == {}


def test_borrowed_addresses_get_host_routes_to_the_workload_node() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, SAME, OTHER, *BLOCKS)
    borrowed = wep(0, "a", "default", "node2", 1, False)  # 10.0.0.1: outside every pool
    borrowed["spec"]["ipNetworks"] = ["10.65.2.7/32"]  # in node3's block, on node2
    own = wep(1, "a", "default", "node2", 1, False)
    own["spec"]["ipNetworks"] = ["10.65.1.7/32"]  # in node2's own block: the block covers it
    unblocked = wep(2, "a", "default", "node3", 1, False)
    unblocked["spec"]["ipNetworks"] = ["10.65.9.9/32"]  # in no block at all
    mine = wep(3, "a", "default", "node1", 1, False)
    mine["spec"]["ipNetworks"] = ["10.65.2.8/32"]  # borrowed by me: routed on its cali veth
    run(borrowed, own, unblocked, mine)
    routes = run.routes()
    assert routes["10.65.2.7/32"] == ("node2", "10.65.1.1", m.VXLAN_DEVICE, m.ROUTE_REMOTE_WORKLOAD)
    assert routes["10.65.9.9/32"][0] == "node3"
    assert "10.65.1.7/32" not in routes
    assert "10.65.2.8/32" not in routes
    # The block moves to node2: the address is no longer borrowed.
    run(block("10.65.2.0/26", "node2"))
    assert "10.65.2.7/32" not in run.routes()
    assert run.routes()["10.65.2.0/26"][0] == "node2"
    run((borrowed, True))
    assert "10.65.2.7/32" not in run.routes()


def test_live_mode_switch_and_pool_removal() -> None:
    run = Run()
    p_always = pool("p", "10.65.0.0/16", vxlanMode="Always")
    run(p_always, ME, SAME, OTHER, *BLOCKS)
    assert len(run.routes()) == 2
    out = run(pool("p", "10.65.0.0/16"))
    assert run.routes() == {}
    assert sum(isinstance(x, m.RouteRemove) for x in out) == 2
    run(p_always)
    assert len(run.routes()) == 2
    run(pool("p", "10.65.0.0/16", ipipMode="Always"))
    assert {r[2] for r in run.routes().values()} == {m.IPIP_DEVICE}
    out = run((p_always, True))
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["RouteRemove", "RouteRemove", "IPAMPoolRemove"]


def test_node_removed_takes_its_routes_then_its_vtep_and_host() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, SAME, OTHER, *BLOCKS)
    out = run((OTHER, True))
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["RouteRemove", "VXLANTunnelEndpointRemove", "HostMetadataRemove"]


def test_invalid_pool_and_block_are_absent_and_named() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, OTHER, *BLOCKS)
    bad = pool("p", "10.65.0.0/16", vxlanMode="Always", ipipMode="Always")
    run(bad)
    assert run.state.pools == {}
    assert run.routes() == {}
    assert "spec.vxlanMode" in run.graph.invalid[states.key_of(bad)]
    bad_block = {"kind": "IPAMBlock", "cidr": "10.65.2.0/26", "affinity": 7}
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), bad_block)
    assert run.routes() == {}
    assert "affinity" in run.graph.invalid[states.key_of(bad_block)]


def test_ipv6_pools_are_passed_through_but_not_encapsulated() -> None:
    run = Run()
    six = node("node3", "10.99.2.13/24", vxlan="10.65.2.1", mac="66:ca:00:00:00:03")
    six["spec"]["bgp"]["ipv6Address"] = "fd99::13/64"
    run(pool("p6", "fd00:65::/48", vxlanMode="Always", natOutgoing=True), ME, six)
    run({"kind": "IPAMBlock", "cidr": "fd00:65::/122", "affinity": "host:node3"})
    assert run.state.pools["p6"].masquerade
    assert run.state.hosts["node3"].ipv6_addr == "fd99::13/64"
    assert run.routes() == {}


def test_work_per_change_grows_with_the_change() -> None:
    """200 remote blocks: one block update makes one candidate dirty, one Node update only its
    own blocks; a resolver recompute never walks the cluster for a block change."""
    run = Run()
    nodes = [
        node(f"n{i}", f"10.99.{i}.1/24", vxlan=f"10.66.{i}.1", mac=f"66:ca:00:00:01:{i:02x}")
        for i in range(20)
    ]
    blocks = [block(f"10.65.{i}.{j * 64}/26", f"n{i % 20}") for i in range(50) for j in range(4)]
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, *nodes, *blocks)
    assert len(run.routes()) == 200
    resolver = run.graph.routes
    run.graph.on_update(states.key_of(blocks[0]), block("10.65.0.0/26", "n7"))
    assert len(resolver._dirty) == 1
    run.graph.flush()
    run.graph.on_update(states.key_of(nodes[3]), node("n3", "10.99.3.1/24", vxlan="10.66.3.9"))
    assert len(resolver._dirty) == 12  # n3's blocks (10.65.{3,23,43}.x), not all 200


NETS = st.one_of(
    st.builds(
        lambda a, p: ipaddress.ip_network((a, p), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, p: ipaddress.ip_network((a, p), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    ),
)


@settings(max_examples=500, deadline=None)
@given(NETS, NETS)
def test_packed_cidrs_order_nest_and_print_like_the_networks(a: Net, b: Net) -> None:
    """The resolver keeps each CIDR as one int: same order (IPv4 first), same nesting, same
    text, and its supernets are the networks' supernets."""
    ka, kb = route_resolver.cidr_key(a), route_resolver.cidr_key(b)
    assert (ka < kb) == ((a.version, a) < (b.version, b))
    assert (ka == kb) == (a == b)
    same = a.version == b.version
    assert route_resolver._inside(ka, kb) == (same and a.subnet_of(b))  # type: ignore[arg-type]
    assert route_resolver.cidr_text(ka) == str(a)
    for plen in (0, a.prefixlen // 2, a.prefixlen):
        sup = a.supernet(new_prefix=plen)
        assert route_resolver._supernet(ka, plen) == route_resolver.cidr_key(sup)


def test_an_address_two_workloads_claim_stays_until_both_are_gone() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, SAME, OTHER, *BLOCKS)
    first = wep(0, "a", "default", "node2", 1, False)
    second = wep(1, "a", "default", "node3", 1, False)
    for w in (first, second):
        w["spec"]["ipNetworks"] = ["10.65.9.9/32"]  # in no block
    run(first, second)
    assert run.routes()["10.65.9.9/32"][0] == "node2"  # the first workload id decides
    run((first, True))
    assert run.routes()["10.65.9.9/32"][0] == "node3"
    run((second, True))
    assert "10.65.9.9/32" not in run.routes()
    assert run.graph.routes._wl_by_addr == {}
    assert run.graph.routes._wl_buckets == {}


def test_a_workload_with_several_addresses_keeps_and_drops_each() -> None:
    run = Run()
    run(pool("p", "10.65.0.0/16", vxlanMode="Always"), ME, SAME, OTHER, *BLOCKS)
    multi = wep(0, "a", "default", "node2", 1, False)
    multi["spec"]["ipNetworks"] = ["10.65.9.1/32", "10.65.9.2/32", "fd00::1/128"]
    run(multi)
    assert {"10.65.9.1/32", "10.65.9.2/32"} <= set(run.routes())
    multi["spec"]["ipNetworks"] = ["10.65.9.2/32"]
    run(multi)
    assert "10.65.9.1/32" not in run.routes()
    assert run.routes()["10.65.9.2/32"][0] == "node2"
    run((multi, True))
    assert not any(d.startswith("10.65.9.") for d in run.routes())
