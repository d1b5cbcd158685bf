"""EventSequencer: coalesces the graph's outputs and emits them in dependency order on flush().

At most one pending message per object: a policy updated three times between flushes is sent
once; an update then a remove of something never sent is nothing at all; IP set member adds and
removes cancel out. Values equal to what was last sent are suppressed. ``flush()`` order is the
contract in ``calico.dpapi.messages``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState

Endpoint = m.WorkloadEndpoint | m.HostEndpoint
V = TypeVar("V")


class _Keyed(Generic[V]):
    """Pending values by key (``None``: remove) and what was last sent; for the cluster-wide
    kinds (pools, hosts, VTEPs, routes), whose messages carry the whole value."""

    def __init__(self) -> None:
        self.pending: dict[str, V | None] = {}
        self.sent: dict[str, V] = {}

    def set(self, key: str, value: V | None) -> None:
        self.pending[key] = value

    def updates(self) -> list[tuple[str, V]]:
        out = []
        for key in sorted(self.pending):
            value = self.pending[key]
            if value is not None and self.sent.get(key) != value:
                self.sent[key] = value
                out.append((key, value))
        return out

    def removes(self) -> list[str]:
        out = []
        for key in sorted(self.pending):
            if self.pending[key] is None and self.sent.pop(key, None) is not None:
                out.append(key)
        return out


class EventSequencer:
    def __init__(self, ipset_members: Callable[[str], frozenset[str]]) -> None:
        self._ipset_members = ipset_members
        self._config: m.ConfigUpdate | None = m.ConfigUpdate()  # sent even without any resource
        self._sent_config: m.ConfigUpdate | None = None
        self._in_sync_pending = False
        self._ipset_kinds: dict[str, str] = {}
        self._ipsets_new: set[str] = set()
        self._ipset_added: dict[str, set[str]] = {}
        self._ipset_removed: dict[str, set[str]] = {}
        self._ipsets_sent: set[str] = set()
        self._ipset_removes: set[str] = set()
        self._policies: dict[m.PolicyID, m.Policy | None] = {}
        self._sent_policies: dict[m.PolicyID, m.Policy] = {}
        self._profiles: dict[str, m.Profile | None] = {}
        self._sent_profiles: dict[str, m.Profile] = {}
        self._endpoints: dict[str, Endpoint | None] = {}
        self._sent_endpoints: dict[str, Endpoint] = {}
        self._pools: _Keyed[m.IPPool] = _Keyed()
        self._hosts: _Keyed[m.HostMetadataUpdate] = _Keyed()
        self._vteps: _Keyed[m.VXLANTunnelEndpointUpdate] = _Keyed()
        self._routes: _Keyed[m.RouteUpdate] = _Keyed()

    # ---- inputs -------------------------------------------------------------------------------

    def on_config_update(self, config: m.ConfigUpdate) -> None:
        self._config = config

    def on_in_sync(self) -> None:
        self._in_sync_pending = True

    def on_ipset_added(self, set_id: str, kind: str) -> None:
        self._ipset_kinds[set_id] = kind
        self._ipset_removes.discard(set_id)
        self._ipsets_new.add(set_id)  # a full update (also re-sends a set removed and re-added)
        self._ipset_added.pop(set_id, None)
        self._ipset_removed.pop(set_id, None)

    def on_ipset_removed(self, set_id: str) -> None:
        self._ipsets_new.discard(set_id)
        self._ipset_added.pop(set_id, None)
        self._ipset_removed.pop(set_id, None)
        self._ipset_kinds.pop(set_id, None)
        if set_id in self._ipsets_sent:
            self._ipset_removes.add(set_id)

    def on_member_added(self, set_id: str, member: str) -> None:
        if set_id in self._ipsets_new:
            return
        removed = self._ipset_removed.setdefault(set_id, set())
        if member in removed:
            removed.discard(member)
        else:
            self._ipset_added.setdefault(set_id, set()).add(member)

    def on_member_removed(self, set_id: str, member: str) -> None:
        if set_id in self._ipsets_new:
            return
        added = self._ipset_added.setdefault(set_id, set())
        if member in added:
            added.discard(member)
        else:
            self._ipset_removed.setdefault(set_id, set()).add(member)

    def on_policy(self, pid: m.PolicyID, policy: m.Policy | None) -> None:
        self._policies[pid] = policy

    def on_profile(self, name: str, profile: m.Profile | None) -> None:
        self._profiles[name] = profile

    def on_endpoint(self, ep_id: str, endpoint: Endpoint | None) -> None:
        self._endpoints[ep_id] = endpoint

    def on_pool(self, pool_id: str, pool: m.IPPool | None) -> None:
        self._pools.set(pool_id, pool)

    def on_host(self, hostname: str, host: m.HostMetadataUpdate | None) -> None:
        self._hosts.set(hostname, host)

    def on_vtep(self, node: str, vtep: m.VXLANTunnelEndpointUpdate | None) -> None:
        self._vteps.set(node, vtep)

    def on_route(self, dst: str, route: m.RouteUpdate | None) -> None:
        self._routes.set(dst, route)

    # ---- what has been sent --------------------------------------------------------------------

    def sent_state(self) -> DataplaneState:
        """The state the messages flushed so far describe (for the full-recompute check)."""
        state = DataplaneState(config=self._sent_config)
        state.ipsets = {
            i: (self._ipset_kinds[i], self._ipset_members(i)) for i in self._ipsets_sent
        }
        state.policies = dict(self._sent_policies)
        state.profiles = dict(self._sent_profiles)
        for ep_id, ep in self._sent_endpoints.items():
            if isinstance(ep, m.WorkloadEndpoint):
                state.workload_endpoints[ep_id] = ep
            else:
                state.host_endpoints[ep_id] = ep
        state.pools = dict(self._pools.sent)
        state.hosts = dict(self._hosts.sent)
        state.vteps = dict(self._vteps.sent)
        state.routes = dict(self._routes.sent)
        return state

    # ---- output -------------------------------------------------------------------------------

    def flush(self) -> list[m.Message]:
        out: list[m.Message] = []
        self._flush_cluster_updates(out)
        self._flush_ipset_updates(out)
        self._flush_active_updates(out)
        out.extend(route for _, route in self._routes.updates())
        out.extend(m.RouteRemove(dst) for dst in self._routes.removes())
        self._flush_endpoints(out)
        self._flush_active_removes(out)
        self._flush_ipset_removes(out)
        self._flush_cluster_removes(out)
        self._policies.clear()
        self._profiles.clear()
        self._endpoints.clear()
        if self._in_sync_pending:
            out.append(m.InSync())
            self._in_sync_pending = False
        return out

    def _flush_cluster_updates(self, out: list[m.Message]) -> None:
        """Config, then pools, hosts and VTEPs that changed."""
        if self._config is not None and self._config != self._sent_config:
            out.append(self._config)
            self._sent_config = self._config
        out.extend(m.IPAMPoolUpdate(i, pool) for i, pool in self._pools.updates())
        out.extend(host for _, host in self._hosts.updates())
        out.extend(vtep for _, vtep in self._vteps.updates())

    def _flush_ipset_updates(self, out: list[m.Message]) -> None:
        """New IP sets in full, then the deltas of those already sent."""
        for set_id in sorted(self._ipsets_new):
            out.append(
                m.IPSetUpdate(set_id, self._ipset_kinds[set_id], self._ipset_members(set_id))
            )
            self._ipsets_sent.add(set_id)
        for set_id in sorted(set(self._ipset_added) | set(self._ipset_removed)):
            added = frozenset(self._ipset_added.get(set_id, ()))
            removed = frozenset(self._ipset_removed.get(set_id, ()))
            if (added or removed) and set_id in self._ipsets_sent:
                out.append(m.IPSetDeltaUpdate(set_id, added, removed))
        self._ipsets_new.clear()
        self._ipset_added.clear()
        self._ipset_removed.clear()

    def _flush_active_updates(self, out: list[m.Message]) -> None:
        """Policies, then profiles, that became active or changed."""
        for pid, policy in sorted(self._policies.items(), key=lambda kv: str(kv[0])):
            if policy is not None and self._sent_policies.get(pid) != policy:
                out.append(m.ActivePolicyUpdate(pid, policy))
                self._sent_policies[pid] = policy
        for name, profile in sorted(self._profiles.items(), key=lambda kv: kv[0]):
            if profile is not None and self._sent_profiles.get(name) != profile:
                out.append(m.ActiveProfileUpdate(name, profile))
                self._sent_profiles[name] = profile

    def _flush_endpoints(self, out: list[m.Message]) -> None:
        """Endpoint updates, then the removes of endpoints that were sent."""
        removes: list[m.Message] = []
        for ep_id, ep in sorted(self._endpoints.items(), key=lambda kv: kv[0]):
            if ep is not None and self._sent_endpoints.get(ep_id) != ep:
                if isinstance(ep, m.WorkloadEndpoint):
                    out.append(m.WorkloadEndpointUpdate(ep_id, ep))
                else:
                    out.append(m.HostEndpointUpdate(ep_id, ep))
                self._sent_endpoints[ep_id] = ep
            elif ep is None and ep_id in self._sent_endpoints:
                old = self._sent_endpoints.pop(ep_id)
                if isinstance(old, m.WorkloadEndpoint):
                    removes.append(m.WorkloadEndpointRemove(ep_id))
                else:
                    removes.append(m.HostEndpointRemove(ep_id))
        out.extend(removes)

    def _flush_active_removes(self, out: list[m.Message]) -> None:
        """Profiles, then policies, no longer active (after the endpoints that used them)."""
        for name, profile in sorted(self._profiles.items(), key=lambda kv: kv[0]):
            if profile is None and self._sent_profiles.pop(name, None) is not None:
                out.append(m.ActiveProfileRemove(name))
        for pid, policy in sorted(self._policies.items(), key=lambda kv: str(kv[0])):
            if policy is None and self._sent_policies.pop(pid, None) is not None:
                out.append(m.ActivePolicyRemove(pid))

    def _flush_ipset_removes(self, out: list[m.Message]) -> None:
        for set_id in sorted(self._ipset_removes):
            out.append(m.IPSetRemove(set_id))
            self._ipsets_sent.discard(set_id)
        self._ipset_removes.clear()

    def _flush_cluster_removes(self, out: list[m.Message]) -> None:
        """VTEPs, hosts and pools removed, last; then nothing cluster-wide is pending."""
        out.extend(m.VXLANTunnelEndpointRemove(n) for n in self._vteps.removes())
        out.extend(m.HostMetadataRemove(h) for h in self._hosts.removes())
        out.extend(m.IPAMPoolRemove(i) for i in self._pools.removes())
        for keyed in (self._pools, self._hosts, self._vteps, self._routes):
            keyed.pending.clear()
