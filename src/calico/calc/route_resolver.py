"""RouteResolver: the encapsulated routes this node needs (one resolver for IPIP and VXLAN).

Destinations ("candidates") and the node each belongs to:

* an IPAM block affine to node N -> N;
* a workload address (/32, /128) on node N not covered by a block affine to N (borrowed from
  another node's block, or in no block at all) -> N.

A candidate gets a ``RouteUpdate`` when N is another node and the most specific IPPool holding
it encapsulates towards N: ``vxlanMode`` (else ``ipipMode``) ``Always``, or ``CrossSubnet`` when
N's IPv4 address is outside this node's subnet (the prefix length of ``spec.bgp.ipv4Address``;
an unknown address counts as another subnet). VXLAN routes go via N's VXLAN tunnel address on
``vxlan.calico`` and need N's tunnel address, MAC and IPv4 address; IPIP routes go via N's IPv4
address on ``tunl0`` (the kernel takes the outer destination from the gateway). A node lacking
what its mode needs gets no route, and the reason is logged once per change.

Work per change grows with the change: a block dirties itself and the workload addresses inside
it; a workload its addresses; node N the candidates that belong to N (this node: all of them, the
subnet decides); a pool the candidates inside it. Dirty candidates are recomputed in ``flush()``.

Memory: every remote workload address is a candidate, so a candidate is kept as one ``int``
(:func:`cidr_key`: family, address and prefix length packed; ordered as the networks are), shared
by every index it is in, and an address held by one workload maps to that workload's id rather
than to a set (0.3 KB an endpoint instead of 0.9 KB with ``IPv4Network`` objects and sets).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable

from calico.calc import event_sequencer
from calico.calc import network_validation as nv
from calico.dpapi import messages as m

logger = logging.getLogger(__name__)

Net = nv.Net
Key = int  # a CIDR packed by cidr_key()
# Workload addresses are bucketed by their /20 (/116): a block of a valid pool (blockSize 20-32,
# 116-128) lies inside one bucket, so finding the addresses inside a block scans one bucket.
BUCKET = {4: 20, 6: 116}
_V6 = 1 << 136  # above every packed IPv4 CIDR: IPv4 sorts first, as the networks do
_MAX = {4: 32, 6: 128}


def cidr_key(net: Net) -> Key:
    """``net`` as one int: (IPv6 flag, network address, prefix length), ordered like ``Net``."""
    return (_V6 if net.version == 6 else 0) | int(net.network_address) << 8 | net.prefixlen


def _parts(key: Key) -> tuple[int, int, int]:
    """(version, network address, prefix length) of a packed CIDR."""
    return (6 if key & _V6 else 4), (key & (_V6 - 1)) >> 8, key & 0xFF


def _supernet(key: Key, plen: int) -> Key:
    version, addr, own = _parts(key)
    plen = min(plen, own)
    shift = _MAX[version] - plen
    return (key & _V6) | (addr >> shift << shift) << 8 | plen


def _inside(key: Key, outer: Key) -> bool:
    """Whether CIDR ``key`` lies inside CIDR ``outer`` (same family)."""
    return (
        (key & _V6) == (outer & _V6)
        and (key & 0xFF) >= (outer & 0xFF)
        and (_supernet(key, outer & 0xFF) == outer)
    )


def cidr_text(key: Key) -> str:
    version, addr, plen = _parts(key)
    return f"{ipaddress.ip_address(addr) if version == 4 else ipaddress.IPv6Address(addr)}/{plen}"


def _each(addrs: Key | tuple[Key, ...]) -> tuple[Key, ...]:
    """A workload's addresses: kept as one ``Key`` when it has one (nearly every workload)."""
    return (addrs,) if isinstance(addrs, int) else addrs


def _bucket(key: Key) -> Key:
    return _supernet(key, BUCKET[_parts(key)[0]])


class RouteResolver:
    def __init__(
        self, hostname: str, sequencer: event_sequencer.EventSequencer, *, quiet: bool = False
    ) -> None:
        self.hostname = hostname
        self._quiet = quiet  # a full-recompute check's graph: no logs
        self._seq = sequencer
        self._pools: dict[str, tuple[Key, nv.PoolData]] = {}
        self._nodes: dict[str, nv.NodeData] = {}
        self._blocks: dict[Key, str | None] = {}
        self._block_lens: Counter[tuple[int, int]] = Counter()  # (version, prefixlen) in use
        self._wl_nets: dict[str, tuple[str, Key | tuple[Key, ...]]] = {}  # wep id -> node, addrs
        self._wl_by_addr: dict[Key, str | set[str]] = {}  # addr -> its wep id (or ids)
        self._wl_buckets: dict[Key, set[Key]] = defaultdict(set)
        self._owner: dict[Key, str] = {}  # candidate -> its node (as of the last flush)
        self._owned: dict[str, set[Key]] = defaultdict(set)
        self._routes: dict[Key, m.RouteUpdate] = {}
        self._dirty: set[Key] = set()
        self._why: dict[tuple[str, str], str] = {}  # (node, pool) -> why no route (logged)

    # ---- inputs -------------------------------------------------------------------------------

    def on_pool(self, name: str, pool: nv.PoolData | None) -> None:
        old = self._pools.get(name)
        if (old[1] if old else None) == pool:
            return  # rewritten unchanged: nothing to recompute
        if pool is None:
            del self._pools[name]
        else:
            self._pools[name] = (cidr_key(pool.net), pool)
        for entry in (old, self._pools.get(name)):
            if entry is not None:
                self._dirty |= self._candidates_in(entry[0])

    def on_node(self, name: str, node: nv.NodeData | None) -> None:
        if self._nodes.get(name) == node:
            return  # e.g. calico-node rewriting its Node unchanged
        if node is None:
            self._nodes.pop(name, None)
            self._why = {k: v for k, v in self._why.items() if k[0] != name}
        else:
            self._nodes[name] = node
        if name == self.hostname:
            self._dirty |= set(self._blocks) | set(self._wl_by_addr)
        else:
            self._dirty |= self._owned.get(name, set())

    def on_block(self, net: Net, node: str | None, *, present: bool) -> None:
        key = cidr_key(net)
        if key in self._blocks:
            self._block_lens[(net.version, net.prefixlen)] -= 1
            del self._blocks[key]
        if present:
            self._blocks[key] = node
            self._block_lens[(net.version, net.prefixlen)] += 1
        self._block_lens = +self._block_lens  # drop zero counts
        self._dirty.add(key)
        self._dirty |= self._workload_addrs_in(key)

    def on_workload(self, wep_id: str, node: str | None, nets: tuple[str, ...]) -> None:
        old = self._wl_nets.pop(wep_id, None)
        if old is not None:
            for addr in _each(old[1]):
                self._drop_addr(addr, wep_id)
                self._dirty.add(addr)
        if node is None:
            return
        addrs = tuple(
            cidr_key(n)
            for n in (ipaddress.ip_network(x, strict=False) for x in nets)
            if n.prefixlen == n.max_prefixlen
        )
        self._wl_nets[wep_id] = (node, addrs[0] if len(addrs) == 1 else addrs)
        for addr in addrs:
            self._add_addr(addr, wep_id)
            self._dirty.add(addr)

    def _add_addr(self, addr: Key, wep_id: str) -> None:
        held = self._wl_by_addr.get(addr)
        if held is None:
            self._wl_by_addr[addr] = wep_id
            self._wl_buckets[_bucket(addr)].add(addr)
        elif isinstance(held, str):
            if held != wep_id:
                self._wl_by_addr[addr] = {held, wep_id}
        else:
            held.add(wep_id)

    def _drop_addr(self, addr: Key, wep_id: str) -> None:
        held = self._wl_by_addr.get(addr)
        if isinstance(held, set):
            held.discard(wep_id)
            if len(held) == 1:
                self._wl_by_addr[addr] = next(iter(held))
        elif held == wep_id:
            del self._wl_by_addr[addr]
            bucket = _bucket(addr)
            self._wl_buckets[bucket].discard(addr)
            if not self._wl_buckets[bucket]:
                del self._wl_buckets[bucket]

    # ---- lookups ------------------------------------------------------------------------------

    def _candidates_in(self, net: Key) -> set[Key]:
        return {c for c in (*self._blocks, *self._wl_by_addr) if _inside(c, net)}

    def _workload_addrs_in(self, block: Key) -> set[Key]:
        version, _, plen = _parts(block)
        if plen >= BUCKET[version]:
            pool: Iterable[Key] = self._wl_buckets.get(_bucket(block), ())
        else:
            pool = self._wl_by_addr
        return {a for a in pool if _inside(a, block)}

    def _block_of(self, addr: Key) -> Key | None:
        """The most specific block holding ``addr`` (overlapping blocks are a datastore error,
        but the answer must not depend on history)."""
        version, _, own = _parts(addr)
        for v, plen in sorted(self._block_lens, reverse=True):
            if v == version and plen <= own:
                sup = _supernet(addr, plen)
                if sup in self._blocks:
                    return sup
        return None

    def _pool_of(self, dst: Key) -> nv.PoolData | None:
        """The most specific pool holding ``dst``; of equal ones the first by name (overlapping
        pools are refused by validation on write, but the answer must not depend on history)."""
        holding = [p for key, p in self._pools.values() if _inside(dst, key)]
        return min(holding, key=lambda p: (-p.net.prefixlen, p.name), default=None)

    def _owner_of(self, dst: Key) -> tuple[str | None, str]:
        """(the node ``dst`` belongs to, route type)."""
        weps = self._wl_by_addr.get(dst)
        if weps:
            node = self._wl_nets[weps if isinstance(weps, str) else min(weps)][0]
            block = self._block_of(dst)
            if block is None or self._blocks[block] != node:
                return node, m.ROUTE_REMOTE_WORKLOAD
        if dst in self._blocks:
            return self._blocks[dst], m.ROUTE_REMOTE_BLOCK
        return None, m.ROUTE_REMOTE_BLOCK

    # ---- output -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Recompute the dirty candidates and tell the sequencer what changed."""
        for dst in sorted(self._dirty):
            owner, rtype = self._owner_of(dst)
            old_owner = self._owner.pop(dst, None)
            if old_owner is not None:
                self._owned[old_owner].discard(dst)
                if not self._owned[old_owner]:
                    del self._owned[old_owner]
            if owner is not None:
                self._owner[dst] = owner
                self._owned[owner].add(dst)
            route = self._route(dst, owner, rtype)
            if route != self._routes.get(dst):
                if route is None:
                    del self._routes[dst]
                else:
                    self._routes[dst] = route
                self._seq.on_route(cidr_text(dst), route)
        self._dirty.clear()

    def _route(self, dst: Key, owner: str | None, rtype: str) -> m.RouteUpdate | None:
        if owner is None or owner == self.hostname:
            return None
        pool = self._pool_of(dst)
        encap = pool.encap() if pool else None
        if pool is None or encap is None:
            return None
        device, mode = encap
        note = (owner, pool.name)
        if dst & _V6:
            self._note(note, "encapsulation of IPv6 pools is not supported")
            return None
        node = self._nodes.get(owner)
        if node is None or node.ipv4 is None:
            self._note(note, f"no Node {owner} with spec.bgp.ipv4Address")
            return None
        if mode == m.ENCAP_CROSS_SUBNET and self._same_subnet(node):
            return None  # BIRD's route, not encapsulated
        gateway = str(node.ipv4.ip)
        if device == m.VXLAN_DEVICE:
            if not (node.vxlan_tunnel_addr and node.vxlan_mac):
                field = (
                    "ipv4VXLANTunnelAddr" if not node.vxlan_tunnel_addr else "vxlanTunnelMACAddr"
                )
                self._note(note, f"Node {owner} has no spec.{field}")
                return None
            gateway = node.vxlan_tunnel_addr
        self._note(note, "")
        return m.RouteUpdate(cidr_text(dst), rtype, owner, gateway, device)

    def _same_subnet(self, node: nv.NodeData) -> bool:
        me = self._nodes.get(self.hostname)
        if me is None or me.ipv4 is None or node.ipv4 is None:
            return False
        return node.ipv4.ip in me.ipv4.network

    def _note(self, note: tuple[str, str], why: str) -> None:
        """Log why node ``note[0]`` gets no routes in pool ``note[1]`` (once per change)."""
        if self._why.get(note, "") == why:
            return
        if self._quiet:
            pass
        elif why:
            logger.warning("no encapsulated routes to node %s in pool %s: %s", *note, why)
        else:
            logger.info("encapsulated routes to node %s in pool %s resolved", *note)
        if why:
            self._why[note] = why
        else:
            del self._why[note]

    def problems(self) -> dict[tuple[str, str], str]:
        """Why some nodes get no encapsulated routes: (node, pool) -> reason."""
        return dict(self._why)
