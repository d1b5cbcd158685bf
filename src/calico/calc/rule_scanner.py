"""RuleScanner: the model's typed rules (``calico.model.values.Rule``) -> dpapi Rules, and the IP
sets those rules need.

No parsing happens here: the model checked every field (``calico.model.rules``). This module only
maps values onto the dataplane's vocabulary. Selectors become IP set IDs (a hash of the canonical
selector text), named ports become named-port IP set IDs (selector + protocol + port name),
numeric ports (``"80"``, ``"1000-2000"``) and nets stay inline, protocols become nft names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from calico import selector
from calico.calc import selectors as sels
from calico.dpapi import messages as m
from calico.model import values

ACTIONS = {"Allow": "allow", "Deny": "deny", "Log": "log", "Pass": "pass"}
PROTOCOLS = {
    "TCP": "tcp",
    "UDP": "udp",
    "ICMP": "icmp",
    "ICMPv6": "ipv6-icmp",
    "SCTP": "sctp",
    "UDPLite": "udplite",
}
PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}


@dataclass(frozen=True, slots=True)
class IPSetSpec:
    """What an IP set holds: addresses (kind net) or ip,proto,port (kind port) of matches."""

    kind: str
    selector: selector.Selector
    port_name: str | None = None
    protocol: str | None = None

    @property
    def id(self) -> str:
        text = f"{self.kind}|{self.selector}|{self.port_name}|{self.protocol}"
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        return ("s-" if self.kind == m.IPSET_NET else "n-") + digest


def protocol_name(value: values.ProtocolValue | None) -> str | None:
    """The nft name of a model protocol ("TCP" -> "tcp", 58 -> "ipv6-icmp", 47 -> "47")."""
    if value is None:
        return None
    if isinstance(value, int):
        return PROTOCOL_NUMBERS.get(value, str(value))
    return PROTOCOLS[value]


def _port_text(port: values.Port) -> str:
    return str(port.first) if port.first == port.last else f"{port.first}-{port.last}"


class _Entity:
    """One side (source/destination) of a rule, scanned."""

    def __init__(
        self, entity: values.EntityRule, *, namespace: str | None, protocol: str | None
    ) -> None:
        self.specs: list[IPSetSpec] = []
        self.nets = entity.nets
        self.not_nets = entity.not_nets
        positive, negative = sels.rule_selectors(entity, namespace=namespace)
        self.ipsets = self._net_set(positive)
        self.not_ipsets = self._net_set(negative)
        self.ports = tuple(_port_text(p) for p in entity.ports if not p.name)
        self.not_ports = tuple(_port_text(p) for p in entity.not_ports if not p.name)
        self.named = self._named_sets(entity.ports, positive, protocol)
        self.not_named = self._named_sets(entity.not_ports, positive, protocol)

    def _net_set(self, sel: selector.Selector | None) -> tuple[str, ...]:
        if sel is None:
            return ()
        spec = IPSetSpec(m.IPSET_NET, sel)
        self.specs.append(spec)
        return (spec.id,)

    def _named_sets(
        self, ports: tuple[values.Port, ...], sel: selector.Selector | None, protocol: str | None
    ) -> tuple[str, ...]:
        out: list[str] = []
        for port in ports:
            if port.name:
                spec = IPSetSpec(m.IPSET_PORT, sel or selector.ALL, port.name, protocol)
                self.specs.append(spec)
                out.append(spec.id)
        return tuple(out)


def scan_rule(rule: values.Rule, *, namespace: str | None) -> tuple[m.Rule, list[IPSetSpec]]:
    """One model rule -> (dpapi Rule, IP sets it uses)."""
    protocol = protocol_name(rule.protocol)
    icmp = rule.icmp or values.ICMPMatch()
    not_icmp = rule.not_icmp or values.ICMPMatch()
    src = _Entity(rule.source or values.NO_ENTITY, namespace=namespace, protocol=protocol)
    dst = _Entity(rule.destination or values.NO_ENTITY, namespace=namespace, protocol=protocol)
    out = m.Rule(
        action=ACTIONS[rule.action],
        ip_version=rule.ip_version,
        protocol=protocol,
        not_protocol=protocol_name(rule.not_protocol),
        icmp_type=icmp.type,
        icmp_code=icmp.code,
        not_icmp_type=not_icmp.type,
        not_icmp_code=not_icmp.code,
        src_nets=src.nets,
        not_src_nets=src.not_nets,
        src_ipset_ids=src.ipsets,
        not_src_ipset_ids=src.not_ipsets,
        src_ports=src.ports,
        not_src_ports=src.not_ports,
        src_named_port_ipset_ids=src.named,
        not_src_named_port_ipset_ids=src.not_named,
        dst_nets=dst.nets,
        not_dst_nets=dst.not_nets,
        dst_ipset_ids=dst.ipsets,
        not_dst_ipset_ids=dst.not_ipsets,
        dst_ports=dst.ports,
        not_dst_ports=dst.not_ports,
        dst_named_port_ipset_ids=dst.named,
        not_dst_named_port_ipset_ids=dst.not_named,
    )
    return out, src.specs + dst.specs


def scan_rules(
    rules: tuple[values.Rule, ...], *, namespace: str | None
) -> tuple[tuple[m.Rule, ...], list[IPSetSpec]]:
    out: list[m.Rule] = []
    specs: list[IPSetSpec] = []
    for rule in rules:
        scanned, rule_specs = scan_rule(rule, namespace=namespace)
        out.append(scanned)
        specs.extend(rule_specs)
    return tuple(out), specs
