"""EncapManager: pools, hosts, VTEPs and encapsulated routes -> the tunnel devices, their routes,
ARP/FDB entries and the tunnel filter (convert only: desired state for the drivers, no I/O).

* VXLAN is in use while a pool has ``vxlanMode`` != Never: ``vxlan.calico`` (VNI, port, MTU from
  config; ``local`` = this node's address; its tunnel address /32 and MAC from this node's VTEP),
  a permanent ARP entry and an FDB entry per remote VTEP, and the VXLAN routes. Not in use: the
  device goes (with everything on it).
* IPIP is in use while a pool has ``ipipMode`` != Never: ``tunl0`` (MTU from config, this node's
  IPIP tunnel address /32) and the IPIP routes.
* ``cali-encap-in`` (jumped to from ``cali-INPUT``): while a mode is in use, its packets to this
  host are accepted from cluster nodes (``cali40-all-hosts``) and dropped from anyone else.

Routes are handed to the route table only for devices that exist (``after_links``): a device the
kernel cannot make (no ``ipip`` module) holds its routes back, and is reported as a *problem*
naming the pools that need it, while everything else is programmed.
"""

from __future__ import annotations

from dataclasses import dataclass

from calico.dataplane import hostip_manager, links, neighbors, nft_table, route_table
from calico.dataplane import nft_render as r
from calico.dpapi import messages as m

CHAIN = "cali-encap-in"
KIND = {m.VXLAN_DEVICE: "VXLAN", m.IPIP_DEVICE: "IPIP"}


@dataclass(frozen=True, slots=True)
class EncapConfig:
    vxlan_mtu: int = 0  # 0: parent MTU - 50
    ipip_mtu: int = 0  # 0: parent MTU - 20
    vxlan_vni: int = 4096
    vxlan_port: int = 4789


def filter_rules(*, vxlan_port: int | None, ipip: bool) -> tuple[str, ...]:
    hosts = hostip_manager.ALL_HOSTS[4]
    rules = []
    if vxlan_port is not None:
        match = f"udp dport {vxlan_port}"
        rules.append(r.with_comment(f"ip saddr @{hosts} {match} counter accept"))
        rules.append(r.with_comment(f"meta nfproto ipv4 {match} counter drop"))
    if ipip:
        rules.append(r.with_comment(f"ip protocol 4 ip saddr @{hosts} counter accept"))
        rules.append(r.with_comment("ip protocol 4 counter drop"))
    return tuple(rules)


class EncapManager:
    def __init__(self, table: nft_table.NftTable, hostname: str) -> None:
        self._table = table
        self.hostname = hostname
        self.config = EncapConfig()
        self._pools: dict[str, m.IPPool] = {}
        self._me: m.HostMetadataUpdate | None = None
        self._vteps: dict[str, m.VXLANTunnelEndpointUpdate] = {}
        self._routes: dict[str, dict[str, str]] = {m.VXLAN_DEVICE: {}, m.IPIP_DEVICE: {}}
        self._route_dev: dict[str, str] = {}  # dst -> device
        self._changed_dsts: set[str] = set()  # routes changed since the last after_links
        self._pushed: set[str] = set()  # devices whose routes the route table has
        self._dirty = True
        table.set_chain(CHAIN, ())

    @property
    def dirty(self) -> bool:
        return self._dirty or bool(self._changed_dsts)

    def set_config(self, config: EncapConfig) -> None:
        if config != self.config:
            self.config = config
            self._dirty = True

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.IPAMPoolUpdate(id=pool_id, pool=pool):
                self._pools[pool_id] = pool
            case m.IPAMPoolRemove(id=pool_id):
                self._pools.pop(pool_id, None)
            case m.HostMetadataUpdate(hostname=name) if name == self.hostname:
                self._me = msg
            case m.HostMetadataRemove(hostname=name) if name == self.hostname:
                self._me = None
            case m.VXLANTunnelEndpointUpdate(node=node):
                self._vteps[node] = msg
            case m.VXLANTunnelEndpointRemove(node=node):
                self._vteps.pop(node, None)
            case m.RouteUpdate(dst=dst, device=dev, gateway=gw):
                self._drop_route(dst)
                self._routes[dev][dst] = gw
                self._route_dev[dst] = dev
                return  # a route changes no device: only after_links' per-route push
            case m.RouteRemove(dst=dst):
                self._drop_route(dst)
                return
            case _:
                return
        self._dirty = True

    def _drop_route(self, dst: str) -> None:
        self._changed_dsts.add(dst)
        dev = self._route_dev.pop(dst, None)
        if dev is not None:
            del self._routes[dev][dst]

    def pools_using(self, device: str) -> list[str]:
        attr = "vxlan_mode" if device == m.VXLAN_DEVICE else "ipip_mode"
        return sorted(i for i, p in self._pools.items() if getattr(p, attr) != m.ENCAP_NEVER)

    # ---- desired state ------------------------------------------------------------------------

    def complete_deferred_work(self, links_: links.Links, neighbors_: neighbors.Neighbors) -> None:
        """Desired devices, ARP/FDB entries and the tunnel filter (before the drivers apply)."""
        if not self._dirty:
            return
        vxlan = self._vxlan_device()
        links_.set_device(m.VXLAN_DEVICE, vxlan)
        links_.set_device(m.IPIP_DEVICE, self._ipip_device())
        remote = [v for n, v in sorted(self._vteps.items()) if n != self.hostname]
        if vxlan is None:
            remote = []
        neighbors_.set_entries(
            {v.ipv4_addr: v.mac for v in remote}, {v.mac: v.parent_device_ip for v in remote}
        )
        vxlan_on = bool(self.pools_using(m.VXLAN_DEVICE))
        self._table.set_chain(
            CHAIN,
            filter_rules(
                vxlan_port=self.config.vxlan_port if vxlan_on else None,
                ipip=bool(self.pools_using(m.IPIP_DEVICE)),
            ),
        )
        self._dirty = False

    def _vxlan_device(self) -> links.Device | None:
        me = self._vteps.get(self.hostname)
        if not self.pools_using(m.VXLAN_DEVICE) or me is None:
            return None
        cfg = self.config
        return links.Device(
            m.VXLAN_DEVICE,
            "vxlan",
            mtu=cfg.vxlan_mtu,
            addrs=(f"{me.ipv4_addr}/32",),
            local=me.parent_device_ip,
            mac=me.mac.lower(),
            vni=cfg.vxlan_vni,
            port=cfg.vxlan_port,
        )

    def _ipip_device(self) -> links.Device | None:
        if not self.pools_using(m.IPIP_DEVICE):
            return None
        me = self._me
        tunnel = me.ipip_tunnel_addr if me else None
        return links.Device(
            m.IPIP_DEVICE,
            "ipip",
            mtu=self.config.ipip_mtu,
            addrs=(f"{tunnel}/32",) if tunnel else (),
            local=me.ipv4_addr.split("/")[0] if me and me.ipv4_addr else None,
        )

    def after_links(
        self,
        changes: links.Changes,
        routes: route_table.RouteTable,
        neighbors_: neighbors.Neighbors,
    ) -> None:
        """Routes for the devices that exist (all of them when a device appears or goes, else
        only the changed ones); resync what a (re)created device lost."""
        for dev in links.OWNED:
            if dev in changes.deleted:
                routes.forget_iface(dev)
            if dev in changes.created:
                routes.queue_resync()
            present = dev in changes.present
            if present != (dev in self._pushed):
                routes.set_gateway_routes(dev, self._routes[dev] if present else {})
                self._pushed ^= {dev}
            elif present:
                for dst in self._changed_dsts:
                    routes.set_gateway_route(dev, dst, self._routes[dev].get(dst))
        self._changed_dsts.clear()
        neighbors_.device_present = m.VXLAN_DEVICE in changes.present
        if m.VXLAN_DEVICE in changes.created:
            neighbors_.queue_resync()

    # ---- problems -----------------------------------------------------------------------------

    def problems(self, link_problems: dict[str, str]) -> list[str]:
        """What this node cannot do for its pools, in words naming the pools."""
        out = []
        for dev, text in sorted(link_problems.items()):
            pools = ", ".join(self.pools_using(dev))
            if dev == m.IPIP_DEVICE and "Unknown device type" in text:
                out.append(
                    f"IPIP pool(s) {pools}: the kernel has no 'ipip' module (creating {dev}: "
                    f"{text.strip()}); IPIP routes are not programmed"
                )
            else:
                out.append(f"{KIND[dev]} pool(s) {pools}: cannot program {dev}: {text.strip()}")
        vxlan_pools = self.pools_using(m.VXLAN_DEVICE)
        if vxlan_pools and self.hostname not in self._vteps:
            out.append(
                f"VXLAN pool(s) {', '.join(vxlan_pools)}: Node {self.hostname} lacks "
                "spec.ipv4VXLANTunnelAddr, spec.vxlanTunnelMACAddr or spec.bgp.ipv4Address; "
                "vxlan.calico is not set up"
            )
        return out
