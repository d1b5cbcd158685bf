"""WorkloadEndpoint and HostEndpoint specs -> typed values.

A WorkloadEndpoint names its node, orchestrator, workload/pod and endpoint, its interface, the
addresses it owns (``ipNetworks``), NAT mappings, profiles and named ports. A HostEndpoint names a
node and either an interface or the IPs it expects (``expectedIPs``), with profiles and named ports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calico.model import fields, values
from calico.model.fields import FieldError, Obj

_WEP_FIELDS = fields.names(
    "orchestrator workload node containerID pod endpoint ipNetworks ipNATs ipv4Gateway "
    "ipv6Gateway profiles interfaceName mac ports serviceAccountName "
    "allowSpoofedSourcePrefixes"
)
_HEP_FIELDS = ("node", "interfaceName", "expectedIPs", "profiles", "ports")


def named_ports(value: Any, path: str) -> tuple[values.NamedPort, ...]:
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
        fields.port_match(name, f"{ipath}.name")
        proto = fields.protocol(p.get("protocol"), f"{ipath}.protocol")
        if proto not in fields.PORT_PROTOCOLS:
            raise FieldError(
                f"{ipath}.protocol", f"named ports need TCP, UDP or SCTP, not {proto!r}"
            )
        number = fields.integer(p.get("port"), f"{ipath}.port", 1, 65535)
        if (name, proto) in seen:
            raise FieldError(f"{ipath}.name", f"duplicate port name {name!r}")
        seen.add((name, proto))
        out.append(values.NamedPort(name, proto, number))
    return tuple(out)


def _profiles(spec: Obj, path: str) -> tuple[str, ...]:
    return tuple(fields.string_list(spec.get("profiles"), f"{path}.profiles", fields.dns_subdomain))


def _text(spec: Obj, key: str, path: str, check: Callable[[Any, str], str] = fields.string) -> str:
    value = spec.get(key)
    return check(value, f"{path}.{key}") if value else ""


def _cidrs(spec: Obj, key: str, path: str) -> tuple[str, ...]:
    value = spec.get(key)
    if value is None:
        return ()
    return tuple(fields.string_list(value, f"{path}.{key}", fields.cidr))


def _ip_nats(spec: Obj, path: str) -> tuple[tuple[str, str], ...]:
    out = []
    for i, nat in enumerate(fields.seq(spec.get("ipNATs"), f"{path}.ipNATs")):
        npath = f"{path}.ipNATs[{i}]"
        n = fields.mapping(nat, npath)
        fields.known_keys(n, ("internalIP", "externalIP"), npath)
        internal = fields.ip(n.get("internalIP"), f"{npath}.internalIP")
        out.append((internal, fields.ip(n.get("externalIP"), f"{npath}.externalIP")))
    return tuple(out)


def _ip4(value: Any, path: str) -> str:
    return fields.ip(value, path, 4)


def _ip6(value: Any, path: str) -> str:
    return fields.ip(value, path, 6)


def _string(spec: Obj, key: str, path: str) -> str:
    value = spec.get(key)
    return "" if value is None else fields.string(value, f"{path}.{key}")


def workload_endpoint(spec: Obj, path: str) -> values.WorkloadEndpoint:
    fields.known_keys(spec, _WEP_FIELDS, path)
    return values.WorkloadEndpoint(
        orchestrator=_string(spec, "orchestrator", path),
        workload=_string(spec, "workload", path),
        container_id=_string(spec, "containerID", path),
        pod=_string(spec, "pod", path),
        endpoint=_string(spec, "endpoint", path),
        service_account_name=_string(spec, "serviceAccountName", path),
        node=_text(spec, "node", path, fields.dns_subdomain),
        interface_name=_text(spec, "interfaceName", path, fields.interface_name),
        mac=_text(spec, "mac", path, fields.mac),
        ip_networks=_cidrs(spec, "ipNetworks", path),
        allow_spoofed_source_prefixes=_cidrs(spec, "allowSpoofedSourcePrefixes", path),
        ip_nats=_ip_nats(spec, path) if spec.get("ipNATs") is not None else (),
        ipv4_gateway=_text(spec, "ipv4Gateway", path, _ip4),
        ipv6_gateway=_text(spec, "ipv6Gateway", path, _ip6),
        profiles=_profiles(spec, path),
        ports=named_ports(spec.get("ports"), f"{path}.ports"),
    )


def host_endpoint(spec: Obj, path: str) -> values.HostEndpoint:
    fields.known_keys(spec, _HEP_FIELDS, path)
    if not spec.get("node"):
        raise FieldError(f"{path}.node", f"node is required, got {spec.get('node')!r}")
    node = fields.dns_subdomain(spec["node"], f"{path}.node")
    if not spec.get("interfaceName") and not spec.get("expectedIPs"):
        raise FieldError(f"{path}.interfaceName", "interfaceName or expectedIPs is required")
    iface = spec.get("interfaceName") or ""
    if iface != "*":
        iface = _text(spec, "interfaceName", path, fields.interface_name)
    return values.HostEndpoint(
        node=node,
        interface_name=iface,
        expected_ips=tuple(
            fields.string_list(spec.get("expectedIPs"), f"{path}.expectedIPs", fields.ip)
        ),
        profiles=_profiles(spec, path),
        ports=named_ports(spec.get("ports"), f"{path}.ports"),
    )
