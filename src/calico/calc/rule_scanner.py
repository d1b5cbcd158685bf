"""RuleScanner: Calico v3 rule dicts -> dpapi Rules, and the IP sets those rules need.

Selectors become IP set IDs (a hash of the canonical selector text), named ports become named-port
IP set IDs (selector + protocol + port name), numeric ports and nets stay inline. Every error
names the field: ``ingress[2].destination.ports[0]: 'x:y' is not a port, range or name``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from calico import selector
from calico.calc import selectors as sels
from calico.dpapi import messages as m

ACTIONS = {"allow": "allow", "deny": "deny", "log": "log", "pass": "pass", "next-tier": "pass"}
PROTOCOLS = {
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp",
    "icmpv6": "ipv6-icmp",
    "sctp": "sctp",
    "udplite": "udplite",
}
PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}
PORT_PROTOCOLS = {"tcp", "udp", "sctp", "udplite"}


class RuleError(ValueError):
    """A rule field that cannot be converted (the message names the field and the value)."""


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


def _protocol(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 255:
            raise RuleError(f"{where}: protocol number {value} is not in 1-255")
        return PROTOCOL_NUMBERS.get(value, str(value))
    text = str(value).strip().lower()
    if text.isdigit():
        return _protocol(int(text), where)
    if text not in PROTOCOLS:
        raise RuleError(f"{where}: unknown protocol {value!r}")
    return PROTOCOLS[text]


def _port(value: Any, where: str) -> tuple[str | None, str | None]:
    """(numeric "80"/"1000-2000", port name): exactly one is set."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 65535:
            raise RuleError(f"{where}: port {value} is not in 0-65535")
        return str(value), None
    text = str(value).strip()
    if text.isdigit():
        return _port(int(text), where)
    if ":" in text:
        lo, _, hi = text.partition(":")
        if lo.isdigit() and hi.isdigit() and 0 <= int(lo) <= int(hi) <= 65535:
            return (f"{int(lo)}-{int(hi)}" if lo != hi else str(int(lo))), None
        raise RuleError(f"{where}: {value!r} is not a port range (first:last)")
    if text and all(c.isalnum() or c == "-" for c in text) and not text.isdigit():
        return None, text
    raise RuleError(f"{where}: {value!r} is not a port, range or name")


def _nets(values: Any, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str) or not isinstance(values, list):
        raise RuleError(f"{where}: expected a list of CIDRs, got {values!r}")
    out: list[str] = []
    for i, v in enumerate(values):
        try:
            out.append(str(ipaddress.ip_network(str(v), strict=False)))
        except ValueError as exc:
            raise RuleError(f"{where}[{i}]: {v!r} is not a CIDR") from exc
    return tuple(out)


def _icmp(value: Any, where: str) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    if not isinstance(value, dict):
        raise RuleError(f"{where}: expected {{type, code}}, got {value!r}")
    typ, code = value.get("type"), value.get("code")
    if typ is not None and not (isinstance(typ, int) and 0 <= typ <= 254):
        raise RuleError(f"{where}.type: {typ!r} is not in 0-254")
    if code is not None and not (isinstance(code, int) and 0 <= code <= 255):
        raise RuleError(f"{where}.code: {code!r} is not in 0-255")
    if code is not None and typ is None:
        raise RuleError(f"{where}.code: needs a type")
    return typ, code


class _Entity:
    """One side (source/destination) of a rule, scanned."""

    def __init__(
        self, raw: Any, where: str, *, namespace: str | None, protocol: str | None
    ) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RuleError(f"{where}: expected a mapping, got {raw!r}")
        self.specs: list[IPSetSpec] = []
        self.nets = _nets(raw.get("nets"), f"{where}.nets")
        self.not_nets = _nets(raw.get("notNets"), f"{where}.notNets")
        try:
            positive, negative = sels.rule_selectors(raw, namespace=namespace)
        except selector.SelectorError as exc:
            raise RuleError(f"{where}: bad selector: {exc}") from exc
        self.ipsets = self._net_set(positive)
        self.not_ipsets = self._net_set(negative)
        ports, named = self._ports(raw.get("ports"), f"{where}.ports", protocol)
        not_ports, not_named = self._ports(raw.get("notPorts"), f"{where}.notPorts", protocol)
        self.ports, self.not_ports = ports, not_ports
        self.named = self._named_sets(named, positive, protocol)
        self.not_named = self._named_sets(not_named, positive, protocol)

    def _net_set(self, sel: selector.Selector | None) -> tuple[str, ...]:
        if sel is None:
            return ()
        spec = IPSetSpec(m.IPSET_NET, sel)
        self.specs.append(spec)
        return (spec.id,)

    @staticmethod
    def _ports(
        values: Any, where: str, protocol: str | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if not values:
            return (), ()
        if not isinstance(values, list):
            raise RuleError(f"{where}: expected a list, got {values!r}")
        if protocol not in PORT_PROTOCOLS:
            raise RuleError(f"{where}: ports need protocol TCP, UDP, SCTP or UDPLite")
        nums: list[str] = []
        names: list[str] = []
        for i, v in enumerate(values):
            num, name = _port(v, f"{where}[{i}]")
            if num is not None:
                nums.append(num)
            elif name is not None:
                names.append(name)
        return tuple(nums), tuple(names)

    def _named_sets(
        self, names: tuple[str, ...], sel: selector.Selector | None, protocol: str | None
    ) -> tuple[str, ...]:
        out: list[str] = []
        for name in names:
            spec = IPSetSpec(m.IPSET_PORT, sel or selector.ALL, name, protocol)
            self.specs.append(spec)
            out.append(spec.id)
        return tuple(out)


def scan_rule(raw: Any, where: str, *, namespace: str | None) -> tuple[m.Rule, list[IPSetSpec]]:
    """One v3 rule -> (dpapi Rule, IP sets it uses)."""
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: expected a mapping, got {raw!r}")
    action = ACTIONS.get(str(raw.get("action", "")).lower())
    if action is None:
        raise RuleError(f"{where}.action: {raw.get('action')!r} is not Allow, Deny, Log or Pass")
    ip_version = raw.get("ipVersion")
    if ip_version not in (None, 4, 6):
        raise RuleError(f"{where}.ipVersion: {ip_version!r} is not 4 or 6")
    protocol = _protocol(raw.get("protocol"), f"{where}.protocol")
    not_protocol = _protocol(raw.get("notProtocol"), f"{where}.notProtocol")
    icmp_type, icmp_code = _icmp(raw.get("icmp"), f"{where}.icmp")
    not_icmp_type, not_icmp_code = _icmp(raw.get("notICMP"), f"{where}.notICMP")
    if (icmp_type is not None or not_icmp_type is not None) and protocol not in (
        "icmp",
        "ipv6-icmp",
    ):
        raise RuleError(f"{where}.icmp: needs protocol ICMP or ICMPv6")
    src = _Entity(raw.get("source"), f"{where}.source", namespace=namespace, protocol=protocol)
    dst = _Entity(
        raw.get("destination"), f"{where}.destination", namespace=namespace, protocol=protocol
    )
    rule = m.Rule(
        action=action,
        ip_version=ip_version,
        protocol=protocol,
        not_protocol=not_protocol,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        not_icmp_type=not_icmp_type,
        not_icmp_code=not_icmp_code,
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
    return rule, src.specs + dst.specs


def scan_rules(
    raws: Any, where: str, *, namespace: str | None
) -> tuple[tuple[m.Rule, ...], list[IPSetSpec]]:
    if raws is None:
        return (), []
    if not isinstance(raws, list):
        raise RuleError(f"{where}: expected a list of rules, got {raws!r}")
    rules: list[m.Rule] = []
    specs: list[IPSetSpec] = []
    for i, raw in enumerate(raws):
        rule, rule_specs = scan_rule(raw, f"{where}[{i}]", namespace=namespace)
        rules.append(rule)
        specs.extend(rule_specs)
    return tuple(rules), specs
