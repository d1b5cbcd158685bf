"""Typed resource values: what validation returns and what the agent's calculation graph consumes.

The model is the one parser of resource fields. :func:`calico.model.validation.parse` checks a
resource dict once and returns a :class:`Resource` whose ``spec`` is one of the frozen values below
(for the kinds the agent consumes: policies, profiles, endpoints, network sets; the other kinds keep
a normalized dict). ``to_json()`` renders a value in Calico's JSON shape: that rendering *is* what
``validate`` returns and what the datastore stores, so the stored form and the agent's view cannot
disagree.

Rendering is canonical: absent and ``null`` mean the same (nulls are dropped), a port range of one
port is a number, flags are written only when true, an empty list or mapping is dropped; a rule's
``source``/``destination`` and ``icmp``/``notICMP`` keep their presence (``{}`` stays ``{}``), so
what Kubernetes conversion writes validates to itself.

Values are NamedTuples: immutable and typed like frozen dataclasses, but about four times cheaper to
build, which matters because every write builds several per rule. The few opaque JSON parts (a
rule's ``http``/``metadata``, a resource's ``metadata``) are plain dicts: copied on render, never
to be mutated by a consumer.
"""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

from calico.model.kinds import API_VERSION

Obj = dict[str, Any]
ProtocolValue = str | int  # "TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite" or 0-255
Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON-shaped value (dicts, lists, scalars); faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


# ---- rules ---------------------------------------------------------------------------------------


class Port(NamedTuple):
    """A port match: one port (``first == last``), a range, or a named port (``name`` set)."""

    first: int = 0
    last: int = 0
    name: str = ""

    def to_json(self) -> int | str:
        if self.name:
            return self.name
        return self.first if self.first == self.last else f"{self.first}:{self.last}"


class ICMPMatch(NamedTuple):
    type: int | None = None
    code: int | None = None

    def to_json(self) -> Obj:
        out: Obj = {}
        if self.type is not None:
            out["type"] = self.type
        if self.code is not None:
            out["code"] = self.code
        return out


class ServiceAccountMatch(NamedTuple):
    names: tuple[str, ...] = ()
    selector: str = ""

    def to_json(self) -> Obj:
        out: Obj = {}
        if self.names:
            out["names"] = list(self.names)
        if self.selector:
            out["selector"] = self.selector
        return out


class EntityRule(NamedTuple):
    """A rule's source or destination. Selector texts are checked (``""``: none given)."""

    nets: tuple[str, ...] = ()  # normalized CIDRs
    not_nets: tuple[str, ...] = ()
    selector: str = ""
    not_selector: str = ""
    namespace_selector: str = ""
    ports: tuple[Port, ...] = ()
    not_ports: tuple[Port, ...] = ()
    service_accounts: ServiceAccountMatch | None = None

    def to_json(self) -> Obj:
        out: Obj = {}
        if self.nets:
            out["nets"] = list(self.nets)
        if self.not_nets:
            out["notNets"] = list(self.not_nets)
        for key, text in (
            ("selector", self.selector),
            ("notSelector", self.not_selector),
            ("namespaceSelector", self.namespace_selector),
        ):
            if text:
                out[key] = text
        if self.ports:
            out["ports"] = [p.to_json() for p in self.ports]
        if self.not_ports:
            out["notPorts"] = [p.to_json() for p in self.not_ports]
        if self.service_accounts is not None:
            out["serviceAccounts"] = self.service_accounts.to_json()
        return out


NO_ENTITY = EntityRule()


class Rule(NamedTuple):
    """One policy or profile rule. ``source``/``destination`` None: not given (matches all)."""

    action: str  # "Allow" | "Deny" | "Log" | "Pass"
    ip_version: int | None = None
    protocol: ProtocolValue | None = None
    not_protocol: ProtocolValue | None = None
    icmp: ICMPMatch | None = None
    not_icmp: ICMPMatch | None = None
    source: EntityRule | None = None
    destination: EntityRule | None = None
    http: Obj | None = None  # checked, carried, not enforced
    metadata: Obj | None = None

    def to_json(self) -> Obj:
        out: Obj = {"action": self.action}
        if self.ip_version is not None:
            out["ipVersion"] = self.ip_version
        if self.protocol is not None:
            out["protocol"] = self.protocol
        if self.not_protocol is not None:
            out["notProtocol"] = self.not_protocol
        if self.icmp is not None:
            out["icmp"] = self.icmp.to_json()
        if self.not_icmp is not None:
            out["notICMP"] = self.not_icmp.to_json()
        if self.source is not None:
            out["source"] = self.source.to_json()
        if self.destination is not None:
            out["destination"] = self.destination.to_json()
        if self.http is not None:
            out["http"] = copy_json(self.http)
        if self.metadata is not None:
            out["metadata"] = copy_json(self.metadata)
        return out


def _rules_json(out: Obj, key: str, rules: tuple[Rule, ...]) -> None:
    if rules:
        out[key] = [r.to_json() for r in rules]


# ---- policy kinds --------------------------------------------------------------------------------


class Policy(NamedTuple):
    """A NetworkPolicy or GlobalNetworkPolicy spec; ``types`` is always set (inferred if absent)."""

    types: tuple[str, ...]
    order: int | float | None = None
    selector: str = ""
    namespace_selector: str = ""  # GlobalNetworkPolicy only
    service_account_selector: str = ""
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    do_not_track: bool = False  # the three flags: GlobalNetworkPolicy only
    pre_dnat: bool = False
    apply_on_forward: bool = False
    tier: str = "default"  # spec.tier (absent = "default")
    staged_action: str = ""  # staged kinds only: "Set" | "Delete" ("" for the real kinds)

    @property
    def applies_ingress(self) -> bool:
        return "Ingress" in self.types

    @property
    def applies_egress(self) -> bool:
        return "Egress" in self.types

    def to_json(self) -> Obj:
        out: Obj = {"stagedAction": self.staged_action} if self.staged_action else {}
        if self.tier != "default":
            out["tier"] = self.tier
        if self.staged_action == "Delete":
            return out  # a staged delete is its tier and nothing else (Calico's rule)
        if self.order is not None:
            out["order"] = self.order
        for key, text in (
            ("selector", self.selector),
            ("namespaceSelector", self.namespace_selector),
            ("serviceAccountSelector", self.service_account_selector),
        ):
            if text:
                out[key] = text
        out["types"] = list(self.types)
        _rules_json(out, "ingress", self.ingress)
        _rules_json(out, "egress", self.egress)
        for key, flag in (
            ("doNotTrack", self.do_not_track),
            ("preDNAT", self.pre_dnat),
            ("applyOnForward", self.apply_on_forward),
        ):
            if flag:
                out[key] = True
        return out


class Tier(NamedTuple):
    """A Tier spec: ``order`` (None = after every ordered tier), ``defaultAction`` Deny | Pass."""

    order: int | float | None = None
    default_action: str = "Deny"

    def to_json(self) -> Obj:
        out: Obj = {} if self.order is None else {"order": self.order}
        out["defaultAction"] = self.default_action
        return out


class Profile(NamedTuple):
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    labels_to_apply: Labels = ()

    def to_json(self) -> Obj:
        out: Obj = {}
        _rules_json(out, "ingress", self.ingress)
        _rules_json(out, "egress", self.egress)
        if self.labels_to_apply:
            out["labelsToApply"] = dict(self.labels_to_apply)
        return out


class NetworkSet(NamedTuple):
    """A GlobalNetworkSet or NetworkSet spec."""

    nets: tuple[str, ...] = ()  # normalized CIDRs

    def to_json(self) -> Obj:
        return {"nets": list(self.nets)} if self.nets else {}


# ---- endpoints -----------------------------------------------------------------------------------


class NamedPort(NamedTuple):
    """An endpoint's named port, as rules refer to it (``protocol`` canonical: "TCP", 17, ...)."""

    name: str
    protocol: ProtocolValue
    port: int

    def to_json(self) -> Obj:
        return {"name": self.name, "protocol": self.protocol, "port": self.port}


def _ports_json(out: Obj, ports: tuple[NamedPort, ...]) -> None:
    if ports:
        out["ports"] = [p.to_json() for p in ports]


class WorkloadEndpoint(NamedTuple):
    # Identity strings as given ("" when absent).
    orchestrator: str = ""
    workload: str = ""
    node: str = ""
    container_id: str = ""
    pod: str = ""
    endpoint: str = ""
    service_account_name: str = ""
    interface_name: str = ""
    mac: str = ""
    ip_networks: tuple[str, ...] = ()  # normalized CIDRs
    allow_spoofed_source_prefixes: tuple[str, ...] = ()
    ip_nats: tuple[tuple[str, str], ...] = ()  # (internalIP, externalIP)
    ipv4_gateway: str = ""
    ipv6_gateway: str = ""
    profiles: tuple[str, ...] = ()
    ports: tuple[NamedPort, ...] = ()

    def to_json(self) -> Obj:
        out: Obj = {}
        for key, text in (
            ("orchestrator", self.orchestrator),
            ("workload", self.workload),
            ("node", self.node),
            ("containerID", self.container_id),
            ("pod", self.pod),
            ("endpoint", self.endpoint),
            ("serviceAccountName", self.service_account_name),
            ("interfaceName", self.interface_name),
            ("mac", self.mac),
            ("ipv4Gateway", self.ipv4_gateway),
            ("ipv6Gateway", self.ipv6_gateway),
        ):
            if text:
                out[key] = text
        for key, items in (
            ("ipNetworks", self.ip_networks),
            ("allowSpoofedSourcePrefixes", self.allow_spoofed_source_prefixes),
            ("profiles", self.profiles),
        ):
            if items:
                out[key] = list(items)
        if self.ip_nats:
            out["ipNATs"] = [{"internalIP": i, "externalIP": e} for i, e in self.ip_nats]
        _ports_json(out, self.ports)
        return out


class HostEndpoint(NamedTuple):
    node: str
    interface_name: str = ""  # "" = none given; "*" = all the host's interfaces
    expected_ips: tuple[str, ...] = ()  # normalized addresses
    profiles: tuple[str, ...] = ()
    ports: tuple[NamedPort, ...] = ()

    def to_json(self) -> Obj:
        out: Obj = {"node": self.node}
        if self.interface_name:
            out["interfaceName"] = self.interface_name
        if self.expected_ips:
            out["expectedIPs"] = list(self.expected_ips)
        if self.profiles:
            out["profiles"] = list(self.profiles)
        _ports_json(out, self.ports)
        return out


# ---- a whole resource ----------------------------------------------------------------------------

Spec = Policy | Profile | NetworkSet | WorkloadEndpoint | HostEndpoint | Tier | Obj
S = TypeVar("S", bound=Spec)


class Resource(NamedTuple, Generic[S]):
    """A validated resource: identity, labels, and its typed spec (a dict for kinds the agent does
    not consume). ``metadata`` is the normalized metadata (``namespace`` defaulted); it and
    ``extra`` may share nested values with the parsed input, so neither is to be mutated."""

    kind: str
    name: str
    namespace: str | None
    labels: Labels
    spec: S
    metadata: Obj
    extra: Obj  # top-level fields beside spec (``status``)

    def to_json(self) -> Obj:
        """The resource as stored: a fresh structure that shares nothing with this value or
        with what was parsed."""
        spec = self.spec
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": copy_json(self.metadata),
            "spec": copy_json(spec) if isinstance(spec, dict) else spec.to_json(),
            **copy_json(self.extra),
        }
