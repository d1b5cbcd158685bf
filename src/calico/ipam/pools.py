"""Pool: the IPAM view of an IPPool resource, and which pools a host may allocate from.

An IPPool (``spec.cidr``, ``spec.blockSize`` default 26 for IPv4 / 122 for IPv6, ``spec.disabled``,
``spec.nodeSelector`` default ``all()``) is carved into blocks of ``blockSize``. A host uses the
enabled pools of the right family whose nodeSelector matches its Node's labels; an explicit list of
requested pools (the CNI ``ipam.ipv4_pools``) narrows that further and is an error when it names a
pool that does not exist or is disabled.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from calico.ipam.block import IPAddress, IPNetwork

DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}


class PoolError(ValueError):
    """The requested pools cannot be used (unknown, disabled, wrong family)."""


class Pool:
    __slots__ = ("block_prefixlen", "cidr", "disabled", "name", "node_selector")

    def __init__(
        self,
        cidr: IPNetwork,
        *,
        name: str = "",
        block_size: int | None = None,
        disabled: bool = False,
        node_selector: str = "",
    ) -> None:
        self.cidr = cidr
        self.name = name or str(cidr)
        size = block_size if block_size is not None else DEFAULT_BLOCK_SIZE[cidr.version]
        self.block_prefixlen = max(int(size), cidr.prefixlen)
        self.disabled = disabled
        self.node_selector = node_selector.strip()

    @classmethod
    def from_resource(cls, obj: Mapping[str, Any]) -> Pool:
        spec = obj.get("spec") or {}
        name = str((obj.get("metadata") or {}).get("name", ""))
        try:
            cidr = ipaddress.ip_network(str(spec.get("cidr")), strict=False)
        except ValueError as exc:
            raise PoolError(f"IPPool {name}: spec.cidr {spec.get('cidr')!r}: {exc}") from exc
        return cls(
            cidr,
            name=name,
            block_size=spec.get("blockSize"),
            disabled=bool(spec.get("disabled", False)),
            node_selector=str(spec.get("nodeSelector") or ""),
        )

    @property
    def version(self) -> int:
        return self.cidr.version

    @property
    def num_blocks(self) -> int:
        return 1 << (self.block_prefixlen - self.cidr.prefixlen)

    @property
    def block_addresses(self) -> int:
        return 1 << (self.cidr.max_prefixlen - self.block_prefixlen)

    def block(self, index: int) -> IPNetwork:
        base = int(self.cidr.network_address) + index * self.block_addresses
        return ipaddress.ip_network(f"{ipaddress.ip_address(base)}/{self.block_prefixlen}")

    def block_of(self, ip: IPAddress) -> IPNetwork:
        """The block of this pool that holds ``ip`` (which must be inside the pool)."""
        index = (int(ip) - int(self.cidr.network_address)) // self.block_addresses
        return self.block(index)

    def blocks(self, *, start: int | None = None) -> Iterator[IPNetwork]:
        """Every block of the pool, beginning at ``start`` (random by default) and wrapping round.

        A random start spreads concurrent claimers (many hosts at once) over the pool, as Calico's
        random block generator does, so they rarely race for the same block.
        """
        for index in self.block_indexes(start=start):
            yield self.block(index)

    def block_indexes(self, *, start: int | None = None) -> Iterator[int]:
        """Block indexes in the order :meth:`blocks` visits them (cheap: no objects per block)."""
        n = self.num_blocks
        if start is None:
            import random  # lazy: only a block claim needs it

            start = random.randrange(n)
        for i in range(n):
            yield (start + i) % n

    def block_base(self, index: int) -> int:
        """The integer network address of block ``index``."""
        return int(self.cidr.network_address) + index * self.block_addresses

    def selects(self, labels_for_node: Callable[[], Mapping[str, str]]) -> bool:
        text = self.node_selector
        if text in ("", "all()"):
            return True
        from calico import selector  # lazy: only pools with a real nodeSelector pay for it

        return bool(selector.parse(text).evaluate(dict(labels_for_node())))

    def __repr__(self) -> str:
        return f"Pool({self.name}, {self.cidr}, /{self.block_prefixlen})"


def select_pools(
    pools: list[Pool],
    *,
    version: int,
    labels_for_node: Callable[[], Mapping[str, str]],
    requested: list[str] | None = None,
) -> list[Pool]:
    """The pools a node may allocate IPv``version`` addresses from, in a stable order."""
    family = [p for p in pools if p.version == version]
    if requested:
        chosen = []
        for want in requested:
            match = [p for p in family if p.name == want or str(p.cidr) == _norm(want)]
            if not match:
                raise PoolError(f"requested IPv{version} pool {want!r} does not exist")
            if match[0].disabled:
                raise PoolError(f"requested IPv{version} pool {want!r} is disabled")
            chosen.append(match[0])
        family = chosen
    else:
        family = sorted((p for p in family if not p.disabled), key=lambda p: int(p.cidr[0]))
    return [p for p in family if p.selects(labels_for_node)]


def _norm(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def pool_of(pools: list[Pool], ip: IPAddress) -> Pool | None:
    for p in pools:
        if ip.version == p.version and ip in p.cidr:
            return p
    return None
