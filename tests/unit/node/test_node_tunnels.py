"""Tunnel address decisions that need no datastore: which pools qualify, where the address and the
VXLAN MAC live in the Node, the derived MAC."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from calico.node import tunnels
from calico.node.tunnels import IPIP, VXLAN


def pool(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


POOLS = [
    pool("ipip-all", "10.1.0.0/16", ipipMode="Always"),
    pool("ipip-cs-zone-a", "10.2.0.0/16", ipipMode="CrossSubnet", nodeSelector="zone == 'a'"),
    pool("ipip-off", "10.3.0.0/16", ipipMode="Always", disabled=True),
    pool("plain", "10.4.0.0/16"),
    pool("vxlan", "10.5.0.0/16", vxlanMode="CrossSubnet", ipipMode="Never"),
    pool("vxlan6", "fd00:5::/64", vxlanMode="Always"),
    pool("bad-selector", "10.6.0.0/16", ipipMode="Always", nodeSelector="zone ==="),
]


def names(found: list[Any]) -> list[str]:
    return [p.name for p in found]


def test_wanted_pools_by_mode_selector_family_and_state() -> None:
    assert names(tunnels.wanted_pools(IPIP, POOLS, {})) == ["ipip-all"]
    assert names(tunnels.wanted_pools(IPIP, POOLS, {"zone": "a"})) == ["ipip-all", "ipip-cs-zone-a"]
    # IPv6 pools never give a tunnel address (the tunnels are IPv4)
    assert names(tunnels.wanted_pools(VXLAN, POOLS, {"zone": "a"})) == ["vxlan"]
    assert tunnels.wanted_pools(VXLAN, [pool("p", "10.0.0.0/8")], {}) == []


def test_handles_and_attribute_types_are_calicos() -> None:
    assert IPIP.handle("n1") == "ipip-tunnel-addr-n1"
    assert VXLAN.handle("n1") == "vxlan-tunnel-addr-n1"
    assert (IPIP.attr_type, VXLAN.attr_type) == ("ipipTunnelAddress", "vxlanTunnelAddress")


def test_derived_mac_is_stable_locally_administered_unicast() -> None:
    mac = tunnels.derive_mac("node1")
    assert mac == tunnels.derive_mac("node1")
    assert mac != tunnels.derive_mac("node2")
    first = int(mac.split(":")[0], 16)
    assert first & 0x02  # locally administered
    assert not first & 0x01  # unicast
    assert len(mac.split(":")) == 6


def node(**spec: Any) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}}, "spec": spec}


def test_ipip_address_lives_under_bgp_and_keeps_other_fields() -> None:
    n = node(bgp={"ipv4Address": "10.0.0.1/24", "asNumber": 65001})
    assert tunnels.set_address(n, IPIP, "10.1.0.7")
    assert n["spec"]["bgp"] == {
        "ipv4Address": "10.0.0.1/24",
        "asNumber": 65001,
        "ipv4IPIPTunnelAddr": "10.1.0.7",
    }
    assert tunnels.get_address(n, IPIP) == "10.1.0.7"
    assert not tunnels.set_address(n, IPIP, "10.1.0.7")  # nothing to write
    assert tunnels.set_address(n, IPIP, "")
    assert n["spec"]["bgp"] == {"ipv4Address": "10.0.0.1/24", "asNumber": 65001}
    assert n["metadata"]["labels"] == {"a": "b"}


def test_removing_the_only_bgp_field_removes_bgp() -> None:
    n = node(bgp={"ipv4IPIPTunnelAddr": "10.1.0.7"})
    tunnels.set_address(n, IPIP, "")
    assert n["spec"] == {}
    assert not tunnels.set_address(node(), IPIP, "")


def test_vxlan_address_and_derived_mac() -> None:
    n = node(bgp={"ipv4Address": "10.0.0.1/24"})
    assert tunnels.set_address(n, VXLAN, "10.5.0.9")
    assert n["spec"]["ipv4VXLANTunnelAddr"] == "10.5.0.9"
    assert n["spec"]["vxlanTunnelMACAddr"] == tunnels.derive_mac("n1")
    tunnels.set_address(n, VXLAN, "")
    assert n["spec"] == {"bgp": {"ipv4Address": "10.0.0.1/24"}}


def test_an_admins_mac_is_kept_even_when_the_address_goes() -> None:
    n = node(vxlanTunnelMACAddr="66:00:00:00:00:01")
    tunnels.set_address(n, VXLAN, "10.5.0.9")
    assert n["spec"]["vxlanTunnelMACAddr"] == "66:00:00:00:00:01"
    tunnels.set_address(n, VXLAN, "")
    assert n["spec"] == {"vxlanTunnelMACAddr": "66:00:00:00:00:01"}


def test_a_missing_mac_is_restored_for_a_kept_address() -> None:
    n = node(ipv4VXLANTunnelAddr="10.5.0.9")
    before = copy.deepcopy(n)
    assert tunnels.set_address(n, VXLAN, "10.5.0.9")
    assert n["spec"]["vxlanTunnelMACAddr"] == tunnels.derive_mac("n1")
    assert before["spec"] != n["spec"]


@pytest.mark.parametrize("tunnel", [IPIP, VXLAN])
def test_get_address_of_a_node_without_spec(tunnel: tunnels.Tunnel) -> None:
    assert tunnels.get_address({"metadata": {"name": "x"}}, tunnel) == ""
