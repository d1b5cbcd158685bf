"""Validation and defaults for the networking kinds: IPPool, Node, BGPPeer, BGPConfiguration,
ClusterInformation.

IPPool defaults as Calico sets them: ``blockSize`` 26 (IPv4) / 122 (IPv6), ``ipipMode`` and
``vxlanMode`` ``Never``, ``natOutgoing`` and ``disabled`` false, ``nodeSelector`` ``all()``; the
CIDR is stored in its network form. AS numbers are stored as integers (dotted ``high.low`` is
accepted).
"""

from __future__ import annotations

import ipaddress

from calico.model import fields
from calico.model.fields import FieldError, Obj

ENCAP_MODES = ("Always", "CrossSubnet", "Never")
LOG_LEVELS = ("Debug", "Info", "Warning", "Error", "Fatal", "None")

_IPPOOL_FIELDS = fields.names(
    "cidr blockSize ipipMode vxlanMode natOutgoing disabled nodeSelector disableBGPExport"
)
_NODE_FIELDS = ("bgp", "orchRefs", "ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr", "addresses")
_NODE_BGP_FIELDS = fields.names(
    "asNumber ipv4Address ipv6Address ipv4IPIPTunnelAddr routeReflectorClusterID"
)
_PEER_FIELDS = ("node", "peerIP", "asNumber", "nodeSelector", "peerSelector")
_BGPCONFIG_FIELDS = fields.names(
    "logSeverityScreen nodeToNodeMeshEnabled asNumber serviceClusterIPs serviceExternalIPs "
    "listenPort"
)
_CLUSTERINFO_FIELDS = ("clusterGUID", "clusterType", "calicoVersion", "datastoreReady")


def ippool(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _IPPOOL_FIELDS, path)
    out: Obj = dict(spec)
    if not spec.get("cidr"):
        raise FieldError(f"{path}.cidr", f"cidr is required, got {spec.get('cidr')!r}")
    net = ipaddress.ip_network(fields.cidr(spec["cidr"], f"{path}.cidr"))
    out["cidr"] = str(net)
    if net.version == 4:
        default_block, lo, hi = 26, 20, 32
    else:
        default_block, lo, hi = 122, 116, 128
    block = spec.get("blockSize", default_block)
    if isinstance(block, bool) or not isinstance(block, int) or not lo <= block <= hi:
        raise FieldError(
            f"{path}.blockSize",
            f"invalid blockSize {block!r} for an IPv{net.version} pool (want {lo}-{hi})",
        )
    if net.prefixlen > block:
        raise FieldError(
            f"{path}.cidr", f"pool {out['cidr']} is smaller than its blockSize /{block}"
        )
    out["blockSize"] = block
    if net.is_link_local:
        raise FieldError(f"{path}.cidr", f"a link-local range cannot be a pool: {spec['cidr']!r}")
    for key in ("ipipMode", "vxlanMode"):
        out[key] = fields.one_of(spec.get(key) or "Never", f"{path}.{key}", ENCAP_MODES)
    if out["ipipMode"] != "Never" and out["vxlanMode"] != "Never":
        raise FieldError(f"{path}.vxlanMode", "ipipMode and vxlanMode cannot both be enabled")
    if net.version == 6 and out["ipipMode"] != "Never":
        raise FieldError(f"{path}.ipipMode", "IPIP is not supported on an IPv6 pool")
    for key in ("natOutgoing", "disabled", "disableBGPExport"):
        if key in spec:
            out[key] = fields.boolean(spec[key], f"{path}.{key}")
    out.setdefault("natOutgoing", False)
    out.setdefault("disabled", False)
    out["nodeSelector"] = spec.get("nodeSelector") or "all()"
    fields.selector(out["nodeSelector"], f"{path}.nodeSelector")
    return out


def node(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _NODE_FIELDS, path)
    out: Obj = dict(spec)
    if spec.get("bgp") is not None:
        bpath = f"{path}.bgp"
        bgp = fields.mapping(spec["bgp"], bpath)
        fields.known_keys(bgp, _NODE_BGP_FIELDS, bpath)
        out_bgp = dict(bgp)
        if bgp.get("asNumber") is not None:
            out_bgp["asNumber"] = fields.as_number(bgp["asNumber"], f"{bpath}.asNumber")
        if bgp.get("ipv4Address"):
            fields.interface_address(bgp["ipv4Address"], f"{bpath}.ipv4Address", 4)
        if bgp.get("ipv6Address"):
            fields.interface_address(bgp["ipv6Address"], f"{bpath}.ipv6Address", 6)
        if bgp.get("ipv4IPIPTunnelAddr"):
            fields.ip(bgp["ipv4IPIPTunnelAddr"], f"{bpath}.ipv4IPIPTunnelAddr", 4)
        if bgp.get("routeReflectorClusterID"):
            fields.ip(bgp["routeReflectorClusterID"], f"{bpath}.routeReflectorClusterID", 4)
        out["bgp"] = out_bgp
    if spec.get("ipv4VXLANTunnelAddr"):
        fields.ip(spec["ipv4VXLANTunnelAddr"], f"{path}.ipv4VXLANTunnelAddr", 4)
    if spec.get("vxlanTunnelMACAddr"):
        fields.mac(spec["vxlanTunnelMACAddr"], f"{path}.vxlanTunnelMACAddr")
    for i, ref in enumerate(fields.seq(spec.get("orchRefs"), f"{path}.orchRefs")):
        rpath = f"{path}.orchRefs[{i}]"
        fields.known_keys(fields.mapping(ref, rpath), ("nodeName", "orchestrator"), rpath)
    for i, addr in enumerate(fields.seq(spec.get("addresses"), f"{path}.addresses")):
        apath = f"{path}.addresses[{i}]"
        a = fields.mapping(addr, apath)
        fields.known_keys(a, ("address", "type"), apath)
        fields.interface_address(a.get("address"), f"{apath}.address")
    return out


def bgp_peer(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _PEER_FIELDS, path)
    out: Obj = dict(spec)

    def given(key: str) -> bool:  # None and "" mean "not set"; anything else is checked
        return spec.get(key) not in (None, "")

    if given("node") and given("nodeSelector"):
        raise FieldError(f"{path}.nodeSelector", "node and nodeSelector cannot both be set")
    if given("peerIP") and given("peerSelector"):
        raise FieldError(f"{path}.peerSelector", "peerIP and peerSelector cannot both be set")
    if given("node"):
        fields.dns_subdomain(spec["node"], f"{path}.node")
    for key in ("nodeSelector", "peerSelector"):
        if given(key):
            fields.selector(spec[key], f"{path}.{key}")
    if not given("peerSelector"):
        if not given("peerIP"):
            raise FieldError(f"{path}.peerIP", "peerIP is required (or peerSelector)")
        out["peerIP"] = _peer_ip(spec["peerIP"], f"{path}.peerIP")
        if spec.get("asNumber") is None:
            raise FieldError(f"{path}.asNumber", "asNumber is required with peerIP")
    if spec.get("asNumber") is not None:
        out["asNumber"] = fields.as_number(spec["asNumber"], f"{path}.asNumber")
    return out


def _peer_ip(value: object, path: str) -> str:
    """An IP, optionally with a port (``10.0.0.1:179``, ``[fd00::1]:179``), as Calico allows."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if value.startswith("[") and sep:
            host = host.strip("[]")
        elif sep and value.count(":") == 1:
            pass
        else:
            host, port = value, ""
        fields.ip(host, path)
        if port:
            fields.integer(int(port) if port.isascii() and port.isdigit() else -1, path, 1, 65535)
        return value
    raise FieldError(path, f"invalid IP address {value!r}")


def bgp_configuration(spec: Obj, path: str, name: str) -> Obj:
    fields.known_keys(spec, _BGPCONFIG_FIELDS, path)
    out: Obj = dict(spec)
    if spec.get("logSeverityScreen") is not None:
        fields.one_of(spec["logSeverityScreen"], f"{path}.logSeverityScreen", LOG_LEVELS)
    if "nodeToNodeMeshEnabled" in spec:
        fields.boolean(spec["nodeToNodeMeshEnabled"], f"{path}.nodeToNodeMeshEnabled")
    if spec.get("asNumber") is not None:
        out["asNumber"] = fields.as_number(spec["asNumber"], f"{path}.asNumber")
    if spec.get("listenPort") is not None:
        fields.integer(spec["listenPort"], f"{path}.listenPort", 1, 65535)
    for key in ("serviceClusterIPs", "serviceExternalIPs"):
        for i, item in enumerate(fields.seq(spec.get(key), f"{path}.{key}")):
            ipath = f"{path}.{key}[{i}]"
            fields.known_keys(fields.mapping(item, ipath), ("cidr",), ipath)
            fields.cidr(item.get("cidr"), f"{ipath}.cidr")
    if name != "default":
        for key in ("nodeToNodeMeshEnabled", "asNumber"):
            if key in spec:
                raise FieldError(
                    f"{path}.{key}", f"only the 'default' BGPConfiguration may set {key}"
                )
    return out


def cluster_information(spec: Obj, path: str, name: str) -> Obj:
    fields.known_keys(spec, _CLUSTERINFO_FIELDS, path)
    if name != "default":
        raise FieldError(
            "metadata.name", f"ClusterInformation must be named 'default', not {name!r}"
        )
    for key in ("clusterGUID", "clusterType", "calicoVersion"):
        if key in spec:
            fields.string(spec[key], f"{path}.{key}")
    if "datastoreReady" in spec:
        fields.boolean(spec["datastoreReady"], f"{path}.datastoreReady")
    return dict(spec)
