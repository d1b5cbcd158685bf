"""DataplaneState: the state a message stream describes, with the ordering contract checked.

Pure. ``apply(msg)`` raises ``ContractError`` when a message breaks the contract in
``messages`` (a delta for an unknown set, a rule naming a set that was never sent, a remove of
something still referenced...). Tests compare two states with ``==``: the incremental stream and
a fresh full computation must describe the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calico.dpapi import messages as m


class ContractError(AssertionError):
    """A message stream broke the calc -> dataplane ordering contract."""


@dataclass
class DataplaneState:
    config: m.ConfigUpdate | None = None
    in_sync: bool = False
    ipsets: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    policies: dict[m.PolicyID, m.Policy] = field(default_factory=dict)
    profiles: dict[str, m.Profile] = field(default_factory=dict)
    workload_endpoints: dict[str, m.WorkloadEndpoint] = field(default_factory=dict)
    host_endpoints: dict[str, m.HostEndpoint] = field(default_factory=dict)

    def apply_all(self, msgs: list[m.Message]) -> DataplaneState:
        for msg in msgs:
            self.apply(msg)
        return self

    def apply(self, msg: m.Message) -> None:
        match msg:
            case m.ConfigUpdate():
                self.config = msg
            case m.InSync():
                self.in_sync = True
            case m.IPSetUpdate(id=i, kind=kind, members=members):
                self.ipsets[i] = (kind, members)
            case m.IPSetDeltaUpdate(id=i, added=added, removed=removed):
                if i not in self.ipsets:
                    raise ContractError(f"delta for unknown IP set {i}")
                kind, members = self.ipsets[i]
                self.ipsets[i] = (kind, (members - removed) | added)
            case m.IPSetRemove(id=i):
                self._check_unused_ipset(i)
                self.ipsets.pop(i, None)
            case m.ActivePolicyUpdate(id=i, policy=policy):
                self._check_rules(policy.inbound_rules + policy.outbound_rules, f"policy {i}")
                self.policies[i] = policy
            case m.ActivePolicyRemove(id=i):
                self._check_unused_policy(i)
                self.policies.pop(i, None)
            case m.ActiveProfileUpdate(id=i, profile=profile):
                self._check_rules(profile.inbound_rules + profile.outbound_rules, f"profile {i}")
                self.profiles[i] = profile
            case m.ActiveProfileRemove(id=i):
                self._check_unused_profile(i)
                self.profiles.pop(i, None)
            case m.WorkloadEndpointUpdate(id=i, endpoint=ep):
                self._check_endpoint(ep.tiers, ep.profile_ids, f"endpoint {i}")
                self.workload_endpoints[i] = ep
            case m.WorkloadEndpointRemove(id=i):
                self.workload_endpoints.pop(i, None)
            case m.HostEndpointUpdate(id=i, endpoint=hep):
                tiers = hep.tiers + hep.untracked_tiers + hep.pre_dnat_tiers + hep.forward_tiers
                self._check_endpoint(tiers, hep.profile_ids, f"host endpoint {i}")
                self.host_endpoints[i] = hep
            case m.HostEndpointRemove(id=i):
                self.host_endpoints.pop(i, None)

    # ---- contract checks ----------------------------------------------------------------------

    def _check_rules(self, rules: tuple[m.Rule, ...], what: str) -> None:
        for rule in rules:
            for set_id in rule.ipset_ids():
                if set_id not in self.ipsets:
                    raise ContractError(f"{what} uses IP set {set_id} before it was sent")

    def _check_endpoint(
        self, tiers: tuple[m.TierInfo, ...], profile_ids: tuple[str, ...], what: str
    ) -> None:
        for tier in tiers:
            for pid in tier.ingress_policies + tier.egress_policies:
                if pid not in self.policies:
                    raise ContractError(f"{what} uses policy {pid} before it was sent")
        for prof in profile_ids:
            if prof not in self.profiles:
                raise ContractError(f"{what} uses profile {prof} before it was sent")

    def _all_tiers(self) -> list[m.TierInfo]:
        tiers: list[m.TierInfo] = []
        for ep in self.workload_endpoints.values():
            tiers.extend(ep.tiers)
        for hep in self.host_endpoints.values():
            tiers.extend(hep.tiers + hep.untracked_tiers + hep.pre_dnat_tiers + hep.forward_tiers)
        return tiers

    def _check_unused_policy(self, pid: m.PolicyID) -> None:
        for tier in self._all_tiers():
            if pid in tier.ingress_policies + tier.egress_policies:
                raise ContractError(f"policy {pid} removed while an endpoint uses it")

    def _check_unused_profile(self, prof: str) -> None:
        eps = list(self.workload_endpoints.values()) + list(self.host_endpoints.values())
        for ep in eps:
            if prof in ep.profile_ids:
                raise ContractError(f"profile {prof} removed while an endpoint uses it")

    def _check_unused_ipset(self, set_id: str) -> None:
        rule_lists = [p.inbound_rules + p.outbound_rules for p in self.policies.values()]
        rule_lists += [p.inbound_rules + p.outbound_rules for p in self.profiles.values()]
        for rules in rule_lists:
            for rule in rules:
                if set_id in rule.ipset_ids():
                    raise ContractError(f"IP set {set_id} removed while a rule uses it")
