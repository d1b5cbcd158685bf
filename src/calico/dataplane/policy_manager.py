"""PolicyManager: active policies and profiles -> their rule chains (convert only, no I/O).

Real chains: ``cali-pi/po-<policy>``, ``cali-pri/pro-<profile>``; with flow logs on, each Deny
(and, when configured, each Allow) rule has a log twin (``flowlog_render``). Staged policies
(``staged:`` ids) get no real chain.

Shadow chains (``cali-spi/spo-<policy>``, ``cali-spri/spro-<profile>``) are the same rules for
the staged walk: Allow and Deny set a staged mark bit and return (logged as staged points), Pass
returns as in the real chain, Log rules are left out; nothing in them accepts or drops. They exist
while some endpoint's staged plan uses them (``ref_shadow`` / ``unref_shadow``, counted).

It keeps the dpapi rules it rendered (``policies``/``profiles``): the compiled rules ``explain``
walks are the ones the chains were rendered from.
"""

from __future__ import annotations

from collections import Counter

from calico.dataplane import flowlog_render as fl
from calico.dataplane import nft_render as r
from calico.dataplane import nft_table
from calico.dpapi import flows
from calico.dpapi import messages as m

_SHADOW_ACTIONS = {
    "allow": f"meta mark set meta mark | {r.MARK_STAGED_ALLOW:#x} return",
    "deny": f"meta mark set meta mark | {r.MARK_STAGED_DENY:#x} return",
    "pass": f"meta mark set meta mark | {r.MARK_PASS:#x} return",
}
Owner = m.PolicyID | str  # a policy's id, or a profile's name


def shadow_policy_chain(pid: m.PolicyID, inbound: bool) -> str:
    return ("cali-spi-" if inbound else "cali-spo-") + r.chain_suffix(str(pid))


def shadow_profile_chain(name: str, inbound: bool) -> str:
    return ("cali-spri-" if inbound else "cali-spro-") + r.chain_suffix(name)


def shadow_chain(owner: Owner, inbound: bool) -> str:
    if isinstance(owner, m.PolicyID):
        return shadow_policy_chain(owner, inbound)
    return shadow_profile_chain(owner, inbound)


class PolicyManager:
    def __init__(
        self,
        table: nft_table.NftTable,
        *,
        log_prefix: str = r.LOG_PREFIX,
        points: fl.Points | None = None,
    ) -> None:
        self._table = table
        self.log_prefix = log_prefix
        self.points = points if points is not None else fl.Points()
        self.flow_logs = fl.OFF
        self.policies: dict[m.PolicyID, m.Policy] = {}
        self.profiles: dict[str, m.Profile] = {}
        self._shadow_refs: Counter[Owner] = Counter()

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.ActivePolicyUpdate(id=pid, policy=policy):
                self.policies[pid] = policy
                self._render(pid)
            case m.ActivePolicyRemove(id=pid):
                self.policies.pop(pid, None)
                self._render(pid)
            case m.ActiveProfileUpdate(id=name, profile=profile):
                self.profiles[name] = profile
                self._render(name)
            case m.ActiveProfileRemove(id=name):
                self.profiles.pop(name, None)
                self._render(name)

    def set_flow_logs(self, cfg: fl.FlowLogConfig) -> None:
        """New flow-log settings: every chain whose rendering they change is rendered again."""
        if cfg == self.flow_logs:
            return
        self.flow_logs = cfg
        owners: list[Owner] = [*self.policies, *self.profiles]
        for owner in owners:
            self._render(owner)

    # ---- shadow chains (the staged walk's) ------------------------------------------------------

    def ref_shadow(self, owner: Owner) -> None:
        self._shadow_refs[owner] += 1
        if self._shadow_refs[owner] == 1:
            self._render(owner)

    def unref_shadow(self, owner: Owner) -> None:
        self._shadow_refs[owner] -= 1
        if self._shadow_refs[owner] <= 0:
            del self._shadow_refs[owner]
            self._render(owner)

    # ---- rendering ----------------------------------------------------------------------------

    def _rules(self, owner: Owner) -> tuple[tuple[m.Rule, ...], tuple[m.Rule, ...]] | None:
        if isinstance(owner, m.PolicyID):
            policy = self.policies.get(owner)
            return None if policy is None else (policy.inbound_rules, policy.outbound_rules)
        profile = self.profiles.get(owner)
        return None if profile is None else (profile.inbound_rules, profile.outbound_rules)

    def _render(self, owner: Owner) -> None:
        """Set (or delete) the real and shadow chains of ``owner`` from what is known now."""
        rules = self._rules(owner)
        staged_policy = isinstance(owner, m.PolicyID) and owner.name.startswith(flows.STAGED_PREFIX)
        for inbound in (True, False):
            real = (
                r.policy_chain(owner, inbound)
                if isinstance(owner, m.PolicyID)
                else r.profile_chain(owner, inbound)
            )
            if rules is None or staged_policy:
                self._delete(real)
            else:
                self._set(real, *self._real(owner, rules[0 if inbound else 1], inbound))
            shadow = shadow_chain(owner, inbound)
            if rules is None or owner not in self._shadow_refs:
                self._delete(shadow)
            else:
                self._set(shadow, *self._shadow(owner, rules[0 if inbound else 1], inbound))

    def _set(
        self, chain: str, rules: tuple[str, ...], points: tuple[flows.VerdictPoint, ...]
    ) -> None:
        self._table.set_chain(chain, rules)
        self.points.set(chain, points)

    def _delete(self, chain: str) -> None:
        self._table.delete_chain(chain)
        self.points.drop(chain)

    def _point(
        self, owner: Owner, action: str, inbound: bool, index: int, *, staged: bool
    ) -> flows.VerdictPoint:
        if isinstance(owner, m.PolicyID):
            return fl.rule_point(action, inbound=inbound, staged=staged, policy=str(owner),
                                 index=index)  # fmt: skip
        return fl.rule_point(action, inbound=inbound, staged=staged, profile=owner, index=index)

    def _real(
        self, owner: Owner, rules: tuple[m.Rule, ...], inbound: bool
    ) -> tuple[tuple[str, ...], tuple[flows.VerdictPoint, ...]]:
        cfg = self.flow_logs
        points: list[flows.VerdictPoint] = []

        def twin(i: int, rule: m.Rule) -> str | None:
            if rule.action == "deny" and cfg.log_denied:
                extra = ""
            elif rule.action == "allow" and cfg.log_allowed:
                extra = "ct state new "
            else:
                return None
            point = self._point(owner, rule.action, inbound, i, staged=False)
            points.append(point)
            return extra + fl.log_statement(point, cfg)

        chain = r.rules_chain(rules, log_prefix=self.log_prefix, twin=twin)
        return chain, tuple(points)

    def _shadow(
        self, owner: Owner, rules: tuple[m.Rule, ...], inbound: bool
    ) -> tuple[tuple[str, ...], tuple[flows.VerdictPoint, ...]]:
        cfg = self.flow_logs
        points: list[flows.VerdictPoint] = []

        def twin(i: int, rule: m.Rule) -> str | None:
            if rule.action not in ("allow", "deny"):
                return None
            point = self._point(owner, rule.action, inbound, i, staged=True)
            points.append(point)
            return fl.log_statement(point, cfg)

        chain = r.rules_chain(rules, twin=twin, action=_SHADOW_ACTIONS.get)
        return chain, tuple(points)
