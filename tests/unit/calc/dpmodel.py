"""A model of the dataplane's verdict, computed from a dpapi state (no kernel): what the graph's
output *means*. Used to check policy cases against the calculation graph alone.

It follows the same contract the nft chains implement: per direction, the endpoint's ordered
policies (first matching rule decides; Pass skips to profiles; none decided: deny), or, when no
policy applies, its profiles (none allowed: deny). Host -> local workload is not policed.
"""

from __future__ import annotations

import ipaddress

from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState

PROTO_ICMP_ECHO = 8


def _in_nets(ip: str, nets: tuple[str, ...]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in ipaddress.ip_network(n) for n in nets)


def _port_in(port: int, ports: tuple[str, ...]) -> bool:
    for p in ports:
        lo, _, hi = p.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _side(state: DataplaneState, rule: m.Rule, ip: str, port: int, proto: str, src: bool) -> bool:
    p = "src" if src else "dst"
    nets, not_nets = getattr(rule, f"{p}_nets"), getattr(rule, f"not_{p}_nets")
    if nets and not _in_nets(ip, nets):
        return False
    if not_nets and _in_nets(ip, not_nets):
        return False
    for set_id in getattr(rule, f"{p}_ipset_ids"):
        if not _in_nets(ip, tuple(state.ipsets[set_id][1])):
            return False
    for set_id in getattr(rule, f"not_{p}_ipset_ids"):
        if _in_nets(ip, tuple(state.ipsets[set_id][1])):
            return False
    ports, named = getattr(rule, f"{p}_ports"), getattr(rule, f"{p}_named_port_ipset_ids")
    member = f"{ip},{proto},{port}"
    if (ports or named) and not (
        _port_in(port, ports) or any(member in state.ipsets[s][1] for s in named)
    ):
        return False
    if getattr(rule, f"not_{p}_ports") and _port_in(port, getattr(rule, f"not_{p}_ports")):
        return False
    return not any(
        member in state.ipsets[s][1] for s in getattr(rule, f"not_{p}_named_port_ipset_ids")
    )


def rule_matches(state: DataplaneState, rule: m.Rule, pkt: tuple[str, str, str, int]) -> bool:
    src, dst, proto, port = pkt
    if rule.protocol is not None and rule.protocol != proto:
        return False
    if rule.not_protocol is not None and rule.not_protocol == proto:
        return False
    if rule.icmp_type is not None and (proto != "icmp" or rule.icmp_type != PROTO_ICMP_ECHO):
        return False
    if rule.not_icmp_type is not None and proto == "icmp" and rule.not_icmp_type == PROTO_ICMP_ECHO:
        return False
    sport = 40000
    return _side(state, rule, src, sport, proto, True) and _side(
        state, rule, dst, port, proto, False
    )


def _rules_verdict(
    state: DataplaneState, rules: tuple[m.Rule, ...], pkt: tuple[str, str, str, int]
) -> str | None:
    for rule in rules:
        if rule_matches(state, rule, pkt):
            if rule.action == "log":
                continue
            return rule.action
    return None


def endpoint_allows(
    state: DataplaneState, ep: m.WorkloadEndpoint, inbound: bool, pkt: tuple[str, str, str, int]
) -> bool:
    pols = [pid for t in ep.tiers for pid in (t.ingress_policies if inbound else t.egress_policies)]
    if pols:
        passed = False
        for pid in pols:
            pol = state.policies[pid]
            verdict = _rules_verdict(
                state, pol.inbound_rules if inbound else pol.outbound_rules, pkt
            )
            if verdict == "allow":
                return True
            if verdict == "deny":
                return False
            if verdict == "pass":
                passed = True
                break
        if not passed:
            return False
    for name in ep.profile_ids:
        prof = state.profiles[name]
        verdict = _rules_verdict(state, prof.inbound_rules if inbound else prof.outbound_rules, pkt)
        if verdict == "allow":
            return True
        if verdict == "deny":
            return False
    return False


def allowed(state: DataplaneState, src_ip: str, dst_ip: str, proto: str, port: int) -> bool:
    pkt = (src_ip, dst_ip, proto, port)
    by_ip = {n.split("/")[0]: ep for ep in state.workload_endpoints.values() for n in ep.ipv4_nets}
    src_ep, dst_ep = by_ip.get(src_ip), by_ip.get(dst_ip)
    if src_ep is not None and not endpoint_allows(state, src_ep, False, pkt):
        return False
    return dst_ep is None or endpoint_allows(state, dst_ep, True, pkt)
