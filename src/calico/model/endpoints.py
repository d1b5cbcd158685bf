"""Validation of WorkloadEndpoint and HostEndpoint specs.

A WorkloadEndpoint names its node, orchestrator, workload/pod and endpoint, its interface, the
addresses it owns (``ipNetworks``), NAT mappings, profiles and named ports. A HostEndpoint names a
node and either an interface or the IPs it expects (``expectedIPs``), with profiles and named ports.
"""

from __future__ import annotations

from typing import Any

from calico.model import fields
from calico.model.fields import FieldError, Obj

_WEP_FIELDS = fields.names(
    "orchestrator workload node containerID pod endpoint ipNetworks ipNATs ipv4Gateway "
    "ipv6Gateway profiles interfaceName mac ports serviceAccountName "
    "allowSpoofedSourcePrefixes"
)
_HEP_FIELDS = ("node", "interfaceName", "expectedIPs", "profiles", "ports")


def named_ports(value: Any, path: str) -> list[Obj]:
    """``[{name, protocol, port}]``: the ports a rule may refer to by name."""
    out = []
    seen: set[tuple[str, Any]] = set()
    for i, item in enumerate(fields.seq(value, path)):
        ipath = f"{path}[{i}]"
        p = fields.mapping(item, ipath)
        fields.known_keys(p, ("name", "protocol", "port"), ipath)
        name = p.get("name")
        if not isinstance(name, str) or not name:
            raise FieldError(f"{ipath}.name", f"invalid port name {name!r}")
        fields.port(name, f"{ipath}.name")
        proto = fields.protocol(p.get("protocol"), f"{ipath}.protocol")
        if proto not in fields.PORT_PROTOCOLS:
            raise FieldError(
                f"{ipath}.protocol", f"named ports need TCP, UDP or SCTP, not {proto!r}"
            )
        number = fields.integer(p.get("port"), f"{ipath}.port", 1, 65535)
        if (name, proto) in seen:
            raise FieldError(f"{ipath}.name", f"duplicate port name {name!r}")
        seen.add((name, proto))
        out.append({**p, "protocol": proto, "port": number})
    return out


def _profiles(value: Any, path: str) -> list[str]:
    return fields.string_list(value, path, fields.dns_subdomain)


def workload_endpoint(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _WEP_FIELDS, path)
    out: Obj = dict(spec)
    for key in ("orchestrator", "workload", "containerID", "pod", "endpoint", "serviceAccountName"):
        if spec.get(key) is not None:
            fields.string(spec[key], f"{path}.{key}")
    if spec.get("node"):
        fields.dns_subdomain(spec["node"], f"{path}.node")
    if spec.get("interfaceName"):
        fields.interface_name(spec["interfaceName"], f"{path}.interfaceName")
    if spec.get("mac"):
        fields.mac(spec["mac"], f"{path}.mac")
    for key in ("ipNetworks", "allowSpoofedSourcePrefixes"):
        if key in spec:
            out[key] = fields.string_list(spec[key], f"{path}.{key}", fields.cidr)
    for i, nat in enumerate(fields.seq(spec.get("ipNATs"), f"{path}.ipNATs")):
        npath = f"{path}.ipNATs[{i}]"
        n = fields.mapping(nat, npath)
        fields.known_keys(n, ("internalIP", "externalIP"), npath)
        fields.ip(n.get("internalIP"), f"{npath}.internalIP")
        fields.ip(n.get("externalIP"), f"{npath}.externalIP")
    if spec.get("ipv4Gateway"):
        fields.ip(spec["ipv4Gateway"], f"{path}.ipv4Gateway", 4)
    if spec.get("ipv6Gateway"):
        fields.ip(spec["ipv6Gateway"], f"{path}.ipv6Gateway", 6)
    if "profiles" in spec:
        out["profiles"] = _profiles(spec["profiles"], f"{path}.profiles")
    if "ports" in spec:
        out["ports"] = named_ports(spec["ports"], f"{path}.ports")
    return out


def host_endpoint(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _HEP_FIELDS, path)
    out: Obj = dict(spec)
    if not spec.get("node"):
        raise FieldError(f"{path}.node", f"node is required, got {spec.get('node')!r}")
    fields.dns_subdomain(spec["node"], f"{path}.node")
    if not spec.get("interfaceName") and not spec.get("expectedIPs"):
        raise FieldError(f"{path}.interfaceName", "interfaceName or expectedIPs is required")
    if spec.get("interfaceName") and spec["interfaceName"] != "*":
        fields.interface_name(spec["interfaceName"], f"{path}.interfaceName")
    if "expectedIPs" in spec:
        out["expectedIPs"] = fields.string_list(
            spec["expectedIPs"], f"{path}.expectedIPs", fields.ip
        )
    if "profiles" in spec:
        out["profiles"] = _profiles(spec["profiles"], f"{path}.profiles")
    if "ports" in spec:
        out["ports"] = named_ports(spec["ports"], f"{path}.ports")
    return out
