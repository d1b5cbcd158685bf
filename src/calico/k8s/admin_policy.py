"""AdminNetworkPolicy / BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) -> Calico.

    AdminNetworkPolicy N           -> GlobalNetworkPolicy kanp.kube-admin.N, tier kube-admin,
                                      order = spec.priority
    BaselineAdminNetworkPolicy default -> GlobalNetworkPolicy kbanp.kube-baseline.default,
                                      tier kube-baseline, order 1000

The tiers are Calico's (``kube-admin``: order 1,000, defaultAction Pass, before ``default``;
``kube-baseline``: 10,000,000, Pass, after it), so an ANP Allow/Deny ends evaluation, its Pass
hands the packet to the NetworkPolicies (``default`` tier), and the BANP only sees what no
NetworkPolicy decided (a pod a NetworkPolicy selects never gets past ``default``'s Deny).

Shape, as Calico converts them: the subject's namespaces become the policy's
``namespaceSelector`` (``all()`` when empty or when the subject is ``pods`` without one), its pods
become ``selector`` (``projectcalico.org/orchestrator == 'k8s'`` plus the pod terms); each rule
becomes one Calico rule per (protocol, peer), protocols sorted, the ports of one protocol merged
into ranges (a port without protocol is TCP); a ``namespaces`` peer is a ``namespaceSelector``, a
``pods`` peer a ``namespaceSelector`` (``all()`` when empty) and a ``selector``, a ``networks``
peer ``nets``; the rule's name is kept in the Calico rule's ``metadata.annotations.name``;
``types`` list the directions that have rules. A ``namedPort`` names a container port whatever
its protocol, so it is matched for TCP, UDP and SCTP (exactly the pods' port of that name).

Unsupported or unconvertible parts are never widened, as the API asks ("fail closed"): a rule
that cannot be converted (a ``nodes`` or ``domainNames`` peer the dataplane cannot honour, a peer
with no or several fields, a bad port, a named port with ``networks``) is dropped if it is an
Allow and replaced by a Deny-everything rule if it is a Deny or Pass; each one is reported in
``problems``. A policy-level problem (metadata, subject, priority, an unknown spec field, a BANP
not named ``default``) raises :class:`~calico.k8s.conversion.ConversionError`.
"""

from __future__ import annotations

from typing import Any

from calico.k8s import conversion, names
from calico.k8s.conversion import ConversionError, PolicyConversion
from calico.model import fields, values

GROUP_VERSION = "policy.networking.k8s.io/v1alpha1"
ANP, BANP = "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"
BANP_NAME = "default"  # the singleton's only allowed name
BANP_ORDER = 1000  # Calico: the BANP is ordered as if it had order 1,000 in its tier
ANP_ACTIONS = ("Allow", "Deny", "Pass")
BANP_ACTIONS = ("Allow", "Deny")
MAX_PRIORITY = 1000
DENY_ALL: dict[str, Any] = {"action": "Deny"}

Resource = dict[str, Any]


class _RuleFailed(ValueError):
    """One rule cannot be converted exactly; the message says why."""


def _name(obj: Any, kind: str) -> str:
    name, _ = conversion.meta(obj, kind, namespaced=False)
    return name


def _subject(subject: Any, where: str) -> tuple[str, str]:
    """(selector, namespaceSelector) for a subject: exactly one of ``namespaces`` / ``pods``."""
    if not isinstance(subject, dict) or len(subject) != 1 or set(subject) - {"namespaces", "pods"}:
        raise ConversionError(
            f"{where}: exactly one of namespaces or pods must be set, got {subject!r:.200}"
        )
    if "namespaces" in subject:
        ns_sel = conversion.selector_text(subject["namespaces"], f"{where}.namespaces", pod=False)
        return conversion.selector_text({}, where, pod=True), ns_sel
    pods = subject["pods"]
    if not isinstance(pods, dict) or set(pods) - {"namespaceSelector", "podSelector"}:
        raise ConversionError(
            f"{where}.pods: want {{namespaceSelector, podSelector}}, got {pods!r}"
        )
    return (
        conversion.selector_text(
            pods.get("podSelector") or {}, f"{where}.pods.podSelector", pod=True
        ),
        conversion.selector_text(
            pods.get("namespaceSelector") or {}, f"{where}.pods.namespaceSelector", pod=False
        ),
    )


def _peer(peer: Any, where: str, *, egress: bool) -> dict[str, Any]:
    """The EntityRule fields of one peer; _RuleFailed for anything not honoured exactly."""
    supported = ("namespaces", "pods", "networks") if egress else ("namespaces", "pods")
    if not isinstance(peer, dict) or len(peer) != 1:
        raise _RuleFailed(f"{where}: exactly one peer field must be set, got {peer!r:.200}")
    ((key, value),) = peer.items()
    if key not in supported:
        raise _RuleFailed(
            f"{where}.{key}: peer type {key!r} is not supported by this dataplane "
            f"(supported: {', '.join(supported)})"
        )
    try:
        if key == "namespaces":
            return {
                "namespaceSelector": conversion.selector_text(value, f"{where}.{key}", pod=False)
            }
        if key == "pods":
            sel, ns_sel = _subject({"pods": value}, where)
            return {"namespaceSelector": ns_sel, "selector": sel}
        nets = fields.seq(value, f"{where}.networks")
        if not nets:
            raise _RuleFailed(f"{where}.networks: must list at least one CIDR")
        return {"nets": [fields.cidr(n, f"{where}.networks[{i}]") for i, n in enumerate(nets)]}
    except (ConversionError, fields.FieldError) as exc:
        raise _RuleFailed(str(exc)) from None


def _port(port: Any, where: str) -> tuple[tuple[str, ...], values.Port]:
    """(protocols, port) of one AdminNetworkPolicyPort (exactly one field set)."""
    if not isinstance(port, dict) or len(port) != 1:
        raise _RuleFailed(f"{where}: exactly one of portNumber, portRange, namedPort, got {port!r}")
    ((key, value),) = port.items()
    if key == "namedPort":
        if not isinstance(value, str):
            raise _RuleFailed(f"{where}.namedPort: must be a string, got {value!r}")
        try:
            named = fields.port_match(value, f"{where}.namedPort")
        except fields.FieldError as exc:
            raise _RuleFailed(str(exc)) from None
        if not named.name:
            raise _RuleFailed(f"{where}.namedPort: invalid port name {value!r}")
        return conversion.PROTOCOLS, named
    if key not in ("portNumber", "portRange") or not isinstance(value, dict):
        raise _RuleFailed(f"{where}: unsupported port {port!r:.200}")
    proto = value.get("protocol") or "TCP"
    if proto not in conversion.PROTOCOLS:
        raise _RuleFailed(f"{where}.{key}.protocol: unsupported protocol {proto!r}")
    if key == "portNumber":
        num = value.get("port")
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 65535:
            raise _RuleFailed(f"{where}.portNumber.port: {num!r} is not a port 1-65535")
        return (proto,), values.Port(num, num)
    start, end = value.get("start"), value.get("end")
    ok = all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
    if not ok or not 1 <= start <= end <= 65535:  # type: ignore[operator]
        raise _RuleFailed(f"{where}.portRange: start {start!r} to end {end!r} is not a range")
    return (proto,), values.Port(start, end)  # type: ignore[arg-type]


def _rule(rule: Any, where: str, *, egress: bool, actions: tuple[str, ...]) -> list[Resource]:
    """The Calico rules for one ANP/BANP rule; _RuleFailed when it cannot be converted exactly."""
    peer_key = "to" if egress else "from"
    unknown = set(rule) - {"name", "action", peer_key, "ports"}
    if unknown:
        raise _RuleFailed(f"{where}: unsupported field(s) {sorted(unknown)}")
    raw_peers = rule.get(peer_key)
    if not isinstance(raw_peers, list) or not raw_peers:
        raise _RuleFailed(f"{where}.{peer_key}: must list at least one peer, got {raw_peers!r}")
    peers = [_peer(p, f"{where}.{peer_key}[{i}]", egress=egress) for i, p in enumerate(raw_peers)]
    by_proto: dict[str, list[values.Port]] = {}
    raw_ports = rule.get("ports")
    if raw_ports is not None:
        for i, raw in enumerate(fields.seq(raw_ports, f"{where}.ports")):
            protos, port = _port(raw, f"{where}.ports[{i}]")
            if port.name and any("nets" in p for p in peers):
                raise _RuleFailed(
                    f"{where}.ports[{i}].namedPort: a named port cannot be used with networks peers"
                )
            for name in protos:
                by_proto.setdefault(name, []).append(port)
    meta = {"metadata": {"annotations": {"name": rule["name"]}}} if rule.get("name") else {}
    out = []
    proto_list: list[str | None] = [*sorted(by_proto)] or [None]
    for proto in proto_list:  # one Calico rule per (protocol, peer), as for NetworkPolicy
        ports = {"ports": conversion.simplify_ports(by_proto[proto])} if proto else {}
        for peer in peers:
            calico: Resource = {"action": rule["action"], **meta}
            if proto:
                calico["protocol"] = proto
            if egress:
                calico["source"], calico["destination"] = {}, {**ports, **peer}
            else:
                calico["source"], calico["destination"] = dict(peer), ports
            out.append(calico)
    return out


def _rules(spec: dict[str, Any], where: str, *, egress: bool, actions: tuple[str, ...],
           problems: list[ConversionError]) -> list[Resource]:  # fmt: skip
    direction = "egress" if egress else "ingress"
    out: list[Resource] = []
    for i, rule in enumerate(fields.seq(spec.get(direction), f"{where}.{direction}")):
        at = f"{where}.{direction}[{i}]"
        action = rule.get("action") if isinstance(rule, dict) else None
        try:
            if action not in actions:
                raise _RuleFailed(f"{at}.action: {action!r} is not one of {', '.join(actions)}")
            out += _rule(rule, at, egress=egress, actions=actions)
        except _RuleFailed as exc:
            if action == "Allow":
                problems.append(ConversionError(f"{exc} (Allow rule dropped: matches nothing)"))
            else:  # Deny, Pass or unknown: fail closed, as the API asks
                problems.append(ConversionError(f"{exc} (rule replaced by Deny everything)"))
                out.append(dict(DENY_ALL))
    return out


def _convert(obj: Any, kind: str) -> PolicyConversion:
    name = _name(obj, kind)
    where = f"{kind} {name}: spec"
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ConversionError(f"{where}: must be an object, got {spec!r:.200}")
    allowed = {"subject", "ingress", "egress"} | ({"priority"} if kind == ANP else set())
    unknown = set(spec) - allowed
    if unknown:
        raise ConversionError(f"{where}: unsupported field(s) {sorted(unknown)}")
    if kind == BANP and name != BANP_NAME:
        raise ConversionError(
            f"{kind} {name}: metadata.name: must be {BANP_NAME!r} (the BaselineAdminNetworkPolicy "
            "is a singleton)"
        )
    order = priority(obj) if kind == ANP else BANP_ORDER
    selector, ns_selector = _subject(spec.get("subject"), f"{where}.subject")
    actions = ANP_ACTIONS if kind == ANP else BANP_ACTIONS
    problems: list[ConversionError] = []
    calico_spec: Resource = {
        "tier": names.KUBE_ADMIN_TIER if kind == ANP else names.KUBE_BASELINE_TIER,
        "order": order,
        "selector": selector,
        "namespaceSelector": ns_selector,
    }
    ingress = _rules(spec, where, egress=False, actions=actions, problems=problems)
    egress = _rules(spec, where, egress=True, actions=actions, problems=problems)
    # The directions that have rules (the tiers pass by default: nothing else to apply); with no
    # rules at all, Calico's defaulting (Ingress) so that the output validates to itself.
    types = [t for t, r in (("Ingress", ingress), ("Egress", egress)) if r]
    calico_spec["types"] = types or ["Ingress"]
    if ingress:
        calico_spec["ingress"] = ingress
    if egress:
        calico_spec["egress"] = egress
    policy_name = names.admin_policy_name(name) if kind == ANP else names.baseline_policy_name(name)
    policy = {
        "apiVersion": conversion.API_VERSION,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": policy_name},
        "spec": calico_spec,
    }
    return PolicyConversion(policy, problems)


def priority(anp: Any) -> int:
    """An AdminNetworkPolicy's ``spec.priority`` (0-1000), or ConversionError naming the value."""
    name = _name(anp, ANP)
    value = (anp.get("spec") or {}).get("priority") if isinstance(anp.get("spec"), dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise ConversionError(
            f"{ANP} {name}: spec.priority: {value!r} is not an integer 0-{MAX_PRIORITY}"
        )
    return value


def convert_admin_network_policy(anp: Any) -> PolicyConversion:
    """Lenient: unconvertible rules fail closed into ``problems``; policy-level errors raise."""
    return _convert(anp, ANP)


def convert_baseline_admin_network_policy(banp: Any) -> PolicyConversion:
    return _convert(banp, BANP)


def priority_conflicts(anps: list[Resource]) -> dict[str, list[str]]:
    """ANP name -> the other ANPs with the same ``spec.priority`` (only names that have some).
    Kubernetes lets them coexist (their order is implementation-defined); Calico orders them by
    name (the policy name is the tie-break), and they are reported."""
    by_priority: dict[int, list[str]] = {}
    for anp in anps:
        try:
            by_priority.setdefault(priority(anp), []).append(_name(anp, ANP))
        except ConversionError:
            continue  # reported by its own conversion
    out: dict[str, list[str]] = {}
    for group in by_priority.values():
        for name in group:
            others = sorted(n for n in group if n != name)
            if others:
                out[name] = others
    return out
