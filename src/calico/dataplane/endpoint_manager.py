"""EndpointManager: workload and host endpoints -> per-endpoint chains, shared tier chains,
dispatch map entries and desired workload routes (convert only: it writes into the drivers'
desired state, no I/O).

Each endpoint chain is the rendering of a ``policy_plan.ChainPlan`` (``endpoint_render``); the
tier chains it jumps to are shared by every endpoint with the same tier step and reference-counted
here: made with their first user, deleted with their last.

Host endpoints get seven chains: host traffic (``cali-fh-``/``cali-th-``: normal policies, then
profiles), forwarded traffic (``cali-fhfw-``/``cali-thfw-``: applyOnForward policies, no profiles,
allowed when none apply), preDNAT (``cali-fhdnat-``, ingress only) and doNotTrack
(``cali-fhraw-``/``cali-thraw-``); preDNAT and doNotTrack chains never apply a tier's default drop.

Flow logs (``flowlog_render``): with them on, the endpoint's normal chains whose staged plan differs
from the real one run the staged walk first (its chains shared and counted like tier chains; the
shadow policy/profile chains it jumps to are counted in the PolicyManager). ``staged_plans`` keeps
each such chain's staged plan beside ``plans``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from calico.dataplane import endpoint_render, nft_table, policy_manager, route_table
from calico.dataplane import flowlog_render as fl
from calico.dpapi import messages as m
from calico.dpapi import policy_plan as plan

# One host-endpoint chain: stem, tiers, profiles, inbound, kind, failsafe chain.
_HepChain = tuple[str, tuple[m.TierInfo, ...], tuple[str, ...] | None, bool, str, str | None]


class EndpointManager:
    def __init__(
        self,
        table: nft_table.NftTable,
        routes: route_table.RouteTable,
        policies: policy_manager.PolicyManager | None = None,
    ) -> None:
        self._table = table
        self._routes = routes
        self._policies = policies or policy_manager.PolicyManager(table)
        self.points = self._policies.points
        self.flow_logs = fl.OFF
        self._weps: dict[str, m.WorkloadEndpoint] = {}
        self._heps: dict[str, m.HostEndpoint] = {}
        self._chains: dict[str, list[tuple[str, str, str]]] = {}  # ep id -> (chain, map, iface)
        self._tier_refs: Counter[str] = Counter()  # shared chain -> endpoint chains using it
        self._ep_tiers: dict[str, list[str]] = {}  # ep id -> the shared chains it uses
        self._ep_shadows: dict[str, list[policy_manager.Owner]] = {}  # ep id -> shadow refs
        self.plans: dict[str, plan.ChainPlan] = {}  # endpoint chain -> its plan (explain)
        self.staged_plans: dict[str, plan.ChainPlan] = {}  # endpoint chain -> its staged plan
        self.chain_by_iface: dict[tuple[str, bool], str] = {}  # (iface, inbound) -> normal chain

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.WorkloadEndpointUpdate(id=ep_id, endpoint=ep):
                self._replace(ep_id, lambda: self._program_wep(ep_id, ep))
                self._weps[ep_id] = ep
            case m.WorkloadEndpointRemove(id=ep_id):
                self._replace(ep_id, None)
            case m.HostEndpointUpdate(id=ep_id, endpoint=hep):
                self._replace(ep_id, lambda: self._program_hep(ep_id, hep))
                self._heps[ep_id] = hep
            case m.HostEndpointRemove(id=ep_id):
                self._replace(ep_id, None)

    def endpoint(
        self, name: str, *, host: bool = False
    ) -> m.WorkloadEndpoint | m.HostEndpoint | None:
        """The local endpoint named ``name`` (a WorkloadEndpoint's ``namespace/name``, a
        HostEndpoint's name), as last programmed; None if this node has none by that name."""
        eps: dict[str, m.WorkloadEndpoint] | dict[str, m.HostEndpoint] = (
            self._heps if host else self._weps
        )
        for ep in eps.values():
            if ep.name == name:
                return ep
        return None

    def tier_chain_count(self) -> int:
        return sum(1 for name in self._tier_refs if name.startswith(("cali-ti-", "cali-to-")))

    def set_flow_logs(self, cfg: fl.FlowLogConfig) -> None:
        """New flow-log settings: every endpoint is programmed again (twins, staged walks)."""
        if cfg == self.flow_logs:
            return
        self.flow_logs = cfg
        self._policies.set_flow_logs(cfg)
        for ep_id, wep in list(self._weps.items()):
            self._replace(ep_id, lambda: self._program_wep(ep_id, wep))  # noqa: B023
            self._weps[ep_id] = wep
        for ep_id, hep in list(self._heps.items()):
            self._replace(ep_id, lambda: self._program_hep(ep_id, hep))  # noqa: B023
            self._heps[ep_id] = hep

    # ---- state --------------------------------------------------------------------------------

    def _replace(self, ep_id: str, program: Callable[[], None] | None) -> None:
        """Remove what ``ep_id`` had, then program it anew; shared chains it keeps using stay."""
        old_tiers = self._ep_tiers.pop(ep_id, [])
        old_shadows = self._ep_shadows.pop(ep_id, [])
        self._remove(ep_id)
        if program is not None:
            program()
        for name in old_tiers:
            self._unref_tier(name)
        for owner in old_shadows:
            self._policies.unref_shadow(owner)

    def _add(
        self,
        ep_id: str,
        stem: str,
        iface: str,
        chain: plan.ChainPlan,
        staged: plan.ChainPlan | None = None,
        **kw: str,
    ) -> None:
        """Chain ``<stem>-<iface>`` rendering ``chain``, dispatched to from map ``<stem>-map``;
        ``staged``: the chain's staged plan, walked first when flow logs are on."""
        name, map_name = f"{stem}-{iface}", f"{stem}-map"
        cfg = self.flow_logs
        shared = endpoint_render.render_tier_chains(chain, flow_logs=cfg)
        walk = None
        if staged is not None and cfg.staged and staged != chain:
            walk = endpoint_render.staged_walk_name(staged)
            shared.update(endpoint_render.staged_walk(staged, flow_logs=cfg))
            for owner in endpoint_render.shadow_owners(staged):
                self._policies.ref_shadow(owner)
                self._ep_shadows.setdefault(ep_id, []).append(owner)
            self.staged_plans[name] = staged
        for shared_name, (rules, points) in shared.items():
            self._tier_refs[shared_name] += 1
            self._table.set_chain(shared_name, rules)  # a no-op when unchanged
            self.points.set(shared_name, points)
            self._ep_tiers.setdefault(ep_id, []).append(shared_name)
        rules, points = endpoint_render.render_endpoint_chain(
            chain, failsafe=kw.get("fs"), flow_logs=cfg, staged_walk=walk
        )
        self._table.set_chain(name, rules)
        self.points.set(name, points)
        self._table.set_map_element(map_name, iface, f"goto {name}")
        self._chains.setdefault(ep_id, []).append((name, map_name, iface))
        self.plans[name] = chain
        if chain.kind == plan.NORMAL:
            self.chain_by_iface[(iface, chain.inbound)] = name

    def _unref_tier(self, name: str) -> None:
        self._tier_refs[name] -= 1
        if self._tier_refs[name] <= 0:
            del self._tier_refs[name]
            self._table.delete_chain(name)
            self.points.drop(name)

    def _remove(self, ep_id: str) -> None:
        wep = self._weps.pop(ep_id, None)
        if wep is not None:
            self._routes.set_routes(wep.iface, ())
        self._heps.pop(ep_id, None)
        for chain, map_name, iface in self._chains.pop(ep_id, []):
            self._table.delete_map_element(map_name, iface)
            self._table.delete_chain(chain)
            self.points.drop(chain)
            self.plans.pop(chain, None)
            self.staged_plans.pop(chain, None)
            for key in ((iface, True), (iface, False)):
                if self.chain_by_iface.get(key) == chain:
                    del self.chain_by_iface[key]

    # ---- endpoints ----------------------------------------------------------------------------

    def _program_wep(self, ep_id: str, ep: m.WorkloadEndpoint) -> None:
        iface = ep.iface
        if not iface:
            return
        for stem, inbound in (("cali-tw", True), ("cali-fw", False)):
            chain = plan.chain_plan(ep.tiers, ep.profile_ids, inbound=inbound)
            staged = _staged_plan(ep.staged_tiers, ep.profile_ids, inbound)
            self._add(ep_id, stem, iface, chain, staged)
        self._routes.set_routes(iface, ep.ipv4_nets + ep.ipv6_nets)

    def _program_hep(self, ep_id: str, hep: m.HostEndpoint) -> None:
        prof = hep.profile_ids
        # Host traffic: traffic arriving from the interface is the endpoint's ingress.
        chains: tuple[_HepChain, ...] = (
            ("cali-fh", hep.tiers, prof, True, plan.NORMAL, "cali-failsafe-in"),
            ("cali-th", hep.tiers, prof, False, plan.NORMAL, "cali-failsafe-out"),
            ("cali-fhfw", hep.forward_tiers, None, True, plan.FORWARD, None),
            ("cali-thfw", hep.forward_tiers, None, False, plan.FORWARD, None),
            ("cali-fhdnat", hep.pre_dnat_tiers, None, True, plan.PRE_DNAT, None),
            ("cali-fhraw", hep.untracked_tiers, None, True, plan.UNTRACKED, "cali-failsafe-in"),
            ("cali-thraw", hep.untracked_tiers, None, False, plan.UNTRACKED, "cali-failsafe-out"),
        )
        for stem, tiers, profiles, inbound, kind, failsafe in chains:
            chain = plan.chain_plan(tiers, profiles, inbound=inbound, kind=kind)
            staged = _staged_plan(hep.staged_tiers, prof, inbound) if kind == plan.NORMAL else None
            fs = {"fs": failsafe} if failsafe else {}
            self._add(ep_id, stem, hep.iface, chain, staged, **fs)


def _staged_plan(
    tiers: tuple[m.TierInfo, ...] | None, profiles: tuple[str, ...], inbound: bool
) -> plan.ChainPlan | None:
    return None if tiers is None else plan.chain_plan(tiers, profiles, inbound=inbound)
