"""Explain one direction of a packet at one local endpoint, from what the dataplane programmed.

Nothing here is a second policy engine: the verdict is ``policy_plan.evaluate`` over the
endpoint chain's own plan (``EndpointManager.plans``: what its nft chain was rendered from),
with the policy rules the chains were rendered from (``PolicyManager``) matched against the IP
set elements as programmed (``rule_match``). The walk is only *instrumented*: every policy
``evaluate`` looks at is recorded with each rule it tried and why that rule did not match, and
grouped back into the plan's tiers. Then the same packet is run through the rendered chains
(``nft_trace.Interpreter`` over the table's desired state, ``ruleset``): the verdict and the
deciding rule must agree, and any difference is part of the answer (``agrees: false``) and logged.

Stages per endpoint and direction (``stages``)::

    workload egress   cali-fw-<iface>          workload ingress  cali-tw-<iface>
    host egress       cali-thraw-, cali-th-    host ingress      cali-fhraw-, cali-fhdnat-, cali-fh-

A doNotTrack stage that allows or denies ends the walk; a preDNAT stage that denies ends it (its
allow lets the normal chain run, as in the kernel); a chain with a failsafe jump whose failsafe
accepts the packet is allowed by the failsafe. Host endpoint stages are those of traffic to or
from the host itself (not forwarded traffic). The packet is a new flow (``ct state new``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from calico.dataplane import nft_render as r
from calico.dataplane import nft_trace, rule_match
from calico.dpapi import messages as m
from calico.dpapi import policy_plan as plan

logger = logging.getLogger(__name__)

WEP_STAGES = {"egress": ("cali-fw",), "ingress": ("cali-tw",)}
HEP_STAGES = {
    "egress": ("cali-thraw", "cali-th"),
    "ingress": ("cali-fhraw", "cali-fhdnat", "cali-fh"),
}
Counters = Callable[[str, int], tuple[int, int] | None]  # (policy chain, rule index) -> counts


@dataclass(frozen=True)
class Programmed:
    """What explain reads: the dataplane's programmed state (see the module docstring)."""

    plans: Mapping[str, plan.ChainPlan]
    policies: Mapping[m.PolicyID, m.Policy]
    profiles: Mapping[str, m.Profile]
    chains: Mapping[str, tuple[str, ...]]
    sets: Mapping[str, frozenset[str]]
    describe: rule_match.Describe = lambda set_id: None
    counters: Counters | None = None


# ---- the instrumented plan walk -----------------------------------------------------------


@dataclass
class _Looked:
    name: str
    hit: plan.RuleHit
    rules: list[dict[str, Any]]


def _try_rules(
    rules: tuple[m.Rule, ...], pkt: nft_trace.Packet, prog: Programmed
) -> tuple[plan.RuleHit, list[dict[str, Any]]]:
    """``policy_plan.first_hit`` (the decision), with each rule tried and why it missed."""
    tried: list[dict[str, Any]] = []
    misses: dict[int, str | None] = {}  # id(rule) -> why it does not match (None: it does)
    for i, rule in enumerate(rules):
        why = rule_match.why_not(rule, pkt, prog.sets, prog.describe)
        misses[id(rule)] = why
        note = why
        if why is None:
            note = "matched: logged, evaluation goes on" if rule.action == "log" else "matched"
        text = rule_match.rule_text(rule, prog.describe)
        tried.append(
            {"index": i, "action": rule.action, "text": text, "matched": why is None, "why": note}
        )
        if why is None and rule.action != "log":
            break

    def matches(rule: m.Rule) -> bool:
        return misses[id(rule)] is None

    return plan.first_hit(rules, matches), tried


def _policy_outcome(hit: plan.RuleHit) -> str:
    if hit is None:
        return "no rule matched: next policy"
    if hit[0] == "pass":
        return f"rule {hit[1]} Pass: rest of the tier skipped, next tier"
    return f"rule {hit[1]} {hit[0].capitalize()}: decides"


def _tier_record(
    step: plan.TierStep, looked: list[_Looked], verdict: plan.Verdict
) -> dict[str, Any]:
    decided = verdict.tier == step.tier and verdict.by == plan.BY_RULE
    passed = any(x.hit is not None and x.hit[0] == "pass" for x in looked)
    if decided:
        outcome = f"{verdict.action} by policy {verdict.policy} rule {verdict.rule}"
    elif passed:
        outcome = "pass: next tier"
    elif verdict.by == plan.BY_TIER_DEFAULT and verdict.tier == step.tier:
        outcome = "end of tier: defaultAction Deny, deny"
    elif step.default_action == plan.PASS:
        outcome = "end of tier: defaultAction Pass, next tier"
    else:
        outcome = "end of tier: no default drop in this kind of chain, next tier"
    names = {x.name for x in looked}
    return {
        "tier": step.tier,
        "default_action": step.default_action,
        "policies": [
            {"policy": x.name, "outcome": _policy_outcome(x.hit), "rules": x.rules} for x in looked
        ],
        "skipped": [str(p) for p in step.policies if str(p) not in names],
        "outcome": outcome,
    }


def walk(chain: plan.ChainPlan, pkt: nft_trace.Packet, prog: Programmed) -> dict[str, Any]:
    """``policy_plan.evaluate`` over ``chain``, recording every policy and profile looked at."""
    looked: list[tuple[str, _Looked]] = []  # ("policy" | "profile", record)

    def policy_hit(pid: m.PolicyID) -> plan.RuleHit:
        pol = prog.policies.get(pid)
        rules = () if pol is None else (pol.inbound_rules if chain.inbound else pol.outbound_rules)
        hit, tried = _try_rules(rules, pkt, prog)
        looked.append(("policy", _Looked(str(pid), hit, tried)))
        return hit

    def profile_hit(name: str) -> plan.RuleHit:
        prof = prog.profiles.get(name)
        rules = (
            () if prof is None else (prof.inbound_rules if chain.inbound else prof.outbound_rules)
        )
        hit, tried = _try_rules(rules, pkt, prog)
        looked.append(("profile", _Looked(name, hit, tried)))
        return hit

    verdict = plan.evaluate(chain, policy_hit, profile_hit)
    policies = [x for kind, x in looked if kind == "policy"]
    tiers = []
    for step in chain.steps:
        ids = {str(p) for p in step.policies}
        mine = [x for x in policies if x.name in ids]
        if mine:
            tiers.append(_tier_record(step, mine, verdict))
    profiles = [
        {"profile": x.name, "outcome": _profile_outcome(x.hit), "rules": x.rules}
        for kind, x in looked
        if kind == "profile"
    ]
    return {"verdict": _verdict(verdict, prog, chain), "tiers": tiers, "profiles": profiles}


def _profile_outcome(hit: plan.RuleHit) -> str:
    if hit is None:
        return "no rule matched: next profile"
    if hit[0] == "pass":
        return f"rule {hit[1]} Pass: next profile"
    return f"rule {hit[1]} {hit[0].capitalize()}: decides"


def _verdict(v: plan.Verdict, prog: Programmed, chain: plan.ChainPlan) -> dict[str, Any]:
    out: dict[str, Any] = {"action": v.action, "by": v.by}
    if v.tier is not None:
        out["tier"] = v.tier
    if v.policy is not None:
        out["policy"] = str(v.policy)
        pol = prog.policies[v.policy]
        rules = pol.inbound_rules if chain.inbound else pol.outbound_rules
        assert v.rule is not None
        out["rule"] = v.rule
        out["rule_text"] = rule_match.rule_text(rules[v.rule], prog.describe)
        _add_counts(out, r.policy_chain(v.policy, chain.inbound), v.rule, prog)
    if v.profile is not None:
        out["profile"] = v.profile
        out["rule"] = v.rule
        prof = prog.profiles[v.profile]
        rules = prof.inbound_rules if chain.inbound else prof.outbound_rules
        assert v.rule is not None
        out["rule_text"] = rule_match.rule_text(rules[v.rule], prog.describe)
        _add_counts(out, r.profile_chain(v.profile, chain.inbound), v.rule, prog)
    return out


def _add_counts(out: dict[str, Any], chain: str, rule: int, prog: Programmed) -> None:
    if prog.counters is None:
        return
    counts = prog.counters(chain, rule)
    if counts is not None:
        out["packets"], out["bytes"] = counts


# ---- the same packet through the rendered chains ------------------------------------------

POLICY_CHAINS = ("cali-pi-", "cali-po-", "cali-pri-", "cali-pro-")
TIER_CHAINS = ("cali-ti-", "cali-to-")


def _statement(rule: str) -> str:
    i = rule.find(' comment "')
    return rule[:i] if i >= 0 else rule


def _source_index(rule: str) -> int | None:
    i = rule.rfind(";r")
    return int(rule[i + 2 :].rstrip('"')) if i >= 0 else None


def decided_by(
    path: list[tuple[str, int]], chains: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """The rule of the rendered chains that decided: the last one on the path that ends the
    walk (a policy/profile rule other than Log, a tier's default drop, a final drop, a failsafe
    accept)."""
    for chain, i in reversed(path):
        text = chains[chain][i]
        stmt = _statement(text)
        if chain.startswith(POLICY_CHAINS) and " log prefix " not in stmt:
            return {"chain": chain, "rule": _source_index(text)}
        if stmt.endswith(" drop") and not stmt.startswith("ct state"):
            return {"chain": chain, "position": i}
        if chain.startswith("cali-failsafe-") and stmt.endswith(" accept"):
            return {"chain": chain, "position": i}
    return {}


def _nft_action(res: nft_trace.Result) -> str:
    if res.verdict == "drop":
        return plan.DROP
    if res.verdict == "accept" or res.mark & r.MARK_ACCEPT:
        return plan.ALLOW
    return plan.NONE


def _expected_chain(verdict: dict[str, Any], chain: plan.ChainPlan, name: str) -> str | None:
    by = verdict["by"]
    if by == plan.BY_RULE:
        return r.policy_chain(m.PolicyID(*_split(verdict["policy"])), chain.inbound)
    if by == plan.BY_PROFILE:
        return r.profile_chain(verdict["profile"], chain.inbound)
    if by == plan.BY_TIER_DEFAULT:
        prefix = TIER_CHAINS[0] if chain.inbound else TIER_CHAINS[1]
        return f"{prefix}{verdict['tier']}-"
    if by == plan.BY_NO_PROFILE:
        return name
    if by == "failsafe":
        return str(verdict["chain"])
    return None


def _split(pid: str) -> tuple[str | None, str]:
    ns, sep, name = pid.partition("/")
    return (ns, name) if sep else (None, pid)


def ruleset_check(
    name: str,
    chain: plan.ChainPlan,
    pkt: nft_trace.Packet,
    prog: Programmed,
    verdict: dict[str, Any],
) -> dict[str, Any]:
    """Run ``pkt`` through the rendered chain ``name``; does it agree with the plan walk?"""
    try:
        res = nft_trace.Interpreter(dict(prog.chains), dict(prog.sets)).run(name, pkt)
    except nft_trace.Unsupported as exc:
        return {"checked": False, "reason": str(exc)}
    action = _nft_action(res)
    decided = decided_by(res.path, prog.chains)
    problems = []
    if action != verdict["action"]:
        problems.append(f"the rendered chains say {action}, the plan walk {verdict['action']}")
    want = _expected_chain(verdict, chain, name)
    got = decided.get("chain", "")
    same_chain = got == want or (want is not None and want.endswith("-") and got.startswith(want))
    if want is not None and not same_chain:
        problems.append(f"decided in chain {got or '(none)'}, the plan walk says {want}")
    elif want is not None and "rule" in decided and decided["rule"] != verdict.get("rule"):
        problems.append(f"decided by rule {decided['rule']}, the plan walk says {verdict['rule']}")
    if problems:
        logger.error("explain: %s disagrees with its own ruleset: %s", name, "; ".join(problems))
    return {
        "checked": True,
        "verdict": action,
        "rules_traversed": res.rules,
        "decided_by": decided,
        "agrees": not problems,
        **({"problems": problems} if problems else {}),
    }


# ---- stages -------------------------------------------------------------------------------


def _failsafe_of(rules: tuple[str, ...]) -> str | None:
    for rule in rules:
        if rule.startswith("jump cali-failsafe-"):
            return rule.split()[1]
    return None


def stage(name: str, pkt: nft_trace.Packet, prog: Programmed) -> dict[str, Any]:
    chain = prog.plans[name]
    failsafe = _failsafe_of(prog.chains.get(name, ()))
    walked: dict[str, Any] | None = None
    if failsafe is not None:
        interp = nft_trace.Interpreter(dict(prog.chains), dict(prog.sets))
        if interp.run(failsafe, pkt).verdict == "accept":
            walked = {"verdict": {"action": plan.ALLOW, "by": "failsafe", "chain": failsafe},
                      "tiers": [], "profiles": []}  # fmt: skip
    if walked is None:
        walked = walk(chain, pkt, prog)
    check = ruleset_check(name, chain, pkt, prog, walked["verdict"])
    return {"chain": name, "kind": chain.kind, **walked, "ruleset": check}


def explain(
    endpoint: m.WorkloadEndpoint | m.HostEndpoint,
    direction: str,
    pkt: nft_trace.Packet,
    prog: Programmed,
) -> dict[str, Any]:
    """One direction at one endpoint: its stages in kernel order and the final verdict."""
    host = isinstance(endpoint, m.HostEndpoint)
    stems = (HEP_STAGES if host else WEP_STAGES)[direction]
    stages: list[dict[str, Any]] = []
    final: dict[str, Any] = {"action": plan.DROP, "by": "not-programmed"}
    for stem in stems:
        name = f"{stem}-{endpoint.iface}"
        if name not in prog.plans:
            continue
        st = stage(name, pkt, prog)
        stages.append(st)
        action = st["verdict"]["action"]
        if st["kind"] == plan.UNTRACKED and action != plan.NONE:
            final = st["verdict"]
            break
        if st["kind"] == plan.PRE_DNAT and action == plan.DROP:
            final = st["verdict"]
            break
        if st["kind"] in (plan.NORMAL, plan.FORWARD):
            final = st["verdict"]
            break
    return {
        "endpoint": {
            "kind": "HostEndpoint" if host else "WorkloadEndpoint",
            "name": endpoint.name,
            "iface": endpoint.iface,
        },
        "direction": direction,
        "verdict": final,
        "stages": stages,
        "agrees": all(st["ruleset"].get("agrees", True) for st in stages),
    }
