"""IPAMClient: Calico block IPAM over the datastore for ``calicoctl ipam``, reports and tests.

Assignment and release by handle are :mod:`calico.ipam.atomic` (the one allocation path, also the
CNI plugin's): one transaction per change, comparing every record it rests on, so two
writers never both win one block revision and no address is ever handed out twice. The rest here
is the same discipline for the less common requests (one specific address, release by address)
and the reads behind ``calicoctl ipam show/check``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from calico.datastore.backend import (
    KV,
    Backend,
    Cmp,
    Op,
    cmp_absent,
    cmp_mod,
    op_delete,
    op_get,
    op_put,
)
from calico.datastore.client import Client, NotFound
from calico.ipam import atomic, keys
from calico.ipam.block import Block, BlockError, IPAddress, IPNetwork
from calico.ipam.errors import IPAMError as IPAMError
from calico.ipam.errors import PoolExhausted as PoolExhausted
from calico.ipam.plan import IPAMConfig as IPAMConfig
from calico.ipam.plan import handle_record
from calico.ipam.pools import Pool, pool_of, select_pools

MAX_CAS_RETRIES = 100


class IPAMClient:
    def __init__(self, backend: Backend, *, client: Client | None = None) -> None:
        self.backend = backend
        self.client = client or Client(backend)

    # ---- configuration and pools ----------------------------------------------------------------

    def get_config(self) -> IPAMConfig:
        return IPAMConfig.from_kv(self.backend.get(keys.CONFIG_KEY))

    def set_config(self, config: IPAMConfig) -> None:
        self.backend.put(keys.CONFIG_KEY, config.to_json())

    def all_pools(self) -> list[Pool]:
        return [Pool.from_resource(obj) for obj in self.client.list("IPPool")]

    def node_labels(self, host: str) -> dict[str, str]:
        try:
            node = self.client.get("Node", host)
        except NotFound:
            return {}
        return dict((node.get("metadata") or {}).get("labels") or {})

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
        """Assign ``num_v4`` IPv4 and ``num_v6`` IPv6 addresses to ``handle_id`` for ``host``
        (added to what the handle holds already). All or nothing, in one transaction."""
        ips, _ = atomic.assign(
            self.backend, handle_id=handle_id, host=host, num_v4=num_v4, num_v6=num_v6,
            pools=pools, pools_v6=pools_v6, attrs=attrs, reuse=False,
        )  # fmt: skip
        return ips

    def assign_ip(
        self, ip: str, *, handle_id: str, host: str, attrs: Mapping[str, str] | None = None
    ) -> None:
        """Assign one specific address (e.g. a tunnel address); IPAMError if it is taken. Its block
        is claimed for ``host`` when it does not exist yet."""
        addr = ipaddress.ip_address(ip)
        pool = pool_of([p for p in self.all_pools() if not p.disabled], addr)
        if pool is None:
            raise IPAMError(f"address {ip} is not in any enabled IP pool")
        cidr = pool.block_of(addr)
        bkey, hkey = keys.block_key(cidr), keys.handle_key(handle_id)
        for _ in range(MAX_CAS_RETRIES):
            kv, handle, config = (
                r[0] if r else None
                for r in self.backend.txn(
                    [], [op_get(bkey), op_get(hkey), op_get(keys.CONFIG_KEY)]
                ).responses
            )
            if kv is None:
                strict = IPAMConfig.from_kv(config).strict_affinity
                block = Block.new(cidr, host=host, strict_affinity=strict)
            else:
                block = Block.from_json(kv.value)
            try:
                block.assign(addr, handle_id=handle_id, attrs=dict(attrs or {}))
            except BlockError as exc:
                raise IPAMError(str(exc)) from exc
            record = handle_record(handle, handle_id, {str(cidr): 1})
            assert record is not None
            compare = [_cmp(bkey, kv), _cmp(hkey, handle)]
            success = [op_put(bkey, block.to_json()), op_put(hkey, record)]
            if kv is None:
                compare.append(_cmp(keys.CONFIG_KEY, config))
                success.append(op_put(keys.affinity_key(host, cidr), keys.AFFINITY_CONFIRMED))
            if self.backend.txn(compare, success).succeeded:
                return
        raise IPAMError(f"assign {ip}: gave up after {MAX_CAS_RETRIES} conflicting updates")

    # ---- handles --------------------------------------------------------------------------------

    def handle_blocks(self, handle_id: str) -> dict[str, int]:
        """{block CIDR: the handle's addresses in it}; empty when the handle is unknown."""
        kv = self.backend.get(keys.handle_key(handle_id))
        return dict(json.loads(kv.value).get("block") or {}) if kv else {}

    def ips_by_handle(self, handle_id: str) -> list[str]:
        cidrs = list(self.handle_blocks(handle_id))
        if not cidrs:
            return []
        ops = [op_get(keys.block_key(ipaddress.ip_network(c))) for c in cidrs]
        out: list[str] = []
        for r in self.backend.txn([], ops).responses:
            if r:
                out += Block.from_json(r[0].value).ips_by_handle(handle_id)
        return out

    # ---- release --------------------------------------------------------------------------------

    def release_by_handle(self, handle_id: str) -> list[str]:
        """Release every address held by ``handle_id``; the addresses released (maybe none)."""
        return atomic.release(self.backend, self.backend.get(keys.handle_key(handle_id)))

    def block_for_ip(self, ip: IPAddress) -> IPNetwork | None:
        """The CIDR of the existing block holding ``ip``, if any."""
        kvs, _ = self.backend.get_prefix(keys.block_prefix(ip.version))
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
        """One transaction: the block and the handle record of every address freed."""
        key = keys.block_key(cidr)
        for _ in range(MAX_CAS_RETRIES):
            kv = self.backend.get(key)
            if kv is None:
                return ips
            block = Block.from_json(kv.value)
            missing, per_handle = block.release(ips)
            if len(missing) == len(ips):
                return missing
            hkeys = {h: keys.handle_key(h) for h in per_handle}
            read = self.backend.txn([], [op_get(k) for k in hkeys.values()]).responses
            handles = {h: (r[0] if r else None) for h, r in zip(hkeys, read, strict=True)}
            compare = [cmp_mod(key, kv.mod_revision)]
            success: list[Op] = [op_put(key, block.to_json())]
            for h, n in per_handle.items():
                compare.append(_cmp(hkeys[h], handles[h]))
                if handles[h] is not None:
                    record = handle_record(handles[h], h, {str(cidr): -n})
                    success.append(op_delete(hkeys[h]) if record is None
                                   else op_put(hkeys[h], record))  # fmt: skip
            if self.backend.txn(compare, success).succeeded:
                return missing
        raise IPAMError(f"block {cidr}: gave up after {MAX_CAS_RETRIES} conflicting updates")

    # ---- reads for reports ----------------------------------------------------------------------

    def blocks(self, version: int | None = None) -> list[Block]:
        out: list[Block] = []
        for v in (4, 6) if version is None else (version,):
            kvs, _ = self.backend.get_prefix(keys.block_prefix(v))
            out += [Block.from_json(kv.value) for kv in kvs]
        return out

    def ip_info(self, ip: str) -> dict[str, Any] | None:
        """Who holds ``ip``: {ip, block, affinity, handle_id, attributes}, or None when free."""
        addr = ipaddress.ip_address(ip)
        cidr = self.block_for_ip(addr)
        if cidr is None:
            return None
        kv = self.backend.get(keys.block_key(cidr))
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
            kvs, _ = self.backend.get_prefix(keys.host_affinity_prefix(host, v))
            out += [keys.cidr_from_key(kv.key) for kv in kvs]
        return out

    def usage(self) -> list[Any]:
        """Per-pool usage (``report.PoolUsage``), as ``calicoctl ipam show`` prints it."""
        from calico.ipam import report

        return report.usage(self)


def _cmp(key: str, kv: KV | None) -> Cmp:
    return cmp_mod(key, kv.mod_revision) if kv is not None else cmp_absent(key)
