"""This node's tunnel addresses (IPIP, VXLAN) and VXLAN MAC: allocated from IPAM, kept in its Node.

For each encapsulation, one reconcile pass (level-triggered: it reads the pools, the Node and the
IPAM handle fresh, so running it again changes nothing)::

    enabled IPv4 pools with <mode> != Never whose nodeSelector selects this node
        │
        ├─ none ──► remove the Node field (CAS), release the handle's addresses
        │
        └─ some ──► the Node's address lies in one of them and IPAM holds it for our handle
                    (a free address is claimed again)?  yes ─► keep it; release any extra ones
                                                        no  ─► allocate from those pools, write
                                                               the Node (CAS), release the old

tunnel  Node field                         IPAM handle                   attribute ``type``
IPIP    ``spec.bgp.ipv4IPIPTunnelAddr``    ``ipip-tunnel-addr-<node>``   ``ipipTunnelAddress``
VXLAN   ``spec.ipv4VXLANTunnelAddr``       ``vxlan-tunnel-addr-<node>``  ``vxlanTunnelAddress``

VXLAN also sets ``spec.vxlanTunnelMACAddr`` when it is missing: a locally administered unicast MAC
derived from the node name (the same name always gives the same MAC); an admin's MAC is kept.
The derived MAC is removed with the address; an admin's stays.

Ordering: a new address is written to the Node before the old one is released, and a removed
field is written before its address is released, so the datastore never names an address that
IPAM could hand to a pod. A crash between allocation and the Node write leaves the handle holding
an address the Node does not name; the next pass releases it. IPAM's writes are compare-and-swap,
so nodes allocating at the same time never get the same address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from calico.datastore.backend import Backend
from calico.datastore.client import Client, Conflict, NotFound
from calico.ipam.client import IPAMClient, IPAMError
from calico.ipam.pools import Pool, PoolError

logger = logging.getLogger(__name__)

Resource = dict[str, Any]


class TunnelError(Exception):
    """The Node could not be updated (it kept changing, or it does not exist)."""


@dataclass(frozen=True, slots=True)
class Tunnel:
    name: str  # "IPIP" | "VXLAN"
    mode_field: str  # the IPPool field: ipipMode | vxlanMode
    node_path: tuple[str, ...]  # where the address lives under Node.spec
    handle_prefix: str
    attr_type: str

    def handle(self, node_name: str) -> str:
        return f"{self.handle_prefix}{node_name}"


IPIP = Tunnel(
    "IPIP", "ipipMode", ("bgp", "ipv4IPIPTunnelAddr"), "ipip-tunnel-addr-", "ipipTunnelAddress"
)
VXLAN = Tunnel(
    "VXLAN", "vxlanMode", ("ipv4VXLANTunnelAddr",), "vxlan-tunnel-addr-", "vxlanTunnelAddress"
)
TUNNELS = (IPIP, VXLAN)
MAC_FIELD = "vxlanTunnelMACAddr"


@dataclass(frozen=True, slots=True)
class Change:
    tunnel: str
    old: str  # "" = none
    new: str  # "" = released


def derive_mac(node_name: str) -> str:
    """A locally administered unicast MAC from the node name (stable across restarts)."""
    raw = bytearray(hashlib.sha256(node_name.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def _labels(node: Mapping[str, Any]) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("labels") or {})


def wanted_pools(
    tunnel: Tunnel, pools: Iterable[Mapping[str, Any]], labels: Mapping[str, str]
) -> list[Pool]:
    """The enabled IPv4 pools with this tunnel's mode on whose nodeSelector selects the node."""
    out = []
    for obj in pools:
        spec = obj.get("spec") or {}
        if (spec.get(tunnel.mode_field) or "Never") == "Never" or spec.get("disabled"):
            continue
        try:
            pool = Pool.from_resource(obj)
            if pool.version == 4 and pool.selects(lambda: labels):
                out.append(pool)
        except (PoolError, ValueError) as exc:  # a bad selector fails closed for that pool
            logger.warning(
                "IPPool %s: ignored for %s addresses: %s", pool_name(obj), tunnel.name, exc
            )
    return sorted(out, key=lambda p: int(p.cidr.network_address))


def pool_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def get_address(node: Mapping[str, Any], tunnel: Tunnel) -> str:
    here: Any = node.get("spec") or {}
    for part in tunnel.node_path:
        here = here.get(part) if isinstance(here, Mapping) else None
    return str(here or "")


def set_address(node: Resource, tunnel: Tunnel, value: str) -> bool:
    """Set (or with "" remove) the tunnel's Node field and VXLAN's MAC; True if it changed."""
    spec = node.setdefault("spec", {})
    before = repr(spec)
    *parents, leaf = tunnel.node_path
    holder = spec
    for part in parents:
        holder = holder.setdefault(part, {})
    if value:
        holder[leaf] = value
    else:
        holder.pop(leaf, None)
        if parents and not holder:
            spec.pop(parents[0], None)
    if tunnel is VXLAN:
        name = str(node["metadata"]["name"])
        if value and not spec.get(MAC_FIELD):
            spec[MAC_FIELD] = derive_mac(name)
        elif not value and spec.get(MAC_FIELD) == derive_mac(name):
            spec.pop(MAC_FIELD)
    return repr(spec) != before


class TunnelAllocator:
    """Reconciles one node's tunnel addresses with the pools (see the module docstring)."""

    def __init__(self, backend: Backend, node_name: str, *, client: Client | None = None) -> None:
        self.backend = backend
        self.client = client or Client(backend)
        self.node_name = node_name

    def reconcile(self) -> list[Change]:
        """One pass over both tunnels; NotFound when this node has no Node resource."""
        pools = self.client.list("IPPool")
        changes = []
        for tunnel in TUNNELS:
            node = self.client.get("Node", self.node_name)
            change = self._reconcile_one(tunnel, pools, node)
            if change is not None:
                logger.info(
                    "%s tunnel address of %s: %s -> %s",
                    tunnel.name,
                    self.node_name,
                    change.old or "none",
                    change.new or "none",
                )
                changes.append(change)
        return changes

    def _reconcile_one(
        self, tunnel: Tunnel, pools: list[Resource], node: Resource
    ) -> Change | None:
        ipam = IPAMClient(self.backend, client=self.client)  # fresh: its node-label cache
        handle = tunnel.handle(self.node_name)
        current = get_address(node, tunnel)
        wanted = wanted_pools(tunnel, pools, _labels(node))
        if not wanted:
            self._write_node(tunnel, "")
            released = ipam.release_by_handle(handle)
            return Change(tunnel.name, current, "") if current or released else None
        if current and self._still_ours(ipam, tunnel, current, wanted):
            extra = [ip for ip in ipam.ips_by_handle(handle) if ip != current]
            if extra:
                ipam.release_ips(extra)
                logger.info("released stray %s addresses %s", tunnel.name, ", ".join(extra))
            self._write_node(tunnel, current)  # the VXLAN MAC, if it went missing
            return None
        old = ipam.ips_by_handle(handle)
        (new,) = ipam.auto_assign(
            handle_id=handle,
            host=self.node_name,
            num_v4=1,
            pools=[p.name for p in wanted],
            attrs={"node": self.node_name, "type": tunnel.attr_type},
        )
        try:
            self._write_node(tunnel, new)
        except Exception:
            ipam.release_ips([new])
            raise
        stale = [ip for ip in old if ip != new]
        if stale:
            ipam.release_ips(stale)
        return Change(tunnel.name, current, new)

    def _still_ours(self, ipam: IPAMClient, tunnel: Tunnel, addr: str, wanted: list[Pool]) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        if not any(ip in p.cidr for p in wanted if p.version == ip.version):
            return False
        handle = tunnel.handle(self.node_name)
        if addr in ipam.ips_by_handle(handle):
            return True
        info = ipam.ip_info(addr)
        if info is not None:
            return False  # someone else holds it now: ours is a new one
        try:  # free again (released behind our back): claim the same address
            ipam.assign_ip(
                addr,
                handle_id=handle,
                host=self.node_name,
                attrs={"node": self.node_name, "type": tunnel.attr_type},
            )
        except IPAMError:
            return False
        return True

    def _write_node(self, tunnel: Tunnel, value: str) -> None:
        self.update_node(lambda node: set_address(node, tunnel, value))

    def update_node(self, mutate: Callable[[Resource], bool], attempts: int = 20) -> Resource:
        """Read-modify-write our Node by CAS, keeping every field ``mutate`` leaves alone."""
        for _ in range(attempts):
            node = self.client.get("Node", self.node_name)
            if not mutate(node):
                return node
            try:
                return self.client.update(node)
            except (Conflict, NotFound):
                continue
        raise TunnelError(f"Node {self.node_name!r}: kept changing while being updated; gave up")


def reconcile_logged(allocator: TunnelAllocator) -> bool:
    """One pass; IPAM trouble (a full pool...) and a missing Node are logged. True if it worked."""
    try:
        allocator.reconcile()
    except (IPAMError, TunnelError, NotFound) as exc:
        logger.warning("tunnel addresses of %s not settled: %s", allocator.node_name, exc)
        return False
    return True
