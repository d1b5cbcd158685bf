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

With flow logs on (``flowlog_render``), the tier chain's default drop and the endpoint chain's final
drop get log twins. An endpoint whose staged plan differs (staged policies in play) also gets the
*staged walk* before its real walk: ``jump cali-swi|swo-<digest>``, a chain (shared by endpoints
with the same staged plan) that walks the staged plan over shadow chains which only set a mark bit
and log, never accept or drop::

    cali-swi-<digest>   clear PASS / staged bits
                        jump cali-sti-<tier A>-<digest>
                        not decided? jump cali-sti-<tier B>-<digest> ...
                        not decided? jump cali-spri-<profile> ...
                        not decided? log (staged, no profile) ; not decided? mark STAGED_DENY
    cali-sti-<tier>-<d> clear PASS ; jump cali-spi-<policy 1> ; decided? return ; ...
                        not passed? log (staged, tier default) ; not passed? mark STAGED_DENY

The real walk then starts with its usual clear of ACCEPT/PASS: its verdict is the same as without
the staged walk (a property test runs packets through both renderings).

A packet only meets the tiers that have a policy for its endpoint (the plan holds no others), so
its cost does not grow with tiers that do not apply to it; a change inside one tier makes a new
tier chain for that tier alone (the endpoint chain's jump moves), other tiers' chains are not
touched. Tier chain names carry the tier, and policy chain names the policy, so a rule's counter
maps back to tier / policy / rule index (``;r<i>`` in the policy chain's comments).
"""

from __future__ import annotations

import hashlib

from calico.dataplane import flowlog_render as fl
from calico.dataplane import nft_render as r
from calico.dataplane import policy_manager as pm
from calico.dpapi import flows
from calico.dpapi import messages as m
from calico.dpapi import policy_plan as plan

Rendered = tuple[tuple[str, ...], tuple[flows.VerdictPoint, ...]]  # rules, their verdict points

CLEAR_PASS = f"meta mark set meta mark & {0xFFFFFFFF & ~r.MARK_PASS:#x}"
CLEAR_STAGED = f"meta mark set meta mark & {0xFFFFFFFF & ~(r.MARK_PASS | r.MARK_STAGED):#x}"
IF_DECIDED = f"meta mark & {r.MARK_STAGED:#x} != 0"
IF_NOT_DECIDED = f"meta mark & {r.MARK_STAGED:#x} == 0"
SET_STAGED_DENY = f"meta mark set meta mark | {r.MARK_STAGED_DENY:#x}"
_ON_ALLOW = {
    plan.NORMAL: "return",
    plan.FORWARD: "return",
    plan.PRE_DNAT: "accept",
    plan.UNTRACKED: f"meta mark set meta mark | {r.MARK_UNTRACKED:#x} notrack accept",
}


def _direction(inbound: bool) -> str:
    return flows.INGRESS if inbound else flows.EGRESS


def _digest(*parts: object) -> str:
    return hashlib.sha256("\n".join(str(p) for p in parts).encode()).hexdigest()[:12]


def tier_chain_name(step: plan.TierStep, *, inbound: bool) -> str:
    """``cali-ti-<tier>-<digest>`` (ingress) / ``cali-to-...``: the digest covers all it holds."""
    digest = _digest(step.tier, step.default_action, step.end_drop, *step.policies)
    return f"{'cali-ti-' if inbound else 'cali-to-'}{step.tier}-{digest}"


def tier_chain(
    step: plan.TierStep, *, inbound: bool, flow_logs: fl.FlowLogConfig = fl.OFF
) -> tuple[str, ...]:
    return render_tier_chain(step, inbound=inbound, flow_logs=flow_logs)[0]


def render_tier_chain(
    step: plan.TierStep, *, inbound: bool, flow_logs: fl.FlowLogConfig = fl.OFF
) -> Rendered:
    rules = [CLEAR_PASS]
    for i, pid in enumerate(step.policies):
        guard = "" if i == 0 else r.IF_NOT_PASSED + " "
        rules.append(f"{guard}jump {r.policy_chain(pid, inbound)}")
        rules.append(f"{r.IF_ACCEPTED} return")
    points: tuple[flows.VerdictPoint, ...] = ()
    if step.end_drop:
        if flow_logs.log_denied:
            point = flows.VerdictPoint(
                flows.DENY, _direction(inbound), flows.BY_TIER_DEFAULT, tier=step.tier
            )
            rules.append(fl.twin(r.IF_NOT_PASSED, point, flow_logs))
            points = (point,)
        rules.append(r.with_comment(f"{r.IF_NOT_PASSED} counter drop"))
    return tuple(rules), points


def tier_chains(
    chain: plan.ChainPlan, *, flow_logs: fl.FlowLogConfig = fl.OFF
) -> dict[str, tuple[str, ...]]:
    """The tier chains an endpoint chain jumps to, by name."""
    return {k: v[0] for k, v in render_tier_chains(chain, flow_logs=flow_logs).items()}


def render_tier_chains(
    chain: plan.ChainPlan, *, flow_logs: fl.FlowLogConfig = fl.OFF
) -> dict[str, Rendered]:
    """:func:`tier_chains` with each chain's verdict points."""
    return {
        tier_chain_name(s, inbound=chain.inbound): render_tier_chain(
            s, inbound=chain.inbound, flow_logs=flow_logs
        )
        for s in chain.steps
    }


def endpoint_chain(
    chain: plan.ChainPlan,
    *,
    failsafe: str | None = None,
    flow_logs: fl.FlowLogConfig = fl.OFF,
    staged_walk: str | None = None,
) -> tuple[str, ...]:
    """Rules of one endpoint chain (one direction, one kind)."""
    return render_endpoint_chain(
        chain, failsafe=failsafe, flow_logs=flow_logs, staged_walk=staged_walk
    )[0]


def render_endpoint_chain(
    chain: plan.ChainPlan,
    *,
    failsafe: str | None = None,
    flow_logs: fl.FlowLogConfig = fl.OFF,
    staged_walk: str | None = None,
) -> Rendered:
    """:func:`endpoint_chain` and its verdict points. ``staged_walk``: the staged walk
    chain to run first (then, unless allowed flows are logged per rule, the chain logs each
    allow it returns, so every new flow of this endpoint carries both verdicts to the agent)."""
    rules: list[str] = []
    points: list[flows.VerdictPoint] = []
    direction = _direction(chain.inbound)
    if chain.kind in (plan.NORMAL, plan.FORWARD):
        rules += ["ct state established,related accept", "ct state invalid counter drop"]
    if failsafe:
        rules.append(f"jump {failsafe}")
    if staged_walk is not None:
        rules.append(f"jump {staged_walk}")
    rules.append(r.CLEAR_VERDICT)
    on_allow = _ON_ALLOW[chain.kind]
    log_allows = staged_walk is not None and not flow_logs.log_allowed

    def allowed(point: flows.VerdictPoint) -> None:
        if log_allows:
            rules.append(fl.twin(r.IF_ACCEPTED, point, flow_logs))
            points.append(point)
        rules.append(f"{r.IF_ACCEPTED} {on_allow}")

    for step in chain.steps:
        rules.append(f"jump {tier_chain_name(step, inbound=chain.inbound)}")
        allowed(flows.VerdictPoint(flows.ALLOW, direction, flows.BY_TIER, tier=step.tier))
    if chain.profiles is not None:
        for name in chain.profiles:
            rules.append(f"jump {r.profile_chain(name, chain.inbound)}")
            allowed(flows.VerdictPoint(flows.ALLOW, direction, flows.BY_PROFILE, profile=name))
        if flow_logs.log_denied:
            point = flows.VerdictPoint(flows.DENY, direction, flows.BY_NO_PROFILE)
            rules.append(fl.twin("", point, flow_logs))
            points.append(point)
        rules.append(r.with_comment("counter drop"))
    return tuple(rules), tuple(points)


# ---- the staged walk ------------------------------------------------------------------------


def staged_walk_name(chain: plan.ChainPlan) -> str:
    """``cali-swi-<digest>`` / ``cali-swo-<digest>``: one per distinct staged plan."""
    digest = _digest(chain.kind, chain.steps, chain.profiles)
    return f"{'cali-swi-' if chain.inbound else 'cali-swo-'}{digest}"


def staged_tier_chain_name(step: plan.TierStep, *, inbound: bool) -> str:
    digest = _digest(step.tier, step.default_action, step.end_drop, *step.policies)
    return f"{'cali-sti-' if inbound else 'cali-sto-'}{step.tier}-{digest}"


def staged_tier_chain(
    step: plan.TierStep, *, inbound: bool, flow_logs: fl.FlowLogConfig
) -> Rendered:
    rules = [CLEAR_PASS]
    for i, pid in enumerate(step.policies):
        guard = "" if i == 0 else r.IF_NOT_PASSED + " "
        rules.append(f"{guard}jump {pm.shadow_policy_chain(pid, inbound)}")
        rules.append(f"{IF_DECIDED} return")
    points: tuple[flows.VerdictPoint, ...] = ()
    if step.end_drop:
        point = flows.VerdictPoint(
            flows.DENY, _direction(inbound), flows.BY_TIER_DEFAULT, staged=True, tier=step.tier
        )
        rules.append(fl.twin(r.IF_NOT_PASSED, point, flow_logs))
        rules.append(r.with_comment(f"{r.IF_NOT_PASSED} {SET_STAGED_DENY}"))
        points = (point,)
    return tuple(rules), points


def staged_walk(chain: plan.ChainPlan, *, flow_logs: fl.FlowLogConfig) -> dict[str, Rendered]:
    """The staged walk chain of a (staged) plan and the staged tier chains it jumps to."""
    out: dict[str, Rendered] = {}
    rules = [CLEAR_STAGED]
    for i, step in enumerate(chain.steps):
        name = staged_tier_chain_name(step, inbound=chain.inbound)
        out[name] = staged_tier_chain(step, inbound=chain.inbound, flow_logs=flow_logs)
        rules.append(f"{'' if i == 0 else IF_NOT_DECIDED + ' '}jump {name}")
    points: tuple[flows.VerdictPoint, ...] = ()
    if chain.profiles is not None:
        for name in chain.profiles:
            rules.append(f"{IF_NOT_DECIDED} jump {pm.shadow_profile_chain(name, chain.inbound)}")
        point = flows.VerdictPoint(
            flows.DENY, _direction(chain.inbound), flows.BY_NO_PROFILE, staged=True
        )
        rules.append(fl.twin(IF_NOT_DECIDED, point, flow_logs))
        rules.append(r.with_comment(f"{IF_NOT_DECIDED} {SET_STAGED_DENY}"))
        points = (point,)
    out[staged_walk_name(chain)] = (tuple(rules), points)
    return out


def shadow_owners(chain: plan.ChainPlan) -> list[m.PolicyID | str]:
    """The policies and profiles whose shadow chains a staged walk jumps to."""
    owners: list[m.PolicyID | str] = [pid for step in chain.steps for pid in step.policies]
    return owners + list(chain.profiles or ())
