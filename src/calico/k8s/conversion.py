"""Kubernetes objects -> Calico v3 resources (pure; no I/O). libcalico-go's k8s ``conversion``.

    NetworkPolicy N in S  -> NetworkPolicy knp.default.N in S   (network_policy_to_calico)
    (AdminNetworkPolicy / BaselineAdminNetworkPolicy: calico.k8s.admin_policy)
    Namespace S           -> Profile kns.S                      (namespace_to_profile)
    ServiceAccount A in S -> Profile ksa.S.A                    (service_account_to_profile)
    Pod                   -> its WorkloadEndpoint's labels      (pod_to_workload_labels)

Inputs are the JSON dicts the Kubernetes API returns. Problems raise :class:`ConversionError` with
the field path and value. Ports and CIDRs are parsed with the model's field parsers (Calico's
rules, plus what Kubernetes adds), so the output is always what ``model.validation`` accepts.
For a policy, :func:`convert_network_policy` is the lenient form the controller uses: a rule that
cannot be converted is dropped (every Kubernetes rule is an allow, so dropping one only ever
denies more: fail closed, as Calico does) and reported in ``problems``; a policy-level problem
(metadata, podSelector, policyTypes, an unknown spec field) still raises.

Rule shape, as Calico writes it: one Calico rule per (protocol, peer), protocols sorted, the ports
of one protocol merged into ranges; ``namespaceSelector`` holds a selector over the *namespace's
own* labels (Calico evaluates it against the ``pcns.``-prefixed labels that ``kns.<ns>`` applies).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from calico.k8s import labels, names
from calico.model import fields, values

API_VERSION = "projectcalico.org/v3"
PROTOCOLS = ("TCP", "UDP", "SCTP")
_ORCH_TERM = f"{names.LABEL_ORCHESTRATOR} == '{names.ORCHESTRATOR_K8S}'"

Resource = dict[str, Any]


class ConversionError(ValueError):
    """A Kubernetes object cannot be converted; the message names the object, field and value."""


@dataclass
class PolicyConversion:
    policy: Resource
    problems: list[ConversionError] = field(default_factory=list)


# ---- helpers ---------------------------------------------------------------------------------


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def meta(obj: Any, kind: str, *, namespaced: bool) -> tuple[str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise ConversionError(f"{kind}: metadata is required, got {obj!r:.200}")
    meta = obj["metadata"]
    name, ns = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        raise ConversionError(f"{kind}: metadata.name is required, got {name!r}")
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        raise ConversionError(f"{kind}: metadata.name {name!r} is not a valid Kubernetes name")
    if namespaced and (not isinstance(ns, str) or not ns):
        raise ConversionError(f"{kind} {name}: metadata.namespace is required, got {ns!r}")
    if namespaced and (not _DNS_LABEL.match(ns) or len(ns) > 63):
        raise ConversionError(
            f"{kind} {name}: metadata.namespace {ns!r} is not a valid Kubernetes namespace"
        )
    return name, ns if namespaced else ""


def selector_text(sel: Any, where: str, *, pod: bool) -> str:
    """Calico form of a pod or namespace LabelSelector (pod selectors get the orchestrator term)."""
    try:
        terms = labels.selector_terms(sel, where)
    except labels.LabelError as exc:
        raise ConversionError(f"invalid selector: {exc}") from None
    if pod:
        return " && ".join([_ORCH_TERM, *terms])
    return " && ".join(terms) if terms else "all()"


def _cidr(value: Any, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ConversionError(f"{where}: CIDR must be a string, got {value!r}")
    try:
        return ipaddress.ip_network(fields.cidr(value, where))
    except fields.FieldError as exc:
        raise ConversionError(str(exc)) from None


def _peer(peer: Any, where: str) -> dict[str, Any]:
    """The EntityRule fields (selector / namespaceSelector / nets / notNets) for one peer."""
    if not isinstance(peer, dict):
        raise ConversionError(f"{where}: must be an object, got {peer!r}")
    unknown = set(peer) - {"podSelector", "namespaceSelector", "ipBlock"}
    if unknown:
        raise ConversionError(f"{where}: unsupported field(s) {sorted(unknown)}")
    if "ipBlock" in peer and peer["ipBlock"] is not None:
        if peer.get("podSelector") is not None or peer.get("namespaceSelector") is not None:
            raise ConversionError(f"{where}: ipBlock cannot be combined with a selector")
        block = peer["ipBlock"]
        if not isinstance(block, dict) or set(block) - {"cidr", "except"}:
            raise ConversionError(f"{where}.ipBlock: want {{cidr, except}}, got {block!r}")
        net = _cidr(block.get("cidr"), f"{where}.ipBlock.cidr")
        not_nets = []
        excepts = block.get("except") or []
        if not isinstance(excepts, list):
            raise ConversionError(f"{where}.ipBlock.except: must be a list, got {excepts!r}")
        for i, raw in enumerate(excepts):
            exc = _cidr(raw, f"{where}.ipBlock.except[{i}]")
            if (
                exc.version != net.version
                or not exc.subnet_of(net)  # type: ignore[arg-type]
                or exc.prefixlen <= net.prefixlen
            ):
                raise ConversionError(
                    f"{where}.ipBlock.except[{i}]: {raw!r} is not strictly inside cidr {str(net)!r}"
                )
            not_nets.append(str(exc))
        out: dict[str, Any] = {"nets": [str(net)]}
        if not_nets:
            out["notNets"] = not_nets
        return out
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if pod_sel is None and ns_sel is None:
        raise ConversionError(f"{where}: a peer needs podSelector, namespaceSelector or ipBlock")
    out = {"selector": selector_text(pod_sel or {}, f"{where}.podSelector", pod=True)}
    if ns_sel is not None:
        out["namespaceSelector"] = selector_text(ns_sel, f"{where}.namespaceSelector", pod=False)
    return out


PortSpec = tuple[str, list[values.Port] | None]  # (protocol, ports; None = all ports)


def _port_value(value: Any, end: Any, where: str) -> values.Port:
    """A NetworkPolicyPort's port (+ endPort) as the model's Port: Calico's own parser
    (``fields.port_match``) plus what Kubernetes adds (a name has a letter and no '--')."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConversionError(f"{where}.port: want a number or a name, got {value!r}")
    if isinstance(value, str):
        try:
            named = fields.port_match(value, f"{where}.port")
        except fields.FieldError:
            named = values.Port()
        if not named.name or "--" in value:
            raise ConversionError(f"{where}.port: invalid port name {value!r}")
        if end is not None:
            raise ConversionError(
                f"{where}.endPort: {end!r} cannot be used with named port {value!r}"
            )
        return named
    try:
        first = fields.port_match(value, f"{where}.port")
    except fields.FieldError:
        raise ConversionError(f"{where}.port: {value} is out of range 1-65535") from None
    if end is None:
        return first
    if isinstance(end, bool) or not isinstance(end, int) or not value <= end <= 65535:
        raise ConversionError(f"{where}.endPort: {end!r} must be a number in {value}-65535")
    return values.Port(value, end)


def _port(port: Any, where: str) -> PortSpec:
    if not isinstance(port, dict):
        raise ConversionError(f"{where}: must be an object, got {port!r}")
    unknown = set(port) - {"protocol", "port", "endPort"}
    if unknown:
        raise ConversionError(f"{where}: unsupported field(s) {sorted(unknown)}")
    proto = port.get("protocol") or "TCP"
    if proto not in PROTOCOLS:  # Kubernetes' enum (exact case), a subset of Calico's protocols
        raise ConversionError(
            f"{where}.protocol: unsupported protocol {proto!r} (want {PROTOCOLS})"
        )
    value, end = port.get("port"), port.get("endPort")
    if value is None:
        if end is not None:
            raise ConversionError(f"{where}.endPort: {end!r} needs a numeric port")
        return proto, None
    return proto, [_port_value(value, end, where)]


def simplify_ports(ports: list[values.Port]) -> list[int | str]:
    """Named ports (in order) then numeric ports merged into sorted ranges (SimplifyPorts)."""
    named = [p.to_json() for p in ports if p.name]
    merged: list[list[int]] = []
    for lo, hi in sorted((p.first, p.last) for p in ports if not p.name):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [*named, *(values.Port(lo, hi).to_json() for lo, hi in merged)]


def _rule_to_calico(rule: Any, where: str, *, ingress: bool) -> list[Resource]:
    peer_field = "from" if ingress else "to"
    if not isinstance(rule, dict):
        raise ConversionError(f"{where}: must be an object, got {rule!r}")
    unknown = set(rule) - {peer_field, "ports"}
    if unknown:
        raise ConversionError(f"{where}: unsupported field(s) {sorted(unknown)}")
    raw_peers, raw_ports = rule.get(peer_field) or [], rule.get("ports") or []
    if not isinstance(raw_peers, list) or not isinstance(raw_ports, list):
        raise ConversionError(f"{where}: {peer_field} and ports must be lists")
    peers = [_peer(p, f"{where}.{peer_field}[{i}]") for i, p in enumerate(raw_peers)] or [{}]
    by_proto = _ports_by_protocol(raw_ports, where)
    protos: list[tuple[str | None, list[values.Port] | None]] = (
        [(p, by_proto[p]) for p in sorted(by_proto)] if by_proto else [(None, None)]
    )
    return [
        _allow_rule(proto, ports, peer, ingress=ingress)
        for proto, ports in protos
        for peer in peers
    ]


def _ports_by_protocol(raw_ports: list[Any], where: str) -> dict[str, list[values.Port] | None]:
    """A rule's ports grouped by protocol; None for a protocol with a port-less entry (all its
    ports), which absorbs that protocol's specific ports."""
    by_proto: dict[str, list[values.Port] | None] = {}
    for i, raw in enumerate(raw_ports):
        port_proto, ports = _port(raw, f"{where}.ports[{i}]")
        if ports is None:
            by_proto[port_proto] = None  # all ports of this protocol
        elif port_proto not in by_proto:
            by_proto[port_proto] = list(ports)
        else:
            existing = by_proto[port_proto]
            if existing is not None:  # None (all ports) absorbs specific ports
                existing.extend(ports)
    return by_proto


def _allow_rule(
    proto: str | None, ports: list[values.Port] | None, peer: Resource, *, ingress: bool
) -> Resource:
    """One Calico Allow rule: the peer on the remote side, the ports on the pod's side."""
    ports_field = {"ports": simplify_ports(ports)} if ports else {}
    calico: Resource = {"action": "Allow"}
    if proto:
        calico["protocol"] = proto
    if ingress:
        calico["source"] = dict(peer)
        calico["destination"] = ports_field
    else:
        calico["source"] = {}
        calico["destination"] = {**ports_field, **peer}
    return calico


# ---- public conversions ----------------------------------------------------------------------


def _policy_types(spec: dict[str, Any], where: str) -> list[str]:
    raw = spec.get("policyTypes")
    if raw is None or raw == []:
        # Kubernetes' defaulting: Ingress always; Egress when there are egress rules.
        return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    if not isinstance(raw, list) or any(t not in ("Ingress", "Egress") for t in raw):
        raise ConversionError(f"{where}.policyTypes: want Ingress and/or Egress, got {raw!r}")
    return [t for t in ("Ingress", "Egress") if t in raw]


def convert_network_policy(np: Any) -> PolicyConversion:
    """Lenient conversion: bad rules are dropped into ``problems``; policy-level errors raise."""
    name, ns = meta(np, "NetworkPolicy", namespaced=True)
    where = f"NetworkPolicy {ns}/{name}: spec"
    spec = np.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConversionError(f"{where}: must be an object, got {spec!r}")
    unknown = set(spec) - {"podSelector", "policyTypes", "ingress", "egress"}
    if unknown:
        raise ConversionError(f"{where}: unsupported field(s) {sorted(unknown)}")
    selector = selector_text(spec.get("podSelector") or {}, f"{where}.podSelector", pod=True)
    types = _policy_types(spec, where)
    problems: list[ConversionError] = []
    calico_spec: Resource = {"order": int(names.POLICY_ORDER), "selector": selector, "types": types}
    for direction in ("ingress", "egress"):
        rules: list[Resource] = []
        raw_rules = spec.get(direction) or []
        if not isinstance(raw_rules, list):
            raise ConversionError(f"{where}.{direction}: must be a list, got {raw_rules!r}")
        for i, rule in enumerate(raw_rules):
            try:
                rules += _rule_to_calico(
                    rule, f"{where}.{direction}[{i}]", ingress=direction == "ingress"
                )
            except ConversionError as exc:
                problems.append(ConversionError(f"{exc} (rule dropped)"))
        if rules:
            calico_spec[direction] = rules
    policy = {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": names.policy_name(name), "namespace": ns},
        "spec": calico_spec,
    }
    return PolicyConversion(policy, problems)


def network_policy_to_calico(np: dict[str, Any]) -> Resource:
    """Calico NetworkPolicy ``knp.default.<name>`` for a Kubernetes NetworkPolicy (strict)."""
    result = convert_network_policy(np)
    if result.problems:
        raise result.problems[0]
    return result.policy


def _labels(obj: dict[str, Any], where: str) -> dict[str, str]:
    try:
        return labels.check_labels(obj["metadata"].get("labels"), f"{where}: metadata.labels")
    except labels.LabelError as exc:
        raise ConversionError(str(exc)) from None


def namespace_to_profile(ns: dict[str, Any]) -> Resource:
    """Profile ``kns.<name>``: allow in and out, labelsToApply ``pcns.<k>`` plus the name."""
    name, _ = meta(ns, "Namespace", namespaced=False)
    apply = {
        names.NAMESPACE_LABEL_PREFIX + k: v for k, v in _labels(ns, f"Namespace {name}").items()
    }
    apply[names.NAMESPACE_LABEL_PREFIX + names.NAME_LABEL] = name
    return {
        "apiVersion": API_VERSION,
        "kind": "Profile",
        "metadata": {"name": names.namespace_profile_name(name)},
        "spec": {
            "ingress": [{"action": "Allow", "source": {}, "destination": {}}],
            "egress": [{"action": "Allow", "source": {}, "destination": {}}],
            "labelsToApply": apply,
        },
    }


def service_account_to_profile(sa: dict[str, Any]) -> Resource:
    """Profile ``ksa.<ns>.<name>`` with labelsToApply ``pcsa.<k>`` plus the name (no rules)."""
    name, ns = meta(sa, "ServiceAccount", namespaced=True)
    apply = {
        names.SERVICE_ACCOUNT_LABEL_PREFIX + k: v
        for k, v in _labels(sa, f"ServiceAccount {ns}/{name}").items()
    }
    apply[names.SERVICE_ACCOUNT_LABEL_PREFIX + names.NAME_LABEL] = name
    return {
        "apiVersion": API_VERSION,
        "kind": "Profile",
        "metadata": {"name": names.service_account_profile_name(ns, name)},
        "spec": {"labelsToApply": apply},
    }


def pod_to_workload_labels(pod: dict[str, Any]) -> dict[str, str]:
    """The labels of a pod's WorkloadEndpoint: the pod's, then namespace, orchestrator, SA."""
    name, ns = meta(pod, "Pod", namespaced=True)
    out = _labels(pod, f"Pod {ns}/{name}")
    out[names.LABEL_NAMESPACE] = ns
    out[names.LABEL_ORCHESTRATOR] = names.ORCHESTRATOR_K8S
    spec = pod.get("spec") or {}
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if sa:
        out[names.LABEL_SERVICE_ACCOUNT] = str(sa)
    return out
