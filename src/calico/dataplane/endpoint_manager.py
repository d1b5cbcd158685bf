"""EndpointManager: workload and host endpoints -> per-endpoint chains, dispatch map entries and
desired workload routes (convert only: it writes into the drivers' desired state, no I/O).

Per-endpoint chain shape (normal policies; the ingress of a workload is ``cali-tw-<iface>``)::

    ct state established,related accept ; ct state invalid drop
    [host endpoints: jump cali-failsafe-in|out]
    clear ACCEPT/PASS marks
    jump <policy 1> ; accepted? return          (Allow in a policy -> ACCEPT mark + return)
    not passed? jump <policy 2> ; accepted? return ...
    not passed? drop                            (policies applied, none allowed: default deny)
    jump <profile 1> ; accepted? return ...     (no policy applied, or Pass)
    drop                                        (no profile allowed)

Forwarded traffic through a host endpoint uses only applyOnForward policies, no profiles, and is
allowed when none apply; preDNAT and doNotTrack chains have no default deny.
"""

from __future__ import annotations

from calico.dataplane import nft_render as r
from calico.dataplane import nft_table, route_table
from calico.dpapi import messages as m

NORMAL, FORWARD, PRE_DNAT, UNTRACKED = "normal", "forward", "prednat", "untracked"
_ON_ALLOW = {
    NORMAL: "return",
    FORWARD: "return",
    PRE_DNAT: "accept",
    UNTRACKED: f"meta mark set meta mark | {r.MARK_UNTRACKED:#x} notrack accept",
}


# One host-endpoint chain: stem, tiers, profiles, inbound, kind, failsafe chain.
_HepChain = tuple[str, tuple[m.TierInfo, ...], tuple[str, ...] | None, bool, str, str | None]


def endpoint_chain(
    policies: tuple[m.PolicyID, ...],
    profiles: tuple[str, ...] | None,
    *,
    inbound: bool,
    kind: str = NORMAL,
    failsafe: str | None = None,
) -> tuple[str, ...]:
    """Rules of one endpoint chain for one direction (``profiles`` None: no profile stage)."""
    rules: list[str] = []
    if kind in (NORMAL, FORWARD):
        rules += ["ct state established,related accept", "ct state invalid counter drop"]
    if failsafe:
        rules.append(f"jump {failsafe}")
    rules.append(r.CLEAR_VERDICT)
    on_allow = _ON_ALLOW[kind]
    for i, pid in enumerate(policies):
        guard = "" if i == 0 else r.IF_NOT_PASSED + " "
        rules.append(f"{guard}jump {r.policy_chain(pid, inbound)}")
        rules.append(f"{r.IF_ACCEPTED} {on_allow}")
    if policies and kind in (NORMAL, FORWARD):
        rules.append(r.with_comment(f"{r.IF_NOT_PASSED} counter drop"))
    if kind == NORMAL and profiles is not None:
        for name in profiles:
            rules.append(f"jump {r.profile_chain(name, inbound)}")
            rules.append(f"{r.IF_ACCEPTED} {on_allow}")
        rules.append(r.with_comment("counter drop"))
    return tuple(rules)


def _tier_policies(tiers: tuple[m.TierInfo, ...], inbound: bool) -> tuple[m.PolicyID, ...]:
    out: list[m.PolicyID] = []
    for tier in tiers:
        out.extend(tier.ingress_policies if inbound else tier.egress_policies)
    return tuple(out)


class EndpointManager:
    def __init__(self, table: nft_table.NftTable, routes: route_table.RouteTable) -> None:
        self._table = table
        self._routes = routes
        self._weps: dict[str, m.WorkloadEndpoint] = {}
        self._heps: dict[str, m.HostEndpoint] = {}
        self._chains: dict[str, list[tuple[str, str, str]]] = {}  # ep id -> (chain, map, iface)

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.WorkloadEndpointUpdate(id=ep_id, endpoint=ep):
                self._remove(ep_id)
                self._weps[ep_id] = ep
                self._program_wep(ep_id, ep)
            case m.WorkloadEndpointRemove(id=ep_id):
                self._remove(ep_id)
            case m.HostEndpointUpdate(id=ep_id, endpoint=hep):
                self._remove(ep_id)
                self._heps[ep_id] = hep
                self._program_hep(ep_id, hep)
            case m.HostEndpointRemove(id=ep_id):
                self._remove(ep_id)

    def _add(self, ep_id: str, stem: str, iface: str, rules: tuple[str, ...]) -> None:
        """Chain ``<stem>-<iface>`` with ``rules``, dispatched to from map ``<stem>-map``."""
        chain, map_name = f"{stem}-{iface}", f"{stem}-map"
        self._table.set_chain(chain, rules)
        self._table.set_map_element(map_name, iface, f"goto {chain}")
        self._chains.setdefault(ep_id, []).append((chain, map_name, iface))

    def _remove(self, ep_id: str) -> None:
        wep = self._weps.pop(ep_id, None)
        if wep is not None:
            self._routes.set_routes(wep.iface, ())
        self._heps.pop(ep_id, None)
        for chain, map_name, iface in self._chains.pop(ep_id, []):
            self._table.delete_map_element(map_name, iface)
            self._table.delete_chain(chain)

    def _program_wep(self, ep_id: str, ep: m.WorkloadEndpoint) -> None:
        iface = ep.iface
        if not iface:
            return
        ingress = endpoint_chain(_tier_policies(ep.tiers, True), ep.profile_ids, inbound=True)
        egress = endpoint_chain(_tier_policies(ep.tiers, False), ep.profile_ids, inbound=False)
        self._add(ep_id, "cali-tw", iface, ingress)
        self._add(ep_id, "cali-fw", iface, egress)
        self._routes.set_routes(iface, ep.ipv4_nets + ep.ipv6_nets)

    def _program_hep(self, ep_id: str, hep: m.HostEndpoint) -> None:
        iface = hep.iface
        prof = hep.profile_ids
        # (chain stem, tiers, profiles, inbound, kind, failsafe chain). Host traffic: traffic
        # arriving from the interface is the endpoint's ingress.
        chains: tuple[_HepChain, ...] = (
            ("cali-fh", hep.tiers, prof, True, NORMAL, "cali-failsafe-in"),
            ("cali-th", hep.tiers, prof, False, NORMAL, "cali-failsafe-out"),
            ("cali-fhfw", hep.forward_tiers, None, True, FORWARD, None),
            ("cali-thfw", hep.forward_tiers, None, False, FORWARD, None),
            ("cali-fhdnat", hep.pre_dnat_tiers, None, True, PRE_DNAT, None),
            ("cali-fhraw", hep.untracked_tiers, None, True, UNTRACKED, "cali-failsafe-in"),
            ("cali-thraw", hep.untracked_tiers, None, False, UNTRACKED, "cali-failsafe-out"),
        )
        for stem, tiers, profiles, inbound, kind, failsafe in chains:
            policies = _tier_policies(tiers, inbound)
            rules = endpoint_chain(
                policies, profiles, inbound=inbound, kind=kind, failsafe=failsafe
            )
            self._add(ep_id, stem, iface, rules)
