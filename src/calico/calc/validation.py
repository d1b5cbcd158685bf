"""ValidationFilter: datastore resource dicts -> the calculation graph's typed records.

A resource that fails here is treated as absent (logged with the field and value), so one bad
object never stops the graph and never half-applies: its previous version is withdrawn too.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from calico import selector
from calico.calc import rule_scanner
from calico.calc import selectors as sels
from calico.dpapi import messages as m

WEP, HEP, NETSET = "wep", "hep", "netset"
IFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class InvalidResource(ValueError):
    """A resource the graph cannot use; the message names the field."""


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class Item:
    """Anything a selector can match and that has addresses: endpoints and network sets."""

    id: str
    kind: str
    labels: tuple[tuple[str, str], ...]
    parents: tuple[str, ...] = ()  # profile names (labels inherited through labelsToApply)
    nets: tuple[str, ...] = ()
    ports: tuple[NamedPort, ...] = ()
    node: str | None = None
    iface: str | None = None
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileData:
    name: str
    labels_to_apply: tuple[tuple[str, str], ...]
    profile: m.Profile
    specs: tuple[rule_scanner.IPSetSpec, ...]


@dataclass(frozen=True, slots=True)
class PolicyData:
    id: m.PolicyID
    order: float | None
    selector: selector.Selector
    ingress: bool
    egress: bool
    policy: m.Policy
    specs: tuple[rule_scanner.IPSetSpec, ...] = field(default=())

    def sort_key(self) -> tuple[bool, float, str]:
        return (self.order is None, self.order or 0.0, str(self.id))


def _labels(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidResource(f"{where}: expected a mapping, got {raw!r}")
    # interned: one copy of "app"/"web" for all endpoints, and none pinning a decoded document
    return {sys.intern(str(k)): sys.intern(str(v)) for k, v in raw.items()}


def _str_list(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidResource(f"{where}: expected a list, got {raw!r}")
    return tuple(sys.intern(str(x)) for x in raw)


def _cidrs(raw: Any, where: str) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(_str_list(raw, where)):
        try:
            out.append(str(ipaddress.ip_network(v, strict=False)))
        except ValueError as exc:
            raise InvalidResource(f"{where}[{i}]: {v!r} is not an IP network") from exc
    return tuple(out)


def _ports(raw: Any, where: str) -> tuple[NamedPort, ...]:
    out = []
    for i, p in enumerate(raw or []):
        if not isinstance(p, dict) or not p.get("name"):
            raise InvalidResource(f"{where}[{i}]: expected {{name, protocol, port}}, got {p!r}")
        proto = rule_scanner.PROTOCOLS.get(str(p.get("protocol", "TCP")).lower())
        port = p.get("port")
        if proto not in rule_scanner.PORT_PROTOCOLS or not isinstance(port, int):
            raise InvalidResource(f"{where}[{i}]: bad protocol/port in {p!r}")
        out.append(NamedPort(str(p["name"]), proto, port))
    return tuple(out)


def _check_iface(iface: Any) -> None:
    if iface is not None and (not isinstance(iface, str) or not IFACE_RE.fullmatch(iface)):
        raise InvalidResource(f"spec.interfaceName: {iface!r} is not an interface name")


def _meta(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise InvalidResource(f"resource: expected a mapping, got {type(obj).__name__}")
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise InvalidResource("metadata/spec: expected mappings")
    return meta, spec


def workload_endpoint(item_id: str, namespace: str, obj: Any) -> Item:
    meta, spec = _meta(obj)
    labels = _labels(meta.get("labels"), "metadata.labels")
    labels.setdefault(sels.NAMESPACE_LABEL, sys.intern(namespace))
    if spec.get("orchestrator"):
        labels.setdefault(sels.ORCHESTRATOR_LABEL, sys.intern(str(spec["orchestrator"])))
    iface = spec.get("interfaceName") or None
    _check_iface(iface)
    return Item(
        id=item_id,
        kind=WEP,
        labels=tuple(sorted(labels.items())),
        parents=_str_list(spec.get("profiles"), "spec.profiles"),
        nets=_cidrs(spec.get("ipNetworks"), "spec.ipNetworks"),
        ports=_ports(spec.get("ports"), "spec.ports"),
        node=sys.intern(str(spec.get("node") or "")),
        iface=iface,
        mac=spec.get("mac"),
    )


def host_endpoint(item_id: str, obj: Any) -> Item:
    meta, spec = _meta(obj)
    iface = spec.get("interfaceName")
    if not iface:
        raise InvalidResource(
            "spec.interfaceName: required (interface-less host endpoints are not supported)"
        )
    _check_iface(iface)
    ips = _cidrs(spec.get("expectedIPs"), "spec.expectedIPs")
    return Item(
        id=item_id,
        kind=HEP,
        labels=tuple(sorted(_labels(meta.get("labels"), "metadata.labels").items())),
        parents=_str_list(spec.get("profiles"), "spec.profiles"),
        nets=ips,
        ports=_ports(spec.get("ports"), "spec.ports"),
        node=str(spec.get("node") or ""),
        iface=str(iface),
    )


def network_set(item_id: str, namespace: str | None, obj: Any) -> Item:
    meta, spec = _meta(obj)
    labels = _labels(meta.get("labels"), "metadata.labels")
    if namespace:
        labels.setdefault(sels.NAMESPACE_LABEL, namespace)
    return Item(
        id=item_id,
        kind=NETSET,
        labels=tuple(sorted(labels.items())),
        nets=_cidrs(spec.get("nets"), "spec.nets"),
    )


def profile(name: str, obj: Any) -> ProfileData:
    _, spec = _meta(obj)
    try:
        inbound, s1 = rule_scanner.scan_rules(spec.get("ingress"), "spec.ingress", namespace=None)
        outbound, s2 = rule_scanner.scan_rules(spec.get("egress"), "spec.egress", namespace=None)
    except (rule_scanner.RuleError, selector.SelectorError) as exc:
        raise InvalidResource(str(exc)) from exc
    to_apply = _labels(spec.get("labelsToApply"), "spec.labelsToApply")
    return ProfileData(
        name=name,
        labels_to_apply=tuple(sorted(to_apply.items())),
        profile=m.Profile(inbound_rules=inbound, outbound_rules=outbound),
        specs=tuple(s1 + s2),
    )


def _types(spec: dict[str, Any]) -> tuple[bool, bool]:
    types = spec.get("types")
    if types is None:
        has_egress = bool(spec.get("egress"))
        return bool(spec.get("ingress")) or not has_egress, has_egress
    names = {str(t).lower() for t in _str_list(types, "spec.types")}
    if names - {"ingress", "egress"}:
        raise InvalidResource(f"spec.types: {types!r} must hold only Ingress and Egress")
    return "ingress" in names, "egress" in names


def policy(pid: m.PolicyID, obj: Any) -> PolicyData:
    _, spec = _meta(obj)
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise InvalidResource(f"spec.order: {order!r} is not a number")
    ns = pid.namespace
    try:
        sel = sels.policy_selector(
            spec.get("selector"), namespace=ns, ns_selector=spec.get("namespaceSelector")
        )
        ingress, egress = _types(spec)
        pre_dnat = bool(spec.get("preDNAT"))
        inbound, s1 = rule_scanner.scan_rules(spec.get("ingress"), "spec.ingress", namespace=ns)
        outbound, s2 = rule_scanner.scan_rules(spec.get("egress"), "spec.egress", namespace=ns)
    except (rule_scanner.RuleError, selector.SelectorError) as exc:
        raise InvalidResource(str(exc)) from exc
    if pre_dnat and (egress or outbound):
        raise InvalidResource("spec.preDNAT: a preDNAT policy can only have ingress rules")
    return PolicyData(
        id=pid,
        order=float(order) if order is not None else None,
        selector=sel,
        ingress=ingress,
        egress=egress,
        policy=m.Policy(
            inbound_rules=inbound if ingress else (),
            outbound_rules=outbound if egress else (),
            untracked=bool(spec.get("doNotTrack")),
            pre_dnat=pre_dnat,
            apply_on_forward=bool(spec.get("applyOnForward")),
        ),
        specs=tuple((s1 if ingress else []) + (s2 if egress else [])),
    )
