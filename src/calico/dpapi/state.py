"""DataplaneState: the state a message stream describes, with the ordering contract checked.

Pure. ``apply(msg)`` raises ``ContractError`` when a message breaks the contract in
``messages`` (a delta for an unknown set, a rule naming a set that was never sent, a remove of
something still referenced...). Tests compare two states with ``==``: the incremental stream and
a fresh full computation must describe the same state.
"""

from __future__ import annotations

import ipaddress
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
    pools: dict[str, m.IPPool] = field(default_factory=dict)
    hosts: dict[str, m.HostMetadataUpdate] = field(default_factory=dict)
    vteps: dict[str, m.VXLANTunnelEndpointUpdate] = field(default_factory=dict)
    routes: dict[str, m.RouteUpdate] = field(default_factory=dict)

    def apply_all(self, msgs: list[m.Message]) -> DataplaneState:
        for msg in msgs:
            self.apply(msg)
        self.check_routes_match_pools()
        return self

    def apply(self, msg: m.Message) -> None:
        if self._apply_network(msg) or self._apply_endpoint(msg):
            return
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

    def _apply_endpoint(self, msg: m.Message) -> bool:
        match msg:
            case m.WorkloadEndpointUpdate(id=i, endpoint=ep):
                self._check_endpoint(
                    ep.tiers + (ep.staged_tiers or ()), ep.profile_ids, f"endpoint {i}"
                )
                self.workload_endpoints[i] = ep
            case m.WorkloadEndpointRemove(id=i):
                self.workload_endpoints.pop(i, None)
            case m.HostEndpointUpdate(id=i, endpoint=hep):
                tiers = hep.tiers + hep.untracked_tiers + hep.pre_dnat_tiers + hep.forward_tiers
                tiers += hep.staged_tiers or ()
                self._check_endpoint(tiers, hep.profile_ids, f"host endpoint {i}")
                self.host_endpoints[i] = hep
            case m.HostEndpointRemove(id=i):
                self.host_endpoints.pop(i, None)
            case _:
                return False
        return True

    def _apply_network(self, msg: m.Message) -> bool:
        """Pools, hosts, VTEPs and routes; False for any other message."""
        match msg:
            case m.IPAMPoolUpdate(id=i, pool=pool):
                self.pools[i] = pool
            case m.IPAMPoolRemove(id=i):
                self.pools.pop(i, None)
            case m.HostMetadataUpdate(hostname=h):
                self.hosts[h] = msg
            case m.HostMetadataRemove(hostname=h):
                self._check_node_unrouted(h, f"host {h}", None)
                self.hosts.pop(h, None)
            case m.VXLANTunnelEndpointUpdate(node=n):
                self.vteps[n] = msg
            case m.VXLANTunnelEndpointRemove(node=n):
                self._check_node_unrouted(n, f"VTEP {n}", m.VXLAN_DEVICE)
                self.vteps.pop(n, None)
            case m.RouteUpdate(dst=dst):
                self._check_route(msg)
                self.routes[dst] = msg
            case m.RouteRemove(dst=dst):
                self.routes.pop(dst, None)
            case _:
                return False
        return True

    # ---- contract checks ----------------------------------------------------------------------

    def _pool_mode(self, route: m.RouteUpdate) -> str | None:
        """The encapsulation mode the pool holding ``route.dst`` asks for (the most specific
        pool; of equal ones the first by name)."""
        dst = ipaddress.ip_network(route.dst)
        holding = []
        for name, pool in self.pools.items():
            net = ipaddress.ip_network(pool.cidr)
            if net.version == dst.version and dst.subnet_of(net):  # type: ignore[arg-type]
                holding.append((-net.prefixlen, name, pool))
        if not holding:
            return None
        best = min(holding)[2]
        mode = best.vxlan_mode if route.device == m.VXLAN_DEVICE else best.ipip_mode
        return None if mode == m.ENCAP_NEVER else mode

    def check_routes_match_pools(self) -> None:
        """At the end of a flush, every route's pool asks for its encapsulation. (Within a flush
        a route may precede the pool change that explains it: a removed pool that won a tie.)"""
        for route in self.routes.values():
            if self._pool_mode(route) is None:
                raise ContractError(
                    f"route {route.dst}: no pool asks for {route.device} encapsulation"
                )

    def _check_route(self, route: m.RouteUpdate) -> None:
        what = f"route {route.dst} via {route.dst_node}"
        if route.device == m.VXLAN_DEVICE:
            vtep = self.vteps.get(route.dst_node)
            if vtep is None or vtep.ipv4_addr != route.gateway:
                raise ContractError(f"{what}: gateway {route.gateway} is not the node's VTEP")
        else:
            host = self.hosts.get(route.dst_node)
            addr = host.ipv4_addr.split("/")[0] if host and host.ipv4_addr else None
            if addr != route.gateway:
                raise ContractError(f"{what}: gateway {route.gateway} is not the node's address")

    def _check_node_unrouted(self, node: str, what: str, device: str | None) -> None:
        for route in self.routes.values():
            if route.dst_node == node and device in (None, route.device):
                raise ContractError(f"{what} removed while route {route.dst} uses it")

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
            tiers.extend(ep.tiers + (ep.staged_tiers or ()))
        for hep in self.host_endpoints.values():
            tiers.extend(hep.tiers + hep.untracked_tiers + hep.pre_dnat_tiers + hep.forward_tiers)
            tiers.extend(hep.staged_tiers or ())
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
