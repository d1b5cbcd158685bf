"""ActiveRulesCalculator: which policies and profiles the local endpoints use, and each endpoint's
tiers with their ordered policy lists (the PolicySorter's job: tiers by ``order``, unordered last,
then name; inside a tier, policies by ``order``, unordered last, then name).

A policy is active while its selector matches at least one local endpoint; a profile while a
local endpoint lists it (a missing profile is sent empty, so it allows nothing: fail closed).
Activating a policy or profile references its rules' IP sets; deactivating releases them.
Endpoints whose policy lists may have changed are marked dirty and recomputed in ``flush``.

Tiers: a policy's ``spec.tier`` names its tier. A Tier resource gives its order and defaultAction;
the built-in tiers (``default``, ``kube-admin``, ``kube-baseline``) count as present with Calico's
fixed values while the datastore lacks them; any other tier a policy names but the datastore lacks
is treated as unordered with defaultAction Deny (fail closed) and listed in ``missing_tiers``. A
Tier change re-renders only the endpoints some policy of that tier selects.

Staged policies (``staged:``-named ids) never enter an endpoint's ``tiers``. An endpoint that a
staged ``Set`` policy selects, or that a policy with a staged counterpart (``Set`` or ``Delete``)
selects, also gets ``staged_tiers``: its tiers with every staged ``Set`` in place of the policy it
stages and every staged ``Delete``'s policy removed. A staged ``Set`` is indexed and activated like
a policy (the dataplane renders it for the staged walk only); a staged ``Delete`` is not indexed:
it only changes the staged view of the endpoints its counterpart selects.
"""

from __future__ import annotations

from collections import Counter

from calico.calc import event_sequencer, ipset_calculator, labelindex, rule_scanner, validation
from calico.dpapi import messages as m


class ActiveRulesCalculator:
    def __init__(
        self, sequencer: event_sequencer.EventSequencer, ipsets: ipset_calculator.IPSetCalculator
    ) -> None:
        self._seq = sequencer
        self._ipsets = ipsets
        self.index = labelindex.SelectorIndex(self._on_match_started, self._on_match_stopped)
        self._policies: dict[m.PolicyID, validation.PolicyData] = {}
        self._pid_by_key: dict[str, m.PolicyID] = {}
        self._profiles: dict[str, validation.ProfileData] = {}
        self._endpoints: dict[str, validation.Item] = {}
        self._policy_refs: Counter[m.PolicyID] = Counter()
        self._profile_refs: Counter[str] = Counter()
        self._active_policy_specs: dict[m.PolicyID, tuple[rule_scanner.IPSetSpec, ...]] = {}
        self._active_profile_specs: dict[str, tuple[rule_scanner.IPSetSpec, ...]] = {}
        self._dirty: set[str] = set()
        self._tiers: dict[str, validation.TierData] = {}  # from the datastore
        self._tier_keys: dict[str, set[str]] = {}  # tier -> selector keys of its policies
        self._staged_deletes: dict[m.PolicyID, validation.PolicyData] = {}
        self._staged_for: dict[m.PolicyID, set[m.PolicyID]] = {}  # enforced -> staged ids

    # ---- tiers --------------------------------------------------------------------------------

    def tier(self, name: str) -> validation.TierData:
        """The tier as evaluated: the datastore's, else the built-in one, else fail closed."""
        found = self._tiers.get(name) or validation.builtin_tier(name)
        return found or validation.TierData(name, None, "Deny")

    @property
    def missing_tiers(self) -> list[str]:
        """Tiers some policy names that neither the datastore nor the built-ins define."""
        return sorted(
            t
            for t, keys in self._tier_keys.items()
            if keys and t not in self._tiers and validation.builtin_tier(t) is None
        )

    def on_tier_update(self, name: str, data: validation.TierData | None) -> None:
        before = self.tier(name)
        if data is None:
            self._tiers.pop(name, None)
        else:
            self._tiers[name] = data
        if self.tier(name) != before:
            for key in self._tier_keys.get(name, ()):
                self._dirty |= self.index.matches_by_sel.get(key, set())

    def _tier_key(self, tier: str, key: str, *, add: bool) -> None:
        keys = self._tier_keys.setdefault(tier, set())
        if add:
            keys.add(key)
        else:
            keys.discard(key)
            if not keys:
                del self._tier_keys[tier]

    # ---- policies -----------------------------------------------------------------------------

    def on_policy_update(self, data: validation.PolicyData) -> None:
        if data.staged_action == "Delete":
            if data.id in self._policies:
                self.on_policy_remove(data.id)  # was a staged Set
            self._on_staged_delete(data.id, data)
            return
        if data.id in self._staged_deletes:
            self._on_staged_delete(data.id, None)  # was a staged Delete
        if data.staged_action:
            self._staged_link(data, add=True)
        pid = data.id
        key = _key(pid)
        self._pid_by_key[key] = pid
        old = self._policies.get(pid)
        self._policies[pid] = data
        if old is not None and old.tier != data.tier:
            self._tier_key(old.tier, key, add=False)
        self._tier_key(data.tier, key, add=True)
        if pid in self._active_policy_specs:
            self._activate_policy(pid)  # re-reference the (possibly new) IP sets, resend
        if old is not None and (
            old.sort_key() != data.sort_key()
            or old.tier != data.tier
            or (old.ingress, old.egress) != (data.ingress, data.egress)
            or _kind(old.policy) != _kind(data.policy)
        ):
            self._dirty |= self.index.matches_by_sel.get(key, set())
        self.index.update_selector(key, data.selector)

    def on_policy_remove(self, pid: m.PolicyID) -> None:
        if pid in self._staged_deletes:
            self._on_staged_delete(pid, None)
            return
        key = _key(pid)
        data = self._policies.get(pid)
        if data is None:
            return
        self.index.delete_selector(key)
        self._tier_key(data.tier, key, add=False)
        del self._policies[pid]
        if data.staged_action:
            self._staged_link(data, add=False)

    # ---- staged policies ----------------------------------------------------------------------

    def _on_staged_delete(self, pid: m.PolicyID, data: validation.PolicyData | None) -> None:
        old = self._staged_deletes.pop(pid, None)
        if old is not None:
            self._staged_link(old, add=False)
        if data is not None:
            self._staged_deletes[pid] = data
            self._staged_link(data, add=True)

    def _staged_link(self, data: validation.PolicyData, *, add: bool) -> None:
        """Record (or forget) that ``data`` stages its counterpart; the counterpart's endpoints
        get a new staged view."""
        enforced = data.enforced_id
        linked = self._staged_for.setdefault(enforced, set())
        if add:
            linked.add(data.id)
        else:
            linked.discard(data.id)
            if not linked:
                del self._staged_for[enforced]
        self._dirty |= self.index.matches_by_sel.get(_key(enforced), set())

    # ---- profiles -----------------------------------------------------------------------------

    def on_profile_update(self, data: validation.ProfileData) -> None:
        self._profiles[data.name] = data
        if data.name in self._active_profile_specs:
            self._activate_profile(data.name)

    def on_profile_remove(self, name: str) -> None:
        self._profiles.pop(name, None)
        if name in self._active_profile_specs:
            self._activate_profile(name)  # now sent empty: the endpoint allows nothing

    # ---- local endpoints ----------------------------------------------------------------------

    def on_endpoint_update(self, item: validation.Item, labels: labelindex.Labels) -> None:
        old = self._endpoints.get(item.id)
        self._endpoints[item.id] = item
        for name in item.parents:
            self._profile_refs[name] += 1
            if self._profile_refs[name] == 1:
                self._activate_profile(name)
        self.index.update_item(item.id, labels)
        if old is not None:
            for name in old.parents:
                self._unref_profile(name)
        self._dirty.add(item.id)

    def on_endpoint_remove(self, item_id: str) -> None:
        old = self._endpoints.get(item_id)
        if old is None:
            return
        self._seq.on_endpoint(item_id, None)
        self.index.delete_item(item_id)
        del self._endpoints[item_id]
        for name in old.parents:
            self._unref_profile(name)
        self._dirty.discard(item_id)

    # ---- activation ---------------------------------------------------------------------------

    def _on_match_started(self, key: str, item_id: str) -> None:
        pid = self._pid_by_key[key]
        self._policy_refs[pid] += 1
        if self._policy_refs[pid] == 1:
            self._activate_policy(pid)
        self._dirty.add(item_id)

    def _on_match_stopped(self, key: str, item_id: str) -> None:
        pid = self._pid_by_key[key]
        self._policy_refs[pid] -= 1
        if self._policy_refs[pid] <= 0:
            del self._policy_refs[pid]
            for spec in self._active_policy_specs.pop(pid, ()):
                self._ipsets.unref(spec)
            self._seq.on_policy(pid, None)
        self._dirty.add(item_id)

    def _activate_policy(self, pid: m.PolicyID) -> None:
        data = self._policies[pid]
        for spec in data.specs:
            self._ipsets.ref(spec)
        for spec in self._active_policy_specs.get(pid, ()):
            self._ipsets.unref(spec)
        self._active_policy_specs[pid] = data.specs
        self._seq.on_policy(pid, data.policy)

    def _activate_profile(self, name: str) -> None:
        data = self._profiles.get(name)
        specs = data.specs if data else ()
        for spec in specs:
            self._ipsets.ref(spec)
        for spec in self._active_profile_specs.get(name, ()):
            self._ipsets.unref(spec)
        self._active_profile_specs[name] = specs
        self._seq.on_profile(name, data.profile if data else m.Profile())

    def _unref_profile(self, name: str) -> None:
        self._profile_refs[name] -= 1
        if self._profile_refs[name] <= 0:
            del self._profile_refs[name]
            for spec in self._active_profile_specs.pop(name, ()):
                self._ipsets.unref(spec)
            self._seq.on_profile(name, None)

    # ---- status -------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(local endpoints, active policies, active profiles) right now."""
        return (
            len(self._endpoints),
            len(self._active_policy_specs),
            len(self._active_profile_specs),
        )

    # ---- output -------------------------------------------------------------------------------

    def flush(self) -> None:
        for item_id in sorted(self._dirty):
            item = self._endpoints.get(item_id)
            if item is not None:
                self._seq.on_endpoint(item_id, self._render(item))
        self._dirty.clear()

    def _sorted_policies(self, item_id: str) -> list[validation.PolicyData]:
        keys = self.index.matches_by_item.get(item_id, ())
        datas = [self._policies[self._pid_by_key[k]] for k in keys]
        return sorted(datas, key=validation.PolicyData.sort_key)

    def _staged_view(
        self, real: list[validation.PolicyData], staged_sets: list[validation.PolicyData]
    ) -> list[validation.PolicyData] | None:
        """The endpoint's policies with the staged ones enforced, or None if none is in play."""
        replaced = {p.id for p in real if p.id in self._staged_for}
        if not staged_sets and not replaced:
            return None
        kept = [p for p in real if p.id not in replaced]
        return sorted(kept + staged_sets, key=validation.PolicyData.sort_key)

    def _render(self, item: validation.Item) -> m.WorkloadEndpoint | m.HostEndpoint:
        matched = self._sorted_policies(item.id)
        pols = [p for p in matched if not p.staged_action]
        staged = self._staged_view(pols, [p for p in matched if p.staged_action])
        staged_tiers = None if staged is None else self._tiers_of(_normal(staged))
        v4 = tuple(n for n in item.nets if ":" not in n)
        v6 = tuple(n for n in item.nets if ":" in n)
        normal = _normal(pols)
        if item.kind == validation.WEP:
            return m.WorkloadEndpoint(
                name=item.id.split(":", 1)[1],
                iface=item.iface or "",
                mac=item.mac,
                ipv4_nets=v4,
                ipv6_nets=v6,
                tiers=self._tiers_of(normal),
                profile_ids=item.parents,
                staged_tiers=staged_tiers,
            )
        return m.HostEndpoint(
            name=item.id.split(":", 1)[1],
            iface=item.iface or "",
            expected_ipv4_addrs=v4,
            expected_ipv6_addrs=v6,
            tiers=self._tiers_of(normal),
            untracked_tiers=self._tiers_of([p for p in pols if p.policy.untracked]),
            pre_dnat_tiers=self._tiers_of(
                [p for p in pols if p.policy.pre_dnat and not p.policy.untracked]
            ),
            forward_tiers=self._tiers_of([p for p in normal if p.policy.apply_on_forward]),
            profile_ids=item.parents,
            staged_tiers=staged_tiers,
        )

    def _tiers_of(self, pols: list[validation.PolicyData]) -> tuple[m.TierInfo, ...]:
        """``pols`` (already in policy order) grouped by tier, tiers in evaluation order."""
        by_tier: dict[str, list[validation.PolicyData]] = {}
        for p in pols:
            by_tier.setdefault(p.tier, []).append(p)
        out = []
        for data in sorted((self.tier(t) for t in by_tier), key=validation.TierData.sort_key):
            members = by_tier[data.name]
            ingress = tuple(p.id for p in members if p.ingress)
            egress = tuple(p.id for p in members if p.egress)
            if ingress or egress:
                out.append(m.TierInfo(data.name, ingress, egress, data.default_action))
        return tuple(out)


def _key(pid: m.PolicyID) -> str:
    """A policy's key in the selector index."""
    return str(pid) if pid.namespace else f"/{pid.name}"


def _normal(pols: list[validation.PolicyData]) -> list[validation.PolicyData]:
    return [p for p in pols if not p.policy.untracked and not p.policy.pre_dnat]


def _kind(policy: m.Policy) -> tuple[bool, bool, bool]:
    return (policy.untracked, policy.pre_dnat, policy.apply_on_forward)
