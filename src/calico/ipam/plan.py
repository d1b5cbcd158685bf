"""Choosing addresses from a :class:`~calico.ipam.view.View`: pure, no I/O.

Per address family, as Calico does it::

    the host's affine blocks ──► claim free blocks of a usable pool ──► borrow from any block
    (lowest CIDR first)          (autoAllocateBlocks; a random start  (only when strictAffinity
                                  spreads concurrent claimers)          is off)

When the view lacks what a step needs (the affine blocks' values, the family's block keys, every
block of the family) the planner raises :class:`Need` and the caller reads it and plans again.
The result is a :class:`Plan`: the addresses and every block to write, each with the record it
was computed from (None for a block being claimed), so the writer can compare them all.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence

from calico.datastore.backend import KV
from calico.datastore.client import decode
from calico.ipam import keys
from calico.ipam.block import Block, IPNetwork, affinity_for
from calico.ipam.errors import IPAMError, PoolExhausted
from calico.ipam.pools import Pool, PoolError, pool_of, select_pools
from calico.ipam.view import View

Wanted = Sequence[tuple[int, int, list[str] | None]]  # (family, how many, requested pools)


class IPAMConfig:
    """``/calico/ipam/v2/config``: ``strictAffinity`` (never borrow), ``autoAllocateBlocks``."""

    __slots__ = ("auto_allocate_blocks", "strict_affinity")

    def __init__(self, *, strict_affinity: bool = False, auto_allocate_blocks: bool = True) -> None:
        self.strict_affinity = strict_affinity
        self.auto_allocate_blocks = auto_allocate_blocks

    @classmethod
    def from_kv(cls, kv: KV | None) -> IPAMConfig:
        if kv is None:
            return cls()
        d = json.loads(kv.value)
        return cls(
            strict_affinity=bool(d.get("strictAffinity", False)),
            auto_allocate_blocks=bool(d.get("autoAllocateBlocks", True)),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "strictAffinity": self.strict_affinity,
                "autoAllocateBlocks": self.auto_allocate_blocks,
            }
        )


class Need(Exception):
    """The view must first read these records."""

    def __init__(
        self, *, blocks: Sequence[str] = (), index: Sequence[int] = (),
        all_blocks: Sequence[int] = (),
    ) -> None:  # fmt: skip
        super().__init__("more records needed")
        self.blocks = list(blocks)
        self.index = list(index)
        self.all_blocks = list(all_blocks)

    @property
    def family_wide(self) -> bool:
        return bool(self.index or self.all_blocks)


class Plan:
    """Addresses taken and the blocks they come from (``key -> (record read, new block)``)."""

    def __init__(self) -> None:
        self.ips: list[str] = []
        self.blocks: dict[str, tuple[KV | None, Block]] = {}
        self.changed: set[str] = set()
        self.counts: dict[str, int] = {}  # block CIDR -> addresses taken (the handle record)
        self.claims: list[IPNetwork] = []
        self.used_config = False

    def working(self, key: str, kv: KV | None, block: Block | None = None) -> Block:
        """The block as this plan has it (read from ``kv`` the first time, or ``block``)."""
        if key not in self.blocks:
            self.blocks[key] = (kv, block if block is not None else Block.from_json(_value(kv)))
        return self.blocks[key][1]

    def take(self, key: str, block: Block, num: int, handle_id: str, attrs: dict[str, str]) -> int:
        got = block.auto_assign(num, handle_id=handle_id, attrs=attrs)
        if got:
            self.ips += got
            self.changed.add(key)
            cidr = str(block.cidr)
            self.counts[cidr] = self.counts.get(cidr, 0) + len(got)
        return len(got)

    def writes(self) -> dict[str, tuple[KV | None, Block]]:
        return {k: v for k, v in self.blocks.items() if k in self.changed}


def _value(kv: KV | None) -> bytes:
    if kv is None:
        raise IPAMError("internal: a block without a record")
    return kv.value


def assignment(
    view: View, wanted: Wanted, *, handle_id: str, host: str, attrs: Mapping[str, str]
) -> Plan:
    """Every wanted address, or :class:`Need` / :class:`IPAMError` (PoolExhausted...)."""
    all_pools = [Pool.from_resource(decode(kv.value, kv.mod_revision)) for kv in view.pools]
    labels = node_labels(view.node)
    config = IPAMConfig.from_kv(view.config)
    plan = Plan()
    for version, num, requested in wanted:
        try:
            usable = select_pools(
                all_pools, version=version, labels_for_node=labels.copy, requested=requested
            )
        except PoolError as exc:
            raise IPAMError(str(exc)) from exc
        if not usable:
            raise PoolExhausted(f"no enabled IPv{version} pool is usable by node {host!r}")
        args = (usable, version, handle_id, dict(attrs))
        got = _from_affine(view, plan, num, host, *args)
        if got < num:
            plan.used_config = True
            if config.auto_allocate_blocks:
                got += _claim(view, plan, num - got, host, config, *args)
        if got < num and not config.strict_affinity:
            got += _borrow(view, plan, num - got, *args)
        if got < num:
            names = ", ".join(str(p.cidr) for p in usable)
            raise PoolExhausted(
                f"no more free IPv{version} addresses for node {host!r} in pool(s) {names} "
                f"(wanted {num}, found {got})"
            )
    return plan


def node_labels(node: KV | None) -> dict[str, str]:
    if node is None:
        return {}
    meta = json.loads(node.value).get("metadata") or {}
    return dict(meta.get("labels") or {})


def _within(cidr: IPNetwork, pools: list[Pool]) -> bool:
    return any(cidr.version == p.version and cidr.subnet_of(p.cidr) for p in pools)  # type: ignore[arg-type]


def _from_affine(
    view: View, plan: Plan, num: int, host: str,
    pools: list[Pool], version: int, handle_id: str, attrs: dict[str, str],
) -> int:  # fmt: skip
    cidrs = [keys.cidr_from_key(kv.key) for kv in view.affinity.get(version, [])]
    cidrs = sorted((c for c in cidrs if _within(c, pools)), key=lambda c: int(c.network_address))
    missing = [keys.block_key(c) for c in cidrs if keys.block_key(c) not in view.blocks]
    if missing:
        raise Need(blocks=missing)
    got = 0
    for cidr in cidrs:
        key = keys.block_key(cidr)
        kv = view.blocks[key]
        if kv is None:
            continue  # an affinity without its block (a claim that never finished)
        block = plan.working(key, kv)
        if block.affinity == affinity_for(host):
            got += plan.take(key, block, num - got, handle_id, attrs)
        if got == num:
            break
    return got


def _claim(
    view: View, plan: Plan, num: int, host: str, config: IPAMConfig,
    pools: list[Pool], version: int, handle_id: str, attrs: dict[str, str],
) -> int:  # fmt: skip
    """New blocks affine to ``host``, in the first pools with room (written with cmp_absent)."""
    if version not in view.index:
        raise Need(index=[version])
    taken = {int(keys.cidr_from_key(k).network_address) for k in view.index[version]}
    taken |= {int(c.network_address) for c in plan.claims if c.version == version}
    got = 0
    for pool in pools:
        for index in pool.block_indexes():
            if pool.block_base(index) in taken:
                continue
            cidr = pool.block(index)
            taken.add(pool.block_base(index))
            block = Block.new(cidr, host=host, strict_affinity=config.strict_affinity)
            key = keys.block_key(cidr)
            plan.working(key, None, block)
            plan.claims.append(cidr)
            got += plan.take(key, block, num - got, handle_id, attrs)
            if got == num:
                return got
    return got


def _borrow(
    view: View, plan: Plan, num: int,
    pools: list[Pool], version: int, handle_id: str, attrs: dict[str, str],
) -> int:  # fmt: skip
    """Free addresses of any non-strict block of the usable pools, whoever it is affine to."""
    if version not in view.all_blocks:
        raise Need(all_blocks=[version])
    got = 0
    for kv in view.all_blocks[version]:
        block = plan.working(kv.key, kv)
        if block.free_count == 0 or block.strict_affinity:
            continue
        if pool_of(pools, block.cidr.network_address) is None:
            continue
        got += plan.take(kv.key, block, num - got, handle_id, attrs)
        if got == num:
            break
    return got


def held(view: View, handle_id: str) -> list[str]:
    """The addresses the view's handle holds (Need: its blocks are not read yet)."""
    if view.handle is None:
        return []
    cidrs = json.loads(view.handle.value).get("block") or {}
    bkeys = [keys.block_key(ipaddress.ip_network(c)) for c in cidrs]
    missing = [k for k in bkeys if k not in view.blocks]
    if missing:
        raise Need(blocks=missing)
    out: list[str] = []
    for k in bkeys:
        kv = view.blocks[k]
        if kv is not None:
            out += Block.from_json(kv.value).ips_by_handle(handle_id)
    return out


def handle_record(existing: KV | None, handle_id: str, delta: Mapping[str, int]) -> str | None:
    """The handle's JSON after adding ``delta`` ({block CIDR: n}); None: nothing left (delete)."""
    record = json.loads(existing.value) if existing is not None else {}
    blocks: dict[str, int] = dict(record.get("block") or {})
    for cidr, n in delta.items():
        count = blocks.get(cidr, 0) + n
        if count > 0:
            blocks[cidr] = count
        else:
            blocks.pop(cidr, None)
    if not blocks:
        return None
    return json.dumps({"handleID": record.get("handleID") or handle_id, "block": blocks})
