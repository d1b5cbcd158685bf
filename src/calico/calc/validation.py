"""ValidationFilter: datastore resource dicts -> the calculation graph's records.

Parsing is the model's (``calico.model.validation.parse``, the same checks calicoctl and every
datastore writer run): this module maps the typed values onto the graph's records (``Item``,
``PolicyData``, ``ProfileData``). A resource the model rejects, or one the agent does not support
(a host endpoint without an interface, or the ``"*"`` wildcard), raises :class:`InvalidResource`
naming the field and value; the graph then treats it as absent, so one bad object never stops the
graph and never half-applies: its previous version is withdrawn too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from calico import selector
from calico.calc import rule_scanner
from calico.calc import selectors as sels
from calico.dpapi import flows
from calico.dpapi import messages as m
from calico.k8s import conversion, names
from calico.model import tiers, values
from calico.model import validation as model

WEP, HEP, NETSET = "wep", "hep", "netset"


class InvalidResource(ValueError):
    """A resource the graph cannot use; the message names the field."""


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    protocol: str  # nft name: "tcp", "udp", "sctp"
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
    tier: str = tiers.DEFAULT
    staged_action: str = ""  # staged policies: "Set" | "Delete"

    @property
    def enforced_id(self) -> m.PolicyID:
        """The policy this one stages (itself for a real policy)."""
        if not self.staged_action:
            return self.id
        return m.PolicyID(self.id.namespace, self.id.name.removeprefix(flows.STAGED_PREFIX))

    def sort_key(self) -> tuple[bool, float, str]:
        """Order within its tier: by ``order`` (absent last), then by name (a staged policy
        sorts as the policy it stages would)."""
        return (self.order is None, self.order or 0.0, str(self.enforced_id))


@dataclass(frozen=True, slots=True)
class TierData:
    name: str
    order: float | None
    default_action: str

    def sort_key(self) -> tuple[bool, float, str]:
        return tiers.sort_key(self.name, self.order)


def builtin_tier(name: str) -> TierData | None:
    """A built-in tier as Calico fixes it (used while the datastore has no such Tier)."""
    fixed = tiers.BUILT_IN.get(name)
    return TierData(name, fixed[0], fixed[1]) if fixed else None


def _parse(obj: Any, spec_type: type[model.TypedSpec]) -> values.Resource[model.TypedSpec]:
    try:
        return model.parse_as(obj, spec_type)
    except model.ValidationError as exc:
        # The graph's log line names the resource already: keep "field: reason (value)".
        raise InvalidResource(str(exc).removeprefix(f"{exc.resource}: ")) from None


def _named_ports(ports: tuple[values.NamedPort, ...]) -> tuple[NamedPort, ...]:
    out = []
    for p in ports:
        proto = rule_scanner.protocol_name(p.protocol)
        assert proto is not None  # the model requires a protocol
        out.append(NamedPort(p.name, proto, p.port))
    return tuple(out)


def _interned(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Sorted label pairs, interned: one copy of "app"/"web" for all endpoints (the agent holds
    every endpoint of the cluster), and none pinning the decoded document it came from."""
    return tuple(sorted((sys.intern(k), sys.intern(v)) for k, v in labels.items()))


def _names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sys.intern(n) for n in names)


def _host_net(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def workload_endpoint(item_id: str, namespace: str, obj: Any) -> Item:
    res = _parse(obj, values.WorkloadEndpoint)
    spec = res.spec
    labels = dict(res.labels)
    labels.setdefault(sels.NAMESPACE_LABEL, namespace)
    if spec.orchestrator:
        labels.setdefault(sels.ORCHESTRATOR_LABEL, spec.orchestrator)
    return Item(
        id=item_id,
        kind=WEP,
        labels=_interned(labels),
        parents=_names(spec.profiles),
        nets=spec.ip_networks,
        ports=_named_ports(spec.ports),
        node=sys.intern(spec.node),
        iface=spec.interface_name or None,
        mac=spec.mac or None,
    )


def host_endpoint(item_id: str, obj: Any) -> Item:
    res = _parse(obj, values.HostEndpoint)
    spec = res.spec
    if not spec.interface_name or spec.interface_name == "*":
        raise InvalidResource(
            f"spec.interfaceName: {spec.interface_name or None!r} is not supported by this agent "
            "(host endpoints need one named interface)"
        )
    return Item(
        id=item_id,
        kind=HEP,
        labels=_interned(dict(res.labels)),
        parents=_names(spec.profiles),
        nets=tuple(_host_net(ip) for ip in spec.expected_ips),
        ports=_named_ports(spec.ports),
        node=spec.node,
        iface=spec.interface_name,
    )


def network_set(item_id: str, namespace: str | None, obj: Any) -> Item:
    res = _parse(obj, values.NetworkSet)
    labels = dict(res.labels)
    if namespace:
        labels.setdefault(sels.NAMESPACE_LABEL, namespace)
    return Item(id=item_id, kind=NETSET, labels=_interned(labels), nets=res.spec.nets)


def profile(name: str, obj: Any) -> ProfileData:
    spec = _parse(obj, values.Profile).spec
    inbound, s1 = rule_scanner.scan_rules(spec.ingress, namespace=None)
    outbound, s2 = rule_scanner.scan_rules(spec.egress, namespace=None)
    return ProfileData(
        name=name,
        labels_to_apply=spec.labels_to_apply,
        profile=m.Profile(inbound_rules=inbound, outbound_rules=outbound),
        specs=tuple(s1 + s2),
    )


def tier(name: str, obj: Any) -> TierData:
    spec = _parse(obj, values.Tier).spec
    order = float(spec.order) if spec.order is not None else None
    return TierData(name=name, order=order, default_action=spec.default_action)


def staged_id(kind: str, namespace: str | None, name: str) -> m.PolicyID:
    """The dataplane id of a staged policy: its enforced counterpart's name, ``staged:``-prefixed
    (a StagedKubernetesNetworkPolicy stages ``knp.default.<name>``)."""
    if kind == "StagedKubernetesNetworkPolicy":
        name = names.policy_name(name)
    return m.PolicyID(namespace, flows.STAGED_PREFIX + name)


def staged_kubernetes_policy(pid: m.PolicyID, obj: Any) -> PolicyData:
    """A StagedKubernetesNetworkPolicy: checked and converted as the controllers convert the
    Kubernetes NetworkPolicy it stages (strict: a rule that does not convert makes it invalid)."""
    spec = _parse_k8s_staged(obj)
    action = spec["stagedAction"]
    if action == "Delete":
        empty = values.Policy(types=(), staged_action="Delete")
        return _policy_data(pid, empty)
    np = {
        "metadata": {"name": obj["metadata"]["name"], "namespace": pid.namespace},
        "spec": {k: v for k, v in spec.items() if k != "stagedAction"},
    }
    try:
        converted = conversion.network_policy_to_calico(np)
    except conversion.ConversionError as exc:
        raise InvalidResource(str(exc).removesuffix(" (rule dropped)")) from None
    converted["kind"] = "NetworkPolicy"
    real = _parse(converted, values.Policy).spec
    return _policy_data(pid, real._replace(staged_action=action))


def _parse_k8s_staged(obj: Any) -> dict[str, Any]:
    try:
        res = model.parse(obj)
    except model.ValidationError as exc:
        raise InvalidResource(str(exc).removeprefix(f"{exc.resource}: ")) from None
    assert isinstance(res.spec, dict)
    return res.spec


def policy(pid: m.PolicyID, obj: Any) -> PolicyData:
    return _policy_data(pid, _parse(obj, values.Policy).spec)


def _policy_data(pid: m.PolicyID, spec: values.Policy) -> PolicyData:
    ns = pid.namespace
    sel = sels.policy_selector(
        spec.selector,
        namespace=ns,
        ns_selector=spec.namespace_selector,
        sa_selector=spec.service_account_selector,
    )
    ingress, egress = spec.applies_ingress, spec.applies_egress
    inbound, s1 = rule_scanner.scan_rules(spec.ingress if ingress else (), namespace=ns)
    outbound, s2 = rule_scanner.scan_rules(spec.egress if egress else (), namespace=ns)
    return PolicyData(
        id=pid,
        order=float(spec.order) if spec.order is not None else None,
        selector=sel,
        ingress=ingress,
        egress=egress,
        policy=m.Policy(
            inbound_rules=inbound,
            outbound_rules=outbound,
            untracked=spec.do_not_track,
            pre_dnat=spec.pre_dnat,
            apply_on_forward=spec.apply_on_forward,
        ),
        specs=tuple(s1 + s2),
        tier=spec.tier,
        staged_action=spec.staged_action,
    )
