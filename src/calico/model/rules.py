"""Validation of policy and profile rules (``spec.ingress[i]`` / ``spec.egress[i]``).

A rule is ``action`` plus optional match criteria: ``protocol``/``notProtocol``,
``icmp``/``notICMP``, ``ipVersion``, and ``source``/``destination`` entity rules (``nets``,
``notNets``, ``selector``, ``notSelector``, ``namespaceSelector``, ``ports``, ``notPorts``,
``serviceAccounts``). Checks follow Calico's: ports only with TCP, UDP or SCTP; ICMP type/code only
with ICMP/ICMPv6 and in range; nets matching ``ipVersion``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.model import fields
from calico.model.fields import FieldError, Obj

ACTIONS = ("Allow", "Deny", "Log", "Pass")

_RULE_FIELDS = fields.names(
    "action ipVersion protocol notProtocol icmp notICMP source destination http metadata"
)
_ENTITY_FIELDS = fields.names(
    "nets notNets selector notSelector namespaceSelector ports notPorts serviceAccounts"
)
_ICMP_PROTOCOLS = {"ICMP": 4, "ICMPv6": 6, 1: 4, 58: 6}


def rules(value: Any, path: str) -> list[Obj]:
    return [rule(r, f"{path}[{i}]") for i, r in enumerate(fields.seq(value, path))]


def rule(value: Any, path: str) -> Obj:
    d = fields.mapping(value, path)
    fields.known_keys(d, _RULE_FIELDS, path)
    out: Obj = dict(d)
    if "action" not in d:
        raise FieldError(f"{path}.action", f"action is required (one of {', '.join(ACTIONS)})")
    out["action"] = fields.one_of(d["action"], f"{path}.action", ACTIONS)
    if d.get("ipVersion") is not None:
        v = d["ipVersion"]
        if isinstance(v, bool) or v not in (4, 6):
            raise FieldError(f"{path}.ipVersion", f"invalid value {v!r} (want 4 or 6)")
    for key in ("protocol", "notProtocol"):
        if d.get(key) is not None:
            out[key] = fields.protocol(d[key], f"{path}.{key}")
    proto = out.get("protocol")
    for key in ("icmp", "notICMP"):
        if d.get(key) is not None:
            out[key] = _icmp(d[key], f"{path}.{key}", proto, out.get("ipVersion"))
    if "http" in d:
        _http(d["http"], f"{path}.http")
    if "metadata" in d:
        meta = fields.mapping(d["metadata"], f"{path}.metadata")
        fields.known_keys(meta, ("annotations",), f"{path}.metadata")
    for key in ("source", "destination"):
        if d.get(key) is not None:
            out[key] = entity_rule(d[key], f"{path}.{key}", proto, out.get("ipVersion"))
    return out


def _icmp(value: Any, path: str, proto: Any, version: int | None) -> Obj:
    d = fields.mapping(value, path)
    fields.known_keys(d, ("type", "code"), path)
    if proto not in _ICMP_PROTOCOLS:
        raise FieldError(path, f"ICMP fields need protocol ICMP or ICMPv6, not {proto!r}")
    if version is not None and _ICMP_PROTOCOLS[proto] != version:
        raise FieldError(path, f"protocol {proto!r} does not match ipVersion {version}")
    out: Obj = {}
    if d.get("type") is not None:
        out["type"] = fields.integer(d["type"], f"{path}.type", 0, 254)
    if d.get("code") is not None:
        if "type" not in out:
            raise FieldError(f"{path}.code", "ICMP code needs an ICMP type")
        out["code"] = fields.integer(d["code"], f"{path}.code", 0, 255)
    return out


def _http(value: Any, path: str) -> None:
    d = fields.mapping(value, path)
    fields.known_keys(d, ("methods", "paths"), path)
    fields.string_list(d.get("methods"), f"{path}.methods")
    for i, p in enumerate(fields.seq(d.get("paths"), f"{path}.paths")):
        m = fields.mapping(p, f"{path}.paths[{i}]")
        fields.known_keys(m, ("exact", "prefix"), f"{path}.paths[{i}]")


def entity_rule(value: Any, path: str, proto: Any, version: int | None) -> Obj:
    d = fields.mapping(value, path)
    fields.known_keys(d, _ENTITY_FIELDS, path)
    out: Obj = dict(d)
    for key in ("nets", "notNets"):
        if key in d:
            out[key] = [
                _net(n, f"{path}.{key}[{i}]", version)
                for i, n in enumerate(fields.seq(d[key], f"{path}.{key}"))
            ]
    for key in ("selector", "notSelector", "namespaceSelector"):
        if d.get(key) is not None:
            fields.selector(d[key], f"{path}.{key}")
    for key in ("ports", "notPorts"):
        if d.get(key):
            if proto not in fields.PORT_PROTOCOLS:
                raise FieldError(
                    f"{path}.{key}", f"ports need protocol TCP, UDP or SCTP, not {proto!r}"
                )
            out[key] = [
                fields.port(p, f"{path}.{key}[{i}]")
                for i, p in enumerate(fields.seq(d[key], f"{path}.{key}"))
            ]
    if d.get("serviceAccounts") is not None:
        sa_path = f"{path}.serviceAccounts"
        sa = fields.mapping(d["serviceAccounts"], sa_path)
        fields.known_keys(sa, ("names", "selector"), sa_path)
        fields.string_list(sa.get("names"), f"{sa_path}.names")
        if sa.get("selector") is not None:
            fields.selector(sa["selector"], f"{sa_path}.selector")
    return out


def _net(value: Any, path: str, version: int | None) -> str:
    net = fields.cidr(value, path)
    if version is not None and ipaddress.ip_network(net).version != version:
        raise FieldError(path, f"net {value!r} does not match ipVersion {version}")
    return net
