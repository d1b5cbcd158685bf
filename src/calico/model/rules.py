"""Policy and profile rules (``spec.ingress[i]`` / ``spec.egress[i]``) -> typed ``values.Rule``.

A rule is ``action`` plus optional match criteria: ``protocol``/``notProtocol``,
``icmp``/``notICMP``, ``ipVersion``, and ``source``/``destination`` entity rules (``nets``,
``notNets``, ``selector``, ``notSelector``, ``namespaceSelector``, ``ports``, ``notPorts``,
``serviceAccounts``). Checks follow Calico's: ports only with TCP, UDP or SCTP; ICMP type/code only
with ICMP/ICMPv6 and in range; nets matching ``ipVersion``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.model import fields, values
from calico.model.fields import FieldError

ACTIONS = ("Allow", "Deny", "Log", "Pass")

_RULE_FIELDS = fields.names(
    "action ipVersion protocol notProtocol icmp notICMP source destination http metadata"
)
_ENTITY_FIELDS = fields.names(
    "nets notNets selector notSelector namespaceSelector ports notPorts serviceAccounts"
)
_ICMP_PROTOCOLS = {"ICMP": 4, "ICMPv6": 6, 1: 4, 58: 6}


def rules(value: Any, path: str) -> tuple[values.Rule, ...]:
    return tuple(rule(r, f"{path}[{i}]") for i, r in enumerate(fields.seq(value, path)))


def rule(value: Any, path: str) -> values.Rule:
    d = fields.mapping(value, path)
    fields.known_keys(d, _RULE_FIELDS, path)
    get = d.get
    if "action" not in d:
        raise FieldError(f"{path}.action", f"action is required (one of {', '.join(ACTIONS)})")
    action = fields.one_of(d["action"], f"{path}.action", ACTIONS)
    version = get("ipVersion")
    if version is not None and (isinstance(version, bool) or version not in (4, 6)):
        raise FieldError(f"{path}.ipVersion", f"invalid value {version!r} (want 4 or 6)")
    # Checked in this order (the first error is the one reported); absent fields cost nothing.
    proto = _protocol(d, "protocol", path) if get("protocol") is not None else None
    not_proto = _protocol(d, "notProtocol", path) if get("notProtocol") is not None else None
    icmp = _icmp(d["icmp"], f"{path}.icmp", proto, version) if get("icmp") is not None else None
    not_icmp = None
    if get("notICMP") is not None:
        not_icmp = _icmp(d["notICMP"], f"{path}.notICMP", proto, version)
    http = values.copy_json(_http(d["http"], f"{path}.http")) if "http" in d else None
    meta = values.copy_json(_rule_metadata(d["metadata"], path)) if "metadata" in d else None
    source = destination = None
    if get("source") is not None:
        source = entity_rule(d["source"], f"{path}.source", proto, version)
    if get("destination") is not None:
        destination = entity_rule(d["destination"], f"{path}.destination", proto, version)
    return values.Rule(
        action=action,
        ip_version=version,
        protocol=proto,
        not_protocol=not_proto,
        icmp=icmp,
        not_icmp=not_icmp,
        source=source,
        destination=destination,
        http=http,
        metadata=meta,
    )


def _protocol(d: dict[str, Any], key: str, path: str) -> values.ProtocolValue:
    return fields.protocol(d[key], f"{path}.{key}")


def _rule_metadata(value: Any, path: str) -> dict[str, Any]:
    meta = fields.mapping(value, f"{path}.metadata")
    fields.known_keys(meta, ("annotations",), f"{path}.metadata")
    return meta


def _icmp(value: Any, path: str, proto: Any, version: int | None) -> values.ICMPMatch:
    d = fields.mapping(value, path)
    fields.known_keys(d, ("type", "code"), path)
    if proto not in _ICMP_PROTOCOLS:
        raise FieldError(path, f"ICMP fields need protocol ICMP or ICMPv6, not {proto!r}")
    if version is not None and _ICMP_PROTOCOLS[proto] != version:
        raise FieldError(path, f"protocol {proto!r} does not match ipVersion {version}")
    typ = code = None
    if d.get("type") is not None:
        typ = fields.integer(d["type"], f"{path}.type", 0, 254)
    if d.get("code") is not None:
        if typ is None:
            raise FieldError(f"{path}.code", "ICMP code needs an ICMP type")
        code = fields.integer(d["code"], f"{path}.code", 0, 255)
    return values.ICMPMatch(typ, code)


def _http(value: Any, path: str) -> dict[str, Any]:
    d = fields.mapping(value, path)
    fields.known_keys(d, ("methods", "paths"), path)
    fields.string_list(d.get("methods"), f"{path}.methods")
    for i, p in enumerate(fields.seq(d.get("paths"), f"{path}.paths")):
        m = fields.mapping(p, f"{path}.paths[{i}]")
        fields.known_keys(m, ("exact", "prefix"), f"{path}.paths[{i}]")
    return d


def entity_rule(value: Any, path: str, proto: Any, version: int | None) -> values.EntityRule:
    d = fields.mapping(value, path)
    if not d:
        return values.NO_ENTITY
    fields.known_keys(d, _ENTITY_FIELDS, path)
    # Checked in this order (the first error is the one reported); absent fields cost nothing.
    nets = _nets(d["nets"], f"{path}.nets", version) if "nets" in d else ()
    not_nets = _nets(d["notNets"], f"{path}.notNets", version) if "notNets" in d else ()
    get = d.get
    sel = "" if get("selector") is None else fields.selector(d["selector"], f"{path}.selector")
    not_sel = ""
    if get("notSelector") is not None:
        not_sel = fields.selector(d["notSelector"], f"{path}.notSelector")
    ns_sel = ""
    if get("namespaceSelector") is not None:
        ns_sel = fields.selector(d["namespaceSelector"], f"{path}.namespaceSelector")
    ports = _ports(d["ports"], f"{path}.ports", proto) if get("ports") else ()
    not_ports = _ports(d["notPorts"], f"{path}.notPorts", proto) if get("notPorts") else ()
    sa = get("serviceAccounts")
    return values.EntityRule(
        nets=nets,
        not_nets=not_nets,
        selector=sel,
        not_selector=not_sel,
        namespace_selector=ns_sel,
        ports=ports,
        not_ports=not_ports,
        service_accounts=None if sa is None else _service_accounts(sa, f"{path}.serviceAccounts"),
    )


def _nets(value: Any, path: str, version: int | None) -> tuple[str, ...]:
    return tuple(_net(n, f"{path}[{i}]", version) for i, n in enumerate(fields.seq(value, path)))


def _net(value: Any, path: str, version: int | None) -> str:
    net = fields.cidr(value, path)
    if version is not None and ipaddress.ip_network(net).version != version:
        raise FieldError(path, f"net {value!r} does not match ipVersion {version}")
    return net


def _ports(value: Any, path: str, proto: Any) -> tuple[values.Port, ...]:
    if proto not in fields.PORT_PROTOCOLS:
        raise FieldError(path, f"ports need protocol TCP, UDP or SCTP, not {proto!r}")
    return tuple(
        fields.port_match(p, f"{path}[{i}]") for i, p in enumerate(fields.seq(value, path))
    )


def _service_accounts(value: Any, path: str) -> values.ServiceAccountMatch:
    sa = fields.mapping(value, path)
    fields.known_keys(sa, ("names", "selector"), path)
    names = fields.string_list(sa.get("names"), f"{path}.names")
    sel = sa.get("selector")
    return values.ServiceAccountMatch(
        names=tuple(names),
        selector="" if sel is None else fields.selector(sel, f"{path}.selector"),
    )
