"""One compiled policy rule against one packet, with the reason it does not match (pure).

``why_not(rule, pkt, sets)`` is None when the ``dpapi.Rule`` matches ``pkt``, else the first
criterion that fails, in words ("source 10.65.0.4 is not selected by app == 'b'"). It reads the
IP sets as programmed (``NftTable.sets()``: the elements of ``cali40s-<id>`` / ``cali60n-<id>``)
and follows ``nft_render``'s meaning exactly, family by family: nets of the other family only
(the rule renders nothing for this family), notNets of the other family ignored, ``icmp`` on
IPv6 never, ports only for TCP/UDP/SCTP, a port list and named ports as alternatives. The
explain walk checks this against the rendered chains on every call (``explain.ruleset_check``),
so a difference between the two is reported, not hidden.

``rule_text(rule, describe)`` renders a rule for people; ``describe(set_id)`` names what an IP
set holds (the calculation graph's selector text), or None when unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from calico.dataplane import nft_render as r
from calico.dataplane import nft_trace
from calico.dataplane.nft_trace import Packet
from calico.dpapi import messages as m

Sets = Mapping[str, frozenset[str]]
Describe = Callable[[str], str | None]
PORT_PROTOCOLS = ("tcp", "udp", "sctp")
SIDES = {"s": "source", "d": "destination"}
PRE = {"s": "src", "d": "dst"}


def _family_nets(nets: tuple[str, ...], family: int) -> list[str]:
    return [n for n in nets if (":" in n) == (family == 6)]


def _in_nets(addr: str, nets: list[str] | frozenset[str]) -> bool:
    return nft_trace.in_nets(addr, nets)  # exact members, then cached prefixes


def _in_ports(port: int, items: tuple[str, ...]) -> bool:
    for item in items:
        lo, _, hi = item.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _what(set_id: str, describe: Describe) -> str:
    return describe(set_id) or f"IP set {set_id}"


def _icmp_why(rule: m.Rule, pkt: Packet) -> str | None:
    if rule.icmp_type is None and rule.not_icmp_type is None:
        return None
    is_icmp = pkt.proto == ("icmp" if pkt.family == 4 else "ipv6-icmp")
    if not is_icmp:  # nft's protocol dependency: no ICMP match (not even a negated one)
        return f"ICMP type/code match: packet is {pkt.proto}"
    ptype, pcode = pkt.icmp_type, pkt.icmp_code
    code_differs = rule.icmp_code is not None and pcode != rule.icmp_code
    if rule.icmp_type is not None and (ptype != rule.icmp_type or code_differs):
        code = f" code {rule.icmp_code}" if rule.icmp_code is not None else ""
        return f"ICMP type {rule.icmp_type}{code}: packet is {_icmp_desc(pkt)}"
    not_code_same = rule.not_icmp_code is None or pcode == rule.not_icmp_code
    if rule.not_icmp_type is not None and ptype == rule.not_icmp_type and not_code_same:
        return f"notICMP type {rule.not_icmp_type}: packet is {_icmp_desc(pkt)}"
    return None


def _icmp_desc(pkt: Packet) -> str:
    return f"ICMP type {pkt.icmp_type} code {pkt.icmp_code}"


def _proto_why(rule: m.Rule, pkt: Packet) -> str | None:
    fam = pkt.family
    if rule.ip_version is not None and rule.ip_version != fam:
        return f"ipVersion {rule.ip_version}: packet is IPv{fam}"
    if rule.protocol == "icmp" and fam == 6:
        return "protocol ICMP is IPv4's: packet is IPv6"
    if rule.protocol == "ipv6-icmp" and fam == 4:
        return "protocol ICMPv6 is IPv6's: packet is IPv4"
    if rule.protocol is not None and rule.protocol != pkt.proto:
        return f"protocol {rule.protocol}: packet is {pkt.proto}"
    if rule.not_protocol is not None and rule.not_protocol == pkt.proto:
        return f"notProtocol {rule.not_protocol}: packet is {pkt.proto}"
    return _icmp_why(rule, pkt)


def _side_why(rule: m.Rule, pkt: Packet, d: str, sets: Sets, describe: Describe) -> str | None:
    fam, side, pre = pkt.family, SIDES[d], PRE[d]
    addr = pkt.saddr if d == "s" else pkt.daddr
    nets, not_nets = getattr(rule, f"{pre}_nets"), getattr(rule, f"not_{pre}_nets")
    if nets:
        fam_nets = _family_nets(nets, fam)
        if not fam_nets:
            return f"{side} nets are all IPv{10 - fam}: packet is IPv{fam}"
        if not _in_nets(addr, fam_nets):
            return f"{side} {addr} is not in nets {', '.join(fam_nets)}"
    fam_not = _family_nets(not_nets, fam)
    if fam_not and _in_nets(addr, fam_not):
        return f"{side} {addr} is in notNets {', '.join(fam_not)}"
    for sid in getattr(rule, f"{pre}_ipset_ids"):
        if not _in_nets(addr, sets.get(r.ipset_name(sid, fam), frozenset())):
            return f"{side} {addr} is not selected by {_what(sid, describe)}"
    for sid in getattr(rule, f"not_{pre}_ipset_ids"):
        if _in_nets(addr, sets.get(r.ipset_name(sid, fam), frozenset())):
            return f"{side} {addr} is selected by notSelector {_what(sid, describe)}"
    return _ports_why(rule, pkt, d, sets, describe)


def _named_member(pkt: Packet, d: str, sid: str, sets: Sets) -> bool:
    addr, port = (pkt.saddr, pkt.sport) if d == "s" else (pkt.daddr, pkt.dport)
    members = sets.get(r.ipset_name(sid, pkt.family), frozenset())
    return f"{addr} . {pkt.proto} . {port}" in members


def _ports_why(rule: m.Rule, pkt: Packet, d: str, sets: Sets, describe: Describe) -> str | None:
    side, pre = SIDES[d], PRE[d]
    ports, named = getattr(rule, f"{pre}_ports"), getattr(rule, f"{pre}_named_port_ipset_ids")
    not_ports = getattr(rule, f"not_{pre}_ports")
    not_named = getattr(rule, f"not_{pre}_named_port_ipset_ids")
    port = pkt.sport if d == "s" else pkt.dport
    has_ports = pkt.proto in PORT_PROTOCOLS
    if ports or named:
        ok = has_ports and (
            _in_ports(port, ports) or any(_named_member(pkt, d, s, sets) for s in named)
        )
        if not ok:
            if not has_ports:
                return f"{side} ports given: a {pkt.proto} packet has none"
            wanted = [*ports, *(_what(s, describe) for s in named)]
            return f"{side} port {port} is not in {', '.join(wanted)}"
    if has_ports and _in_ports(port, not_ports):
        return f"{side} port {port} is in notPorts {', '.join(not_ports)}"
    for sid in not_named:
        if _named_member(pkt, d, sid, sets):
            return f"{side} port {port} is in notPorts {_what(sid, describe)}"
    return None


def why_not(rule: m.Rule, pkt: Packet, sets: Sets, describe: Describe) -> str | None:
    """None if ``rule`` matches ``pkt``; else why not (the first criterion that fails)."""
    if rule.never:
        return "never matches (its selector or nets cannot match this rule's family)"
    return (
        _proto_why(rule, pkt)
        or _side_why(rule, pkt, "s", sets, describe)
        or _side_why(rule, pkt, "d", sets, describe)
    )


# ---- text ----------------------------------------------------------------------------------


def _side_text(rule: m.Rule, d: str, describe: Describe) -> list[str]:
    pre = PRE[d]

    def get(attr: str) -> tuple[str, ...]:
        value: tuple[str, ...] = getattr(rule, attr)
        return value

    out = []
    for label, items in (
        ("nets", get(f"{pre}_nets")),
        ("notNets", get(f"not_{pre}_nets")),
        ("ports", get(f"{pre}_ports")),
        ("notPorts", get(f"not_{pre}_ports")),
    ):
        if items:
            out.append(f"{label} [{', '.join(items)}]")
    for label, ids in (
        ("selector", get(f"{pre}_ipset_ids")),
        ("notSelector", get(f"not_{pre}_ipset_ids")),
        ("ports", get(f"{pre}_named_port_ipset_ids")),
        ("notPorts", get(f"not_{pre}_named_port_ipset_ids")),
    ):
        out.extend(f"{label} {_what(sid, describe)}" for sid in ids)
    return out


@functools.lru_cache(maxsize=1 << 14)
def rule_text(rule: m.Rule, describe: Describe) -> str:
    """A rule for people (cached: a set id names its selector for good, being its hash)."""
    parts = [rule.action.capitalize()]
    if rule.ip_version is not None:
        parts.append(f"ipVersion {rule.ip_version}")
    if rule.protocol is not None:
        parts.append(f"protocol {rule.protocol}")
    if rule.not_protocol is not None:
        parts.append(f"notProtocol {rule.not_protocol}")
    if rule.icmp_type is not None:
        code = f" code {rule.icmp_code}" if rule.icmp_code is not None else ""
        parts.append(f"icmp type {rule.icmp_type}{code}")
    if rule.not_icmp_type is not None:
        code = f" code {rule.not_icmp_code}" if rule.not_icmp_code is not None else ""
        parts.append(f"notICMP type {rule.not_icmp_type}{code}")
    for d in ("s", "d"):
        side = _side_text(rule, d, describe)
        if side:
            parts.append(f"{SIDES[d]} {{{'; '.join(side)}}}")
    return ", ".join(parts)
