"""The text form of ``calicoctl explain``: the verdict and what decided it first, then each side
(egress at the source, ingress at the destination), tier by tier and policy by policy, with each
rule that was tried and why it did not match."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def decided(v: Doc) -> str:
    """What decided one verdict, in words."""
    by = v.get("by")
    counts = ""
    if "packets" in v:
        counts = f"  [{v['packets']} packets, {v['bytes']} bytes]"
    if by == "rule":
        return f"tier {v['tier']}, policy {v['policy']}, rule {v['rule']}: {v['rule_text']}{counts}"
    if by == "tier-default":
        return f"end of tier {v['tier']}: no policy decided, its defaultAction is Deny"
    if by == "profile":
        return f"profile {v['profile']}, rule {v['rule']}: {v['rule_text']}{counts}"
    if by == "no-profile":
        return "no policy and no profile allowed it (end of the endpoint's chain: drop)"
    if by == "failsafe":
        return f"a failsafe port ({v['chain']}: always allowed on host endpoints)"
    if by == "end-of-chain":
        return "no policy applies in this chain (it lets the packet go on)"
    return str(by)


def _word(action: str) -> str:
    return {"allow": "allowed", "deny": "DENIED", "none": "no verdict"}.get(action, action)


def _rules(lines: list[str], rules: list[Doc], indent: str) -> None:
    for r in rules:
        why = r["why"] if r["why"] else "matched"
        lines.append(f"{indent}rule {r['index']} {r['text']}: {why}")


def _stage(lines: list[str], st: Doc) -> None:
    lines.append(f"  chain {st['chain']} ({st['kind']}): {_word(st['verdict']['action'])}")
    for tier in st["tiers"]:
        lines.append(
            f"    tier {tier['tier']} (defaultAction {tier['default_action']}): {tier['outcome']}"
        )
        for pol in tier["policies"]:
            lines.append(f"      policy {pol['policy']}: {pol['outcome']}")
            _rules(lines, pol["rules"], "        ")
        if tier["skipped"]:
            lines.append(f"      not evaluated: {', '.join(tier['skipped'])}")
    for prof in st["profiles"]:
        lines.append(f"    profile {prof['profile']}: {prof['outcome']}")
        _rules(lines, prof["rules"], "      ")
    check = st["ruleset"]
    if not check.get("checked"):
        lines.append(f"    (not checked against the rendered chains: {check.get('reason')})")
    elif not check["agrees"]:
        lines.append(f"    WARNING: the rendered chains disagree: {'; '.join(check['problems'])}")


def _side(lines: list[str], title: str, ep: Doc, answer: Doc) -> None:
    v = answer["verdict"]
    lines.append("")
    lines.append(
        f"{title} at {ep['arg']} ({ep['kind']} {ep['name']}, node {answer['node']}): "
        f"{_word(v['action'])}"
    )
    for st in answer["stages"]:
        _stage(lines, st)
    lines.append(f"  => {_word(v['action'])} by {decided(v)}")
    if answer.get("programmed", {}).get("pending"):
        lines.append("  (the agent has changes it has not programmed yet: ask again shortly)")


def render(result: Doc) -> str:
    pkt = result["packet"]
    what = f"{pkt['protocol'].upper()} {pkt['src']} -> {pkt['dst']}"
    if pkt.get("port"):
        what += f" port {pkt['port']}"
    elif pkt.get("icmp_type") is not None:
        what += f" type {pkt['icmp_type']} code {pkt['icmp_code']}"
    src, dst = result["src"], result["dst"]
    lines = [f"{src['arg']} -> {dst['arg']} ({what}): {_word(result['verdict']).upper()}"]
    for direction, ep in (("egress", src), ("ingress", dst)):
        v = result[direction]["verdict"]
        if v["action"] != "allow" or result["verdict"] == "allow":
            lines.append(f"  {direction} at {ep['arg']}: {_word(v['action'])} by {decided(v)}")
    _side(lines, "egress", src, result["egress"])
    _side(lines, "ingress", dst, result["ingress"])
    return "\n".join(lines) + "\n"
