"""Endpoint chains and tier chains as nft rule text (pure): a ``policy_plan.ChainPlan`` rendered.

One endpoint chain per endpoint, direction and kind, and one *tier chain* per distinct tier step
(tier, direction, its ordered policies, whether its default drops), shared by every endpoint
whose step is the same::

    cali-tw-<iface>  (endpoint chain, e.g. a workload's ingress)
        ct state established,related accept ; ct state invalid drop     (tracked chains)
        [host endpoints: jump cali-failsafe-in|out]
        clear ACCEPT/PASS marks
        jump cali-ti-<tier A>-<digest> ; accepted? return             one pair per applicable
        jump cali-ti-<tier B>-<digest> ; accepted? return             tier, in tier order
        jump cali-pri-<profile> ; accepted? return ...                 (normal chains only)
        drop                                                           (no profile allowed)

    cali-ti-<tier>-<digest>  (tier chain; cali-to- for egress)
        clear PASS
        jump cali-pi-<policy 1> ; accepted? return                     Allow: ACCEPT + return
        not passed? jump cali-pi-<policy 2> ; accepted? return ...     Pass: skip the rest
        not passed? drop                                               defaultAction Deny only

A packet only meets the tiers that have a policy for its endpoint (the plan holds no others), so
its cost does not grow with tiers that do not apply to it; a change inside one tier makes a new
tier chain for that tier alone (the endpoint chain's jump moves), other tiers' chains are not
touched. Tier chain names carry the tier, and policy chain names the policy, so a rule's counter
maps back to tier / policy / rule index (``;r<i>`` in the policy chain's comments).
"""

from __future__ import annotations

import hashlib

from calico.dataplane import nft_render as r
from calico.dpapi import policy_plan as plan

CLEAR_PASS = f"meta mark set meta mark & {0xFFFFFFFF & ~r.MARK_PASS:#x}"
_ON_ALLOW = {
    plan.NORMAL: "return",
    plan.FORWARD: "return",
    plan.PRE_DNAT: "accept",
    plan.UNTRACKED: f"meta mark set meta mark | {r.MARK_UNTRACKED:#x} notrack accept",
}


def tier_chain_name(step: plan.TierStep, *, inbound: bool) -> str:
    """``cali-ti-<tier>-<digest>`` (ingress) / ``cali-to-...``: the digest covers all it holds."""
    text = "\n".join(
        [step.tier, step.default_action, str(step.end_drop), *(str(p) for p in step.policies)]
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{'cali-ti-' if inbound else 'cali-to-'}{step.tier}-{digest}"


def tier_chain(step: plan.TierStep, *, inbound: bool) -> tuple[str, ...]:
    rules = [CLEAR_PASS]
    for i, pid in enumerate(step.policies):
        guard = "" if i == 0 else r.IF_NOT_PASSED + " "
        rules.append(f"{guard}jump {r.policy_chain(pid, inbound)}")
        rules.append(f"{r.IF_ACCEPTED} return")
    if step.end_drop:
        rules.append(r.with_comment(f"{r.IF_NOT_PASSED} counter drop"))
    return tuple(rules)


def tier_chains(chain: plan.ChainPlan) -> dict[str, tuple[str, ...]]:
    """The tier chains an endpoint chain jumps to, by name."""
    return {
        tier_chain_name(s, inbound=chain.inbound): tier_chain(s, inbound=chain.inbound)
        for s in chain.steps
    }


def endpoint_chain(chain: plan.ChainPlan, *, failsafe: str | None = None) -> tuple[str, ...]:
    """Rules of one endpoint chain (one direction, one kind)."""
    rules: list[str] = []
    if chain.kind in (plan.NORMAL, plan.FORWARD):
        rules += ["ct state established,related accept", "ct state invalid counter drop"]
    if failsafe:
        rules.append(f"jump {failsafe}")
    rules.append(r.CLEAR_VERDICT)
    on_allow = _ON_ALLOW[chain.kind]
    for step in chain.steps:
        rules.append(f"jump {tier_chain_name(step, inbound=chain.inbound)}")
        rules.append(f"{r.IF_ACCEPTED} {on_allow}")
    if chain.profiles is not None:
        for name in chain.profiles:
            rules.append(f"jump {r.profile_chain(name, chain.inbound)}")
            rules.append(f"{r.IF_ACCEPTED} {on_allow}")
        rules.append(r.with_comment("counter drop"))
    return tuple(rules)
