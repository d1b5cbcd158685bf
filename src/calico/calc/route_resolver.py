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
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, defaultdict

from calico.calc import event_sequencer
from calico.calc import network_validation as nv
from calico.dpapi import messages as m

logger = logging.getLogger(__name__)

Net = nv.Net
# Workload addresses are bucketed by their /20 (/116): a block of a valid pool (blockSize 20-32,
# 116-128) lies inside one bucket, so finding the addresses inside a block scans one bucket.
BUCKET = {4: 20, 6: 116}


def _bucket(net: Net) -> Net:
    return net.supernet(new_prefix=min(BUCKET[net.version], net.prefixlen))


class RouteResolver:
    def __init__(
        self, hostname: str, sequencer: event_sequencer.EventSequencer, *, quiet: bool = False
    ) -> None:
        self.hostname = hostname
        self._quiet = quiet  # a full-recompute check's graph: no logs
        self._seq = sequencer
        self._pools: dict[str, nv.PoolData] = {}
        self._nodes: dict[str, nv.NodeData] = {}
        self._blocks: dict[Net, str | None] = {}
        self._block_lens: Counter[tuple[int, int]] = Counter()  # (version, prefixlen) in use
        self._wl_nets: dict[str, tuple[str, tuple[Net, ...]]] = {}  # wep id -> (node, addrs)
        self._wl_by_addr: dict[Net, set[str]] = defaultdict(set)  # addr -> wep ids
        self._wl_buckets: dict[Net, set[Net]] = defaultdict(set)
        self._owner: dict[Net, str] = {}  # candidate -> its node (as of the last flush)
        self._owned: dict[str, set[Net]] = defaultdict(set)
        self._routes: dict[Net, m.RouteUpdate] = {}
        self._dirty: set[Net] = set()
        self._why: dict[tuple[str, str], str] = {}  # (node, pool) -> why no route (logged)

    # ---- inputs -------------------------------------------------------------------------------

    def on_pool(self, name: str, pool: nv.PoolData | None) -> None:
        if self._pools.get(name) == pool:
            return  # rewritten unchanged: nothing to recompute
        old = self._pools.pop(name, None)
        if pool is not None:
            self._pools[name] = pool
        for p in (old, pool):
            if p is not None:
                self._dirty |= self._candidates_in(p.net)

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
        if net in self._blocks:
            self._block_lens[(net.version, net.prefixlen)] -= 1
            del self._blocks[net]
        if present:
            self._blocks[net] = node
            self._block_lens[(net.version, net.prefixlen)] += 1
        self._block_lens = +self._block_lens  # drop zero counts
        self._dirty.add(net)
        self._dirty |= self._workload_addrs_in(net)

    def on_workload(self, wep_id: str, node: str | None, nets: tuple[str, ...]) -> None:
        old = self._wl_nets.pop(wep_id, None)
        if old is not None:
            for addr in old[1]:
                self._wl_by_addr[addr].discard(wep_id)
                if not self._wl_by_addr[addr]:
                    del self._wl_by_addr[addr]
                    self._wl_buckets[_bucket(addr)].discard(addr)
                self._dirty.add(addr)
        if node is None:
            return
        addrs = tuple(
            n
            for n in (ipaddress.ip_network(x, strict=False) for x in nets)
            if n.prefixlen == n.max_prefixlen
        )
        self._wl_nets[wep_id] = (node, addrs)
        for addr in addrs:
            self._wl_by_addr[addr].add(wep_id)
            self._wl_buckets[_bucket(addr)].add(addr)
            self._dirty.add(addr)

    # ---- lookups ------------------------------------------------------------------------------

    def _candidates_in(self, net: Net) -> set[Net]:
        return {
            c
            for c in (*self._blocks, *self._wl_by_addr)
            if c.version == net.version and c.subnet_of(net)  # type: ignore[arg-type]
        }

    def _workload_addrs_in(self, block: Net) -> set[Net]:
        if block.prefixlen >= BUCKET[block.version]:
            pool = self._wl_buckets.get(_bucket(block), set())
        else:
            pool = set(self._wl_by_addr)
        return {a for a in pool if a.version == block.version and a.subnet_of(block)}  # type: ignore[arg-type]

    def _block_of(self, addr: Net) -> Net | None:
        """The most specific block holding ``addr`` (overlapping blocks are a datastore error,
        but the answer must not depend on history)."""
        for version, plen in sorted(self._block_lens, reverse=True):
            if version == addr.version and plen <= addr.prefixlen:
                sup = addr.supernet(new_prefix=plen)
                if sup in self._blocks:
                    return sup
        return None

    def _pool_of(self, dst: Net) -> nv.PoolData | None:
        """The most specific pool holding ``dst``; of equal ones the first by name (overlapping
        pools are refused by validation on write, but the answer must not depend on history)."""
        holding = [
            p
            for p in self._pools.values()
            if p.net.version == dst.version and dst.subnet_of(p.net)  # type: ignore[arg-type]
        ]
        return min(holding, key=lambda p: (-p.net.prefixlen, p.name), default=None)

    def _owner_of(self, dst: Net) -> tuple[str | None, str]:
        """(the node ``dst`` belongs to, route type)."""
        weps = self._wl_by_addr.get(dst)
        if weps:
            node = self._wl_nets[min(weps)][0]
            block = self._block_of(dst)
            if block is None or self._blocks[block] != node:
                return node, m.ROUTE_REMOTE_WORKLOAD
        if dst in self._blocks:
            return self._blocks[dst], m.ROUTE_REMOTE_BLOCK
        return None, m.ROUTE_REMOTE_BLOCK

    # ---- output -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Recompute the dirty candidates and tell the sequencer what changed."""
        for dst in sorted(self._dirty, key=lambda n: (n.version, n)):
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
                self._seq.on_route(str(dst), route)
        self._dirty.clear()

    def _route(self, dst: Net, owner: str | None, rtype: str) -> m.RouteUpdate | None:
        if owner is None or owner == self.hostname:
            return None
        pool = self._pool_of(dst)
        encap = pool.encap() if pool else None
        if pool is None or encap is None:
            return None
        device, mode = encap
        note = (owner, pool.name)
        if dst.version != 4:
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
        return m.RouteUpdate(str(dst), rtype, owner, gateway, device)

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
