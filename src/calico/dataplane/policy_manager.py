"""PolicyManager: active policies and profiles -> their rule chains (convert only, no I/O).

It keeps the dpapi rules it rendered (``policies``/``profiles``): the compiled rules ``explain``
walks are the ones the chains were rendered from.
"""

from __future__ import annotations

from calico.dataplane import nft_render as r
from calico.dataplane import nft_table
from calico.dpapi import messages as m


class PolicyManager:
    def __init__(self, table: nft_table.NftTable, *, log_prefix: str = r.LOG_PREFIX) -> None:
        self._table = table
        self.log_prefix = log_prefix
        self.policies: dict[m.PolicyID, m.Policy] = {}
        self.profiles: dict[str, m.Profile] = {}

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.ActivePolicyUpdate(id=pid, policy=policy):
                self.policies[pid] = policy
                self._table.set_chain(r.policy_chain(pid, True), self._rules(policy.inbound_rules))
                self._table.set_chain(
                    r.policy_chain(pid, False), self._rules(policy.outbound_rules)
                )
            case m.ActivePolicyRemove(id=pid):
                self.policies.pop(pid, None)
                self._table.delete_chain(r.policy_chain(pid, True))
                self._table.delete_chain(r.policy_chain(pid, False))
            case m.ActiveProfileUpdate(id=name, profile=profile):
                self.profiles[name] = profile
                self._table.set_chain(
                    r.profile_chain(name, True), self._rules(profile.inbound_rules)
                )
                self._table.set_chain(
                    r.profile_chain(name, False), self._rules(profile.outbound_rules)
                )
            case m.ActiveProfileRemove(id=name):
                self.profiles.pop(name, None)
                self._table.delete_chain(r.profile_chain(name, True))
                self._table.delete_chain(r.profile_chain(name, False))

    def _rules(self, rules: tuple[m.Rule, ...]) -> tuple[str, ...]:
        return r.rules_chain(rules, log_prefix=self.log_prefix)
