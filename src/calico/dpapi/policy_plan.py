"""Policy plans: what one endpoint chain evaluates, tier by tier, and a walk of it (pure).

The calculation graph sends each endpoint its :class:`~calico.dpapi.messages.TierInfo` list (the
tiers that have at least one policy selecting the endpoint, in tier order, each with its ordered
ingress and egress policies and its ``defaultAction``). :func:`chain_plan` turns that into the
plan of one chain (one direction, one kind of chain), which is exactly what the dataplane renders
(``dataplane.endpoint_manager``) and what :func:`evaluate` walks::

    ChainPlan(inbound, kind)
      steps: TierStep(tier, default_action, policies, end_drop) ...   only tiers with policies
      profiles: (profile, ...) | None                                  in this direction

Evaluation, as Calico's (Tier reference, "How policy is evaluated"): tiers in order; inside a
tier, policies in order, and inside a policy its rules in order (``Log`` goes on); ``Allow`` and
``Deny`` end evaluation; ``Pass`` skips the rest of the tier; when no rule of the tier matched
(or a policy passed) the tier's ``defaultAction`` applies: ``Deny`` drops, ``Pass`` goes on to
the next tier. A tier without a policy for this endpoint and direction is not in the plan at all.
After the last tier, the profiles (normal chains only; a profile's ``Pass`` goes on to the next
profile), and a drop when none allowed. PreDNAT and doNotTrack chains never apply a tier's
default drop (the normal chains still run later); forwarded traffic with no applyOnForward policy
is allowed.

``evaluate`` reports *where* the verdict came from (tier, policy, rule index, or the tier default,
or a profile), which is how the rule counters and ``explain`` map a rule back to its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from calico.dpapi import messages as m

NORMAL, FORWARD, PRE_DNAT, UNTRACKED = "normal", "forward", "prednat", "untracked"
DENY, PASS = "Deny", "Pass"


@dataclass(frozen=True, slots=True)
class TierStep:
    tier: str
    default_action: str  # "Deny" | "Pass"
    policies: tuple[m.PolicyID, ...]
    end_drop: bool  # the tier's default action drops here (Deny, on a normal/forward chain)


@dataclass(frozen=True, slots=True)
class ChainPlan:
    inbound: bool
    kind: str
    steps: tuple[TierStep, ...]
    profiles: tuple[str, ...] | None  # None: no profile stage (all but normal chains)


def chain_plan(
    tiers: tuple[m.TierInfo, ...],
    profiles: tuple[str, ...] | None,
    *,
    inbound: bool,
    kind: str = NORMAL,
) -> ChainPlan:
    steps = []
    for tier in tiers:
        pols = tier.ingress_policies if inbound else tier.egress_policies
        if not pols:
            continue  # no policy of this tier applies in this direction: skipped
        end_drop = kind in (NORMAL, FORWARD) and tier.default_action != PASS
        steps.append(TierStep(tier.name, tier.default_action, pols, end_drop))
    return ChainPlan(inbound, kind, tuple(steps), profiles if kind == NORMAL else None)


# ---- the walk -----------------------------------------------------------------------------

ALLOW, DROP, NONE = "allow", "deny", "none"
# Where a verdict came from.
BY_RULE, BY_TIER_DEFAULT, BY_PROFILE, BY_NO_PROFILE, BY_END = (
    "rule",
    "tier-default",
    "profile",
    "no-profile",
    "end-of-chain",
)

RuleHit = tuple[str, int] | None  # (first matching non-Log rule's action, its index) or None
PolicyHits = Callable[[m.PolicyID], RuleHit]
ProfileHits = Callable[[str], RuleHit]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The chain's verdict: ``allow``, ``deny``, or ``none`` (no verdict: a preDNAT or untracked
    chain lets the packet go on to the normal chains), and what decided it."""

    action: str
    by: str
    tier: str | None = None
    policy: m.PolicyID | None = None
    profile: str | None = None
    rule: int | None = None


def evaluate(plan: ChainPlan, policy_hit: PolicyHits, profile_hit: ProfileHits) -> Verdict:
    """Walk ``plan``; ``policy_hit(pid)`` / ``profile_hit(name)`` give the first rule of that
    policy or profile that matches the packet (``Log`` rules excluded), or None."""
    for step in plan.steps:
        passed = False
        for pid in step.policies:
            hit = policy_hit(pid)
            if hit is None:
                continue
            action, index = hit
            if action == "pass":
                passed = True
                break
            verdict = ALLOW if action == "allow" else DROP
            return Verdict(verdict, BY_RULE, tier=step.tier, policy=pid, rule=index)
        if not passed and step.end_drop:
            return Verdict(DROP, BY_TIER_DEFAULT, tier=step.tier)
    if plan.profiles is None:
        return Verdict(ALLOW if plan.kind == FORWARD else NONE, BY_END)
    for name in plan.profiles:
        hit = profile_hit(name)
        if hit is None or hit[0] == "pass":
            continue
        verdict = ALLOW if hit[0] == "allow" else DROP
        return Verdict(verdict, BY_PROFILE, profile=name, rule=hit[1])
    return Verdict(DROP, BY_NO_PROFILE)


def first_hit(rules: tuple[m.Rule, ...], matches: Callable[[m.Rule], bool]) -> RuleHit:
    """The first rule of ``rules`` (a policy's or profile's, one direction) that ``matches`` and
    is not a Log rule: its action and index (the ``;r<i>`` of its nft rule comments)."""
    for i, rule in enumerate(rules):
        if rule.action != "log" and not rule.never and matches(rule):
            return rule.action, i
    return None
