"""ValidationFilter for the networking inputs: IPPool, Node and IPAM block -> typed records.

IPPools and Nodes are parsed by the model (``calico.model.validation.parse``: the same checks
and defaults calicoctl applies, metadata included), so the agent never disagrees with what was
accepted on write. A record that fails is treated as absent by the graph (``InvalidResource``,
naming the field). Blocks are read from Calico's IPAM keys
(``/calico/ipam/v2/assignment/ipv4/block/...``): only the CIDR and the ``host:<node>`` affinity
matter here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from calico.calc.validation import InvalidResource
from calico.dpapi import messages as m
from calico.ipam import keys as ipam_keys
from calico.model import validation

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
BLOCK_PREFIXES = (ipam_keys.block_prefix(4), ipam_keys.block_prefix(6))


@dataclass(frozen=True, slots=True)
class PoolData:
    name: str
    net: Net
    pool: m.IPPool

    def encap(self) -> tuple[str, str] | None:
        """(tunnel device, mode) when this pool encapsulates at all."""
        if self.pool.vxlan_mode != m.ENCAP_NEVER:
            return m.VXLAN_DEVICE, self.pool.vxlan_mode
        if self.pool.ipip_mode != m.ENCAP_NEVER:
            return m.IPIP_DEVICE, self.pool.ipip_mode
        return None


@dataclass(frozen=True, slots=True)
class NodeData:
    name: str
    ipv4: ipaddress.IPv4Interface | None = None  # with the subnet's prefix length
    ipv6: ipaddress.IPv6Interface | None = None
    ipip_tunnel_addr: str | None = None
    vxlan_tunnel_addr: str | None = None
    vxlan_mac: str | None = None

    def host_metadata(self) -> m.HostMetadataUpdate:
        return m.HostMetadataUpdate(
            hostname=self.name,
            ipv4_addr=str(self.ipv4) if self.ipv4 else None,
            ipv6_addr=str(self.ipv6) if self.ipv6 else None,
            ipip_tunnel_addr=self.ipip_tunnel_addr,
            vxlan_tunnel_addr=self.vxlan_tunnel_addr,
            vxlan_tunnel_mac=self.vxlan_mac,
        )

    def vtep(self) -> m.VXLANTunnelEndpointUpdate | None:
        if not (self.ipv4 and self.vxlan_tunnel_addr and self.vxlan_mac):
            return None
        return m.VXLANTunnelEndpointUpdate(
            node=self.name,
            mac=self.vxlan_mac,
            ipv4_addr=self.vxlan_tunnel_addr,
            parent_device_ip=str(self.ipv4.ip),
        )


def _spec(obj: Any, kind: str) -> dict[str, Any]:
    """The normalized spec of a whole resource, checked by ``model.validation.parse`` (metadata
    included), exactly as on write."""
    try:
        res = validation.parse(obj)
    except validation.ValidationError as exc:
        raise InvalidResource(str(exc).removeprefix(f"{exc.resource}: ")) from None
    if res.kind != kind or not isinstance(res.spec, dict):
        raise InvalidResource(f"kind: {res.kind} is not a {kind}")
    return res.spec


def ippool(name: str, obj: Any) -> PoolData:
    spec = _spec(obj, "IPPool")
    net = ipaddress.ip_network(spec["cidr"])
    return PoolData(
        name=name,
        net=net,
        pool=m.IPPool(
            cidr=str(net),
            masquerade=bool(spec["natOutgoing"]),
            ipip_mode=spec["ipipMode"],
            vxlan_mode=spec["vxlanMode"],
            disabled=bool(spec["disabled"]),
        ),
    )


def node(name: str, obj: Any) -> NodeData:
    spec = _spec(obj, "Node")
    bgp = spec.get("bgp") or {}
    v4 = ipaddress.ip_interface(bgp["ipv4Address"]) if bgp.get("ipv4Address") else None
    v6 = ipaddress.ip_interface(bgp["ipv6Address"]) if bgp.get("ipv6Address") else None
    assert v4 is None or isinstance(v4, ipaddress.IPv4Interface)  # the model checked the family
    assert v6 is None or isinstance(v6, ipaddress.IPv6Interface)
    mac = spec.get("vxlanTunnelMACAddr")
    return NodeData(
        name=name,
        ipv4=v4,
        ipv6=v6,
        ipip_tunnel_addr=bgp.get("ipv4IPIPTunnelAddr") or None,
        vxlan_tunnel_addr=spec.get("ipv4VXLANTunnelAddr") or None,
        vxlan_mac=str(mac).lower() if mac else None,
    )


def is_block_key(key: str) -> bool:
    return key.startswith(BLOCK_PREFIXES)


def block_cidr(key: str) -> Net:
    """The CIDR an IPAM block key names (``.../block/10.65.1.0-26``)."""
    try:
        return ipam_keys.cidr_from_key(key)
    except ValueError:
        raise InvalidResource(f"key: {key!r} does not name a block CIDR") from None


def block_affinity(net: Net, obj: Any) -> str | None:
    """The node a block (JSON value) is affine to (``affinity: host:<node>``), else None."""
    if not isinstance(obj, dict):
        raise InvalidResource(f"block: expected a mapping, got {type(obj).__name__}")
    if obj.get("cidr") is not None and str(obj["cidr"]) != str(net):
        raise InvalidResource(f"cidr: {obj['cidr']!r} does not match the key's {net}")
    affinity = obj.get("affinity")
    if affinity is not None and not isinstance(affinity, str):
        raise InvalidResource(f"affinity: {affinity!r} is not a string")
    if affinity and affinity.startswith("host:") and len(affinity) > 5:
        return affinity[5:]
    return None
