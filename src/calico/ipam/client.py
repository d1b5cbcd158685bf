"""IPAMClient: Calico block IPAM over etcd, every write a compare-and-swap retried on conflict.

Assignment (per address family), as Calico does it::

    affine blocks of this host ──► claim a free block of a usable pool ──► borrow from any block
    (host's own first)             (affinity pending → create block →       (only when no block is
                                    affinity confirmed)                      free and strictAffinity
                                                                             is off)

Each allocation records its handle in the block's attributes and counts it in the handle record
(handle first, then block; the handle is decremented if the block write loses). Two writers never
both win a CAS on the same block revision, so one address is never handed out twice, whatever the
number of processes or hosts. When nothing is left, ``auto_assign`` releases what it took in this
call and raises :class:`PoolExhausted`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from calico.datastore.client import Client, NotFound
from calico.datastore.etcd import EtcdClient
from calico.ipam import handles, keys
from calico.ipam.block import Block, BlockError, IPAddress, IPNetwork, affinity_for
from calico.ipam.errors import IPAMError as IPAMError
from calico.ipam.errors import PoolExhausted as PoolExhausted
from calico.ipam.pools import Pool, pool_of, select_pools

MAX_CAS_RETRIES = 100


class IPAMConfig:
    __slots__ = ("auto_allocate_blocks", "strict_affinity")

    def __init__(self, *, strict_affinity: bool = False, auto_allocate_blocks: bool = True) -> None:
        self.strict_affinity = strict_affinity
        self.auto_allocate_blocks = auto_allocate_blocks

    def to_json(self) -> str:
        return json.dumps(
            {
                "strictAffinity": self.strict_affinity,
                "autoAllocateBlocks": self.auto_allocate_blocks,
            }
        )


class IPAMClient:
    def __init__(self, etcd: EtcdClient, *, client: Client | None = None) -> None:
        self.etcd = etcd
        self.client = client or Client(etcd)
        self._node_labels: dict[str, dict[str, str]] = {}

    # ---- configuration and pools ----------------------------------------------------------------

    def get_config(self) -> IPAMConfig:
        kv = self.etcd.get(keys.CONFIG_KEY)
        if kv is None:
            return IPAMConfig()
        d = json.loads(kv.value)
        return IPAMConfig(
            strict_affinity=bool(d.get("strictAffinity", False)),
            auto_allocate_blocks=bool(d.get("autoAllocateBlocks", True)),
        )

    def set_config(self, config: IPAMConfig) -> None:
        self.etcd.put(keys.CONFIG_KEY, config.to_json())

    def all_pools(self) -> list[Pool]:
        return [Pool.from_resource(obj) for obj in self.client.list("IPPool")]

    def node_labels(self, host: str) -> dict[str, str]:
        if host not in self._node_labels:
            try:
                node = self.client.get("Node", host)
                labels = dict((node.get("metadata") or {}).get("labels") or {})
            except NotFound:
                labels = {}
            self._node_labels[host] = labels
        return self._node_labels[host]

    def usable_pools(
        self, version: int, host: str, requested: list[str] | None = None
    ) -> list[Pool]:
        return select_pools(
            self.all_pools(),
            version=version,
            labels_for_node=lambda: self.node_labels(host),
            requested=requested,
        )

    # ---- assignment -----------------------------------------------------------------------------

    def auto_assign(
        self,
        *,
        handle_id: str,
        host: str,
        num_v4: int = 1,
        num_v6: int = 0,
        pools: list[str] | None = None,
        pools_v6: list[str] | None = None,
        attrs: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Assign ``num_v4`` IPv4 and ``num_v6`` IPv6 addresses to ``handle_id`` for ``host``.

        ``pools`` / ``pools_v6`` restrict the pools (names or CIDRs). All or nothing: on failure
        the addresses taken by this call are released before the error is raised.
        """
        got: list[str] = []
        try:
            for version, num, req in ((4, num_v4, pools), (6, num_v6, pools_v6)):
                if num > 0:
                    got += self._assign_family(
                        version, num, handle_id, host, req, dict(attrs or {})
                    )
        except Exception:
            if got:
                self.release_ips(got)
            raise
        return got

    def _assign_family(
        self,
        version: int,
        num: int,
        handle_id: str,
        host: str,
        requested: list[str] | None,
        attrs: dict[str, str],
    ) -> list[str]:
        try:
            pools = self.usable_pools(version, host, requested)
        except ValueError as exc:
            raise IPAMError(str(exc)) from exc
        if not pools:
            raise PoolExhausted(f"no enabled IPv{version} pool is usable by node {host!r}")
        got: list[str] = []
        try:
            for cidr in self._affine_blocks(host, version, pools):
                got += self._assign_from_block(cidr, num - len(got), handle_id, attrs, host=host)
                if len(got) == num:
                    return got
            config = self.get_config()  # read only when the host's own blocks are full
            while len(got) < num and config.auto_allocate_blocks:
                claimed = self._claim_block(host, pools, config)
                if claimed is None:
                    break
                got += self._assign_from_block(claimed, num - len(got), handle_id, attrs, host=host)
            if len(got) < num and not config.strict_affinity:
                got += self._borrow(pools, num - len(got), handle_id, attrs)
        except Exception:
            if got:
                self.release_ips(got)
            raise
        if len(got) < num:
            if got:
                self.release_ips(got)
            names = ", ".join(str(p.cidr) for p in pools)
            raise PoolExhausted(
                f"no more free IPv{version} addresses for node {host!r} in pool(s) {names} "
                f"(wanted {num}, found {len(got)})"
            )
        return got

    def _affine_blocks(self, host: str, version: int, pools: list[Pool]) -> list[IPNetwork]:
        kvs, _ = self.etcd.get_prefix(keys.host_affinity_prefix(host, version))
        out = []
        for kv in kvs:
            cidr = keys.cidr_from_key(kv.key)
            if any(cidr.subnet_of(p.cidr) for p in pools if p.version == cidr.version):  # type: ignore[arg-type]
                out.append(cidr)
        return sorted(out, key=lambda c: int(c.network_address))

    def _assign_from_block(
        self,
        cidr: IPNetwork,
        num: int,
        handle_id: str,
        attrs: dict[str, str],
        *,
        host: str | None,
    ) -> list[str]:
        """Take up to ``num`` addresses from one block (CAS loop); ``host``: only if affine."""
        key = keys.block_key(cidr)
        for _ in range(MAX_CAS_RETRIES):
            kv = self.etcd.get(key)
            if kv is None:
                return []
            block = Block.from_json(kv.value)
            if host is not None and block.affinity != affinity_for(host):
                return []
            ips = block.auto_assign(num, handle_id=handle_id, attrs=attrs)
            if not ips:
                return []
            handles.change(self.etcd, handle_id, cidr, len(ips))
            if self.etcd.update(key, block.to_json(), kv.mod_revision) is not None:
                return ips
            handles.change(self.etcd, handle_id, cidr, -len(ips))
        raise IPAMError(f"block {cidr}: gave up after {MAX_CAS_RETRIES} conflicting updates")

    def _claim_block(self, host: str, pools: list[Pool], config: IPAMConfig) -> IPNetwork | None:
        """Create a new block affine to ``host`` in the first pool with room; None if all full."""
        version = pools[0].version
        kvs, _ = self.etcd.get_prefix(keys.block_prefix(version))
        taken = {int(keys.cidr_from_key(kv.key).network_address) for kv in kvs}
        for pool in pools:
            for index in pool.block_indexes():
                if pool.block_base(index) in taken:
                    continue
                cidr = pool.block(index)
                if self._try_claim(host, cidr, config):
                    return cidr
                taken.add(pool.block_base(index))
        return None

    def _try_claim(self, host: str, cidr: IPNetwork, config: IPAMConfig) -> bool:
        akey = keys.affinity_key(host, cidr)
        self.etcd.put(akey, keys.AFFINITY_PENDING)
        block = Block.new(cidr, host=host, strict_affinity=config.strict_affinity)
        if self.etcd.create(keys.block_key(cidr), block.to_json()) is None:
            existing = self.etcd.get(keys.block_key(cidr))
            if existing is not None and Block.from_json(existing.value).affinity == affinity_for(
                host
            ):
                self.etcd.put(akey, keys.AFFINITY_CONFIRMED)
                return True
            self.etcd.delete(akey)
            return False
        self.etcd.put(akey, keys.AFFINITY_CONFIRMED)
        return True

    def _borrow(
        self, pools: list[Pool], num: int, handle_id: str, attrs: dict[str, str]
    ) -> list[str]:
        got: list[str] = []
        kvs, _ = self.etcd.get_prefix(keys.block_prefix(pools[0].version))
        for kv in kvs:
            block = Block.from_json(kv.value)
            if block.free_count == 0 or block.strict_affinity:
                continue
            if pool_of(pools, block.cidr.network_address) is None:
                continue
            got += self._assign_from_block(block.cidr, num - len(got), handle_id, attrs, host=None)
            if len(got) == num:
                break
        return got

    def assign_ip(
        self, ip: str, *, handle_id: str, host: str, attrs: Mapping[str, str] | None = None
    ) -> None:
        """Assign one specific address (e.g. a tunnel address); IPAMError if it is taken."""
        addr = ipaddress.ip_address(ip)
        pool = pool_of([p for p in self.all_pools() if not p.disabled], addr)
        if pool is None:
            raise IPAMError(f"address {ip} is not in any enabled IP pool")
        cidr = pool.block_of(addr)
        key = keys.block_key(cidr)
        for _ in range(MAX_CAS_RETRIES):
            kv = self.etcd.get(key)
            if kv is None:
                self._try_claim(host, cidr, self.get_config())
                kv = self.etcd.get(key)
                if kv is None:
                    continue
            block = Block.from_json(kv.value)
            try:
                block.assign(addr, handle_id=handle_id, attrs=dict(attrs or {}))
            except BlockError as exc:
                raise IPAMError(str(exc)) from exc
            handles.change(self.etcd, handle_id, cidr, 1)
            if self.etcd.update(key, block.to_json(), kv.mod_revision) is not None:
                return
            handles.change(self.etcd, handle_id, cidr, -1)
        raise IPAMError(f"assign {ip}: gave up after {MAX_CAS_RETRIES} conflicting updates")

    # ---- handles --------------------------------------------------------------------------------

    def handle_blocks(self, handle_id: str) -> dict[str, int]:
        return handles.blocks(self.etcd, handle_id)

    def ips_by_handle(self, handle_id: str) -> list[str]:
        out: list[str] = []
        for cidr in self.handle_blocks(handle_id):
            kv = self.etcd.get(keys.block_key(ipaddress.ip_network(cidr)))
            if kv is not None:
                out += Block.from_json(kv.value).ips_by_handle(handle_id)
        return out

    # ---- release --------------------------------------------------------------------------------

    def release_by_handle(self, handle_id: str) -> list[str]:
        """Release every address held by ``handle_id``; the addresses released (maybe none)."""
        released: list[str] = []
        handle = self.etcd.get(keys.handle_key(handle_id))
        if handle is None:
            return released
        for cidr_text in json.loads(handle.value).get("block") or {}:
            cidr = ipaddress.ip_network(cidr_text)
            key = keys.block_key(cidr)
            for _ in range(MAX_CAS_RETRIES):
                kv = self.etcd.get(key)
                if kv is None:
                    break
                block = Block.from_json(kv.value)
                ips = block.ips_by_handle(handle_id)
                if not ips:
                    break
                block.release(ips)
                if self.etcd.update(key, block.to_json(), kv.mod_revision) is not None:
                    released += ips
                    break
            else:
                raise IPAMError(
                    f"block {cidr}: gave up after {MAX_CAS_RETRIES} conflicting updates"
                )
        self.etcd.delete(keys.handle_key(handle_id))
        return released

    def block_for_ip(self, ip: IPAddress) -> IPNetwork | None:
        """The CIDR of the existing block holding ``ip``, if any."""
        kvs, _ = self.etcd.get_prefix(keys.block_prefix(ip.version))
        for kv in kvs:
            cidr = keys.cidr_from_key(kv.key)
            if ip in cidr:
                return cidr
        return None

    def release_ips(self, ips: list[str]) -> list[str]:
        """Release addresses; returns those that were not allocated."""
        by_block: dict[IPNetwork, list[str]] = {}
        unallocated: list[str] = []
        for ip in ips:
            cidr = self.block_for_ip(ipaddress.ip_address(ip))
            if cidr is None:
                unallocated.append(ip)
            else:
                by_block.setdefault(cidr, []).append(ip)
        for cidr, group in by_block.items():
            unallocated += self._release_in_block(cidr, group)
        return unallocated

    def _release_in_block(self, cidr: IPNetwork, ips: list[str]) -> list[str]:
        key = keys.block_key(cidr)
        for _ in range(MAX_CAS_RETRIES):
            kv = self.etcd.get(key)
            if kv is None:
                return ips
            block = Block.from_json(kv.value)
            missing, per_handle = block.release(ips)
            if len(missing) == len(ips):
                return missing
            if self.etcd.update(key, block.to_json(), kv.mod_revision) is not None:
                for handle_id, n in per_handle.items():
                    handles.change(self.etcd, handle_id, cidr, -n)
                return missing
        raise IPAMError(f"block {cidr}: gave up after {MAX_CAS_RETRIES} conflicting updates")

    # ---- reads for reports ----------------------------------------------------------------------

    def blocks(self, version: int | None = None) -> list[Block]:
        out: list[Block] = []
        for v in (4, 6) if version is None else (version,):
            kvs, _ = self.etcd.get_prefix(keys.block_prefix(v))
            out += [Block.from_json(kv.value) for kv in kvs]
        return out

    def ip_info(self, ip: str) -> dict[str, Any] | None:
        """Who holds ``ip``: {ip, block, affinity, handle_id, attributes}, or None when free."""
        addr = ipaddress.ip_address(ip)
        cidr = self.block_for_ip(addr)
        if cidr is None:
            return None
        kv = self.etcd.get(keys.block_key(cidr))
        if kv is None:
            return None
        block = Block.from_json(kv.value)
        attr = block.attributes_of(addr)
        if attr is None:
            return None
        return {
            "ip": str(addr),
            "block": str(cidr),
            "affinity": block.affinity,
            "handle_id": attr.get("handle_id"),
            "attributes": attr.get("secondary") or {},
        }

    def host_blocks(self, host: str) -> list[IPNetwork]:
        """Blocks affine to ``host`` (both families), from the affinity keys."""
        out: list[IPNetwork] = []
        for v in (4, 6):
            kvs, _ = self.etcd.get_prefix(keys.host_affinity_prefix(host, v))
            out += [keys.cidr_from_key(kv.key) for kv in kvs]
        return out

    def usage(self) -> list[Any]:
        """Per-pool usage (``report.PoolUsage``), as ``calicoctl ipam show`` prints it."""
        from calico.ipam import report

        return report.usage(self)
