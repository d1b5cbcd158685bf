"""Renders dpapi rules and endpoint chains as nft rule text (pure; the managers' vocabulary).

Naming (Calico style, one table so names carry their role)::

    cali-pi-<policy> / cali-po-<policy>     policy ingress / egress rules
    cali-pri-<profile> / cali-pro-<profile> profile ingress / egress rules
    cali-tw-<iface> / cali-fw-<iface>       to / from workload (its ingress / egress)
    cali-th-<iface> / cali-fh-<iface>       to / from host endpoint (host traffic)
    cali-thfw- / cali-fhfw-                 host endpoint, forwarded traffic (applyOnForward)
    cali-fhdnat-                            host endpoint, preDNAT
    cali-thraw- / cali-fhraw-               host endpoint, doNotTrack (raw priority)
    cali40s-<id> / cali60s-<id>             selector IP sets (v4 / v6)
    cali40n-<id> / cali60n-<id>             named-port sets (ip . proto . port)

Verdicts travel back from policy chains in mark bits (as Felix does with iptables): a policy's
Allow sets ACCEPT and returns, Pass sets PASS and returns, Deny drops, Log logs and goes on.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

from calico.dpapi import messages as m

MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
MARK_UNTRACKED = 0x40000
MARK_ALL = MARK_ACCEPT | MARK_PASS | MARK_UNTRACKED
# The staged walk's verdict (flowlog_render): set before the real walk, read by the agent from
# the mark that later log messages of the same packet carry; never tested by a real rule.
MARK_STAGED_ALLOW = 0x80000
MARK_STAGED_DENY = 0x100000
MARK_STAGED = MARK_STAGED_ALLOW | MARK_STAGED_DENY
CLEAR_VERDICT = f"meta mark set meta mark & {0xFFFFFFFF & ~(MARK_ACCEPT | MARK_PASS):#x}"
IF_ACCEPTED = f"meta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x}"
IF_NOT_PASSED = f"meta mark & {MARK_PASS:#x} == 0"
LOG_PREFIX = "calico-packet"
MAX_NAME = 200


def chain_suffix(name: str) -> str:
    if len(name) <= MAX_NAME and all(c.isalnum() or c in "-_./" for c in name):
        return name
    return "_" + hashlib.sha256(name.encode()).hexdigest()[:24]


def policy_chain(pid: m.PolicyID, inbound: bool) -> str:
    return ("cali-pi-" if inbound else "cali-po-") + chain_suffix(str(pid))


def profile_chain(name: str, inbound: bool) -> str:
    return ("cali-pri-" if inbound else "cali-pro-") + chain_suffix(name)


def ipset_name(set_id: str, family: int) -> str:
    return f"cali{family}0{set_id}"


def comment(text: str, index: int | None = None) -> str:
    """A rule's comment: a hash of its content (drift shows without parsing the kernel's text),
    plus, in policy and profile chains, the index of the datastore rule it renders (``;r<i>``)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f'comment "cali:{digest}' + (f";r{index}" if index is not None else "") + '"'


def with_comment(text: str, index: int | None = None) -> str:
    return f"{text} {comment(text, index)}"


# ---- one rule -----------------------------------------------------------------------------------


def _set_expr(items: tuple[str, ...]) -> str:
    return "{ " + ", ".join(items) + " }"


def _family_nets(nets: tuple[str, ...], family: int) -> tuple[str, ...]:
    return tuple(n for n in nets if (":" in n) == (family == 6))


def _proto_matches(rule: m.Rule, family: int) -> list[str] | None:
    if rule.ip_version is not None and rule.ip_version != family:
        return None
    if (rule.protocol == "icmp" and family == 6) or (rule.protocol == "ipv6-icmp" and family == 4):
        return None
    out: list[str] = []
    if rule.protocol is not None:
        out.append(f"meta l4proto {rule.protocol}")
    if rule.not_protocol is not None:
        out.append(f"meta l4proto != {rule.not_protocol}")
    icmp = "icmp" if family == 4 else "icmpv6"
    if rule.icmp_type is not None:
        out.append(f"{icmp} type {rule.icmp_type}")
        if rule.icmp_code is not None:
            out.append(f"{icmp} code {rule.icmp_code}")
    if rule.not_icmp_type is not None:
        if rule.not_icmp_code is not None:
            out.append(
                f"{icmp} type . {icmp} code != {{ {rule.not_icmp_type} . {rule.not_icmp_code} }}"
            )
        else:
            out.append(f"{icmp} type != {rule.not_icmp_type}")
    return out


def _side(
    family: int,
    direction: str,  # "s" or "d"
    nets: tuple[str, ...],
    not_nets: tuple[str, ...],
    sets: tuple[str, ...],
    not_sets: tuple[str, ...],
) -> list[str] | None:
    ip = "ip" if family == 4 else "ip6"
    addr = f"{ip} {direction}addr"
    out: list[str] = []
    if nets:
        fam = _family_nets(nets, family)
        if not fam:
            return None  # only the other family's nets: cannot match this family
        out.append(f"{addr} {_set_expr(fam)}")
    fam_not = _family_nets(not_nets, family)
    if fam_not:
        out.append(f"{addr} != {_set_expr(fam_not)}")
    out.extend(f"{addr} @{ipset_name(s, family)}" for s in sets)
    out.extend(f"{addr} != @{ipset_name(s, family)}" for s in not_sets)
    return out


def _port_alternatives(
    family: int, direction: str, ports: tuple[str, ...], named: tuple[str, ...]
) -> list[str]:
    """Each alternative is one match; the rule matches if any does ([""]: no restriction)."""
    ip = "ip" if family == 4 else "ip6"
    alts: list[str] = []
    if ports:
        alts.append(f"th {direction}port {_set_expr(ports)}")
    for set_id in named:
        name = ipset_name(set_id, family)
        alts.append(f"{ip} {direction}addr . meta l4proto . th {direction}port @{name}")
    return alts or [""]


def _not_ports(
    family: int, direction: str, ports: tuple[str, ...], named: tuple[str, ...]
) -> list[str]:
    ip = "ip" if family == 4 else "ip6"
    out = [f"th {direction}port != {_set_expr(ports)}"] if ports else []
    for set_id in named:
        name = ipset_name(set_id, family)
        out.append(f"{ip} {direction}addr . meta l4proto . th {direction}port != @{name}")
    return out


def rule_matches(rule: m.Rule, family: int, *, guard: bool = False) -> list[str]:
    """The match texts of one dpapi rule in one family (one per port alternative; a text may be
    empty: matches everything); [] if the rule cannot match in this family.

    ``guard`` prefixes ``meta nfproto ipvN`` so the rule cannot match the other family (needed
    when the rule's meaning differs by family, e.g. notNets given for one family only).
    """
    proto = _proto_matches(rule, family)
    src = _side(
        family, "s", rule.src_nets, rule.not_src_nets, rule.src_ipset_ids, rule.not_src_ipset_ids
    )
    dst = _side(
        family, "d", rule.dst_nets, rule.not_dst_nets, rule.dst_ipset_ids, rule.not_dst_ipset_ids
    )
    if rule.never or proto is None or src is None or dst is None:
        return []
    base = ([f"meta nfproto ipv{family}"] if guard else []) + proto + src + dst
    base += _not_ports(family, "s", rule.not_src_ports, rule.not_src_named_port_ipset_ids)
    base += _not_ports(family, "d", rule.not_dst_ports, rule.not_dst_named_port_ipset_ids)
    src_alts = _port_alternatives(family, "s", rule.src_ports, rule.src_named_port_ipset_ids)
    dst_alts = _port_alternatives(family, "d", rule.dst_ports, rule.dst_named_port_ipset_ids)
    return [
        " ".join(p for p in (*base, s_alt, d_alt) if p)
        for s_alt, d_alt in itertools.product(src_alts, dst_alts)
    ]


def with_action(matches: str, action: str, index: int | None = None) -> str:
    """A rule: its matches, a counter and the action, with its comment."""
    return with_comment(" ".join(p for p in (matches, "counter", action) if p), index)


def render_rule(
    rule: m.Rule, family: int, action: str, *, guard: bool = False, index: int | None = None
) -> list[str]:
    """nft rule texts (with counter and action) for one dpapi rule in one family; [] if none."""
    return [with_action(t, action, index) for t in rule_matches(rule, family, guard=guard)]


def policy_action(action: str, *, log_prefix: str = LOG_PREFIX) -> str:
    if action == "allow":
        return f"meta mark set meta mark | {MARK_ACCEPT:#x} return"
    if action == "pass":
        return f"meta mark set meta mark | {MARK_PASS:#x} return"
    if action == "deny":
        return "drop"
    return f'log prefix "{log_prefix}: " level info'


# A log twin for rule ``i`` (flowlog_render): the statement to log with, or None.
Twin = Callable[[int, m.Rule], str | None]
Action = Callable[[str], str | None]  # a rule action -> nft statements (None: not rendered)


def rules_chain(
    rules: tuple[m.Rule, ...],
    *,
    log_prefix: str = LOG_PREFIX,
    twin: Twin | None = None,
    action: Action | None = None,
) -> tuple[str, ...]:
    """The body of a policy or profile chain: every rule, v4 then v6 forms, in order.

    ``twin(i, rule)`` gives the log statement of rule ``i``'s verdict point (flow logs): each of
    its nft rules is then preceded by a rule with the same matches and only that statement.
    ``action`` replaces the rule actions (the staged walk's shadow chains)."""
    out: list[str] = []
    for i, rule in enumerate(rules):
        act = (action or (lambda a: policy_action(a, log_prefix=log_prefix)))(rule.action)
        if act is None:
            continue
        stmt = twin(i, rule) if twin is not None else None
        v4 = rule_matches(rule, 4)
        v6 = rule_matches(rule, 6)
        if v4 == v6:
            forms = v4  # family-neutral: once
        else:
            forms = rule_matches(rule, 4, guard=True) + rule_matches(rule, 6, guard=True)
        for matches in forms:
            if stmt is not None:
                out.append(with_comment(" ".join(p for p in (matches, stmt) if p)))
            out.append(with_action(matches, act, i))
    return tuple(out)
