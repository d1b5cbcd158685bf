"""Block: Calico's allocation block, a pure allocator over one CIDR (no I/O).

A block covers ``2**(bits - prefixlen)`` addresses. ``allocations[ordinal]`` is an index into
``attributes`` (who holds the address: handle id + secondary attributes such as node, namespace,
pod) or ``None`` when free; ``unallocated`` lists the free ordinals in hand-out order.
The JSON form is what Calico stores at ``/calico/ipam/v2/assignment/ipv4/block/<net>-<len>``.

Invariants (checked by the hypothesis tests): an ordinal is either in ``unallocated`` or has an
allocation, never both; every allocation points at an existing attribute; attributes that nothing
points at are dropped on release; releasing everything restores the full free count.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockError(ValueError):
    """An impossible request against one block (address outside it, already allocated...)."""


def affinity_for(host: str) -> str:
    return f"host:{host}"


class Block:
    """One allocation block. Mutating methods bump ``sequence_number``."""

    __slots__ = (
        "affinity",
        "allocations",
        "attributes",
        "cidr",
        "deleted",
        "sequence_number",
        "strict_affinity",
        "unallocated",
    )

    def __init__(
        self,
        cidr: IPNetwork,
        *,
        affinity: str | None = None,
        strict_affinity: bool = False,
        allocations: list[int | None] | None = None,
        unallocated: list[int] | None = None,
        attributes: list[dict[str, Any]] | None = None,
        sequence_number: int = 0,
        deleted: bool = False,
    ) -> None:
        size = cidr.num_addresses
        self.cidr = cidr
        self.affinity = affinity
        self.strict_affinity = strict_affinity
        self.allocations: list[int | None] = (
            allocations if allocations is not None else [None] * size
        )
        self.unallocated: list[int] = unallocated if unallocated is not None else list(range(size))
        self.attributes: list[dict[str, Any]] = attributes if attributes is not None else []
        self.sequence_number = sequence_number
        self.deleted = deleted
        if len(self.allocations) != size:
            raise BlockError(
                f"block {cidr}: {len(self.allocations)} allocations for {size} addresses"
            )

    @classmethod
    def new(
        cls, cidr: IPNetwork | str, *, host: str | None, strict_affinity: bool = False
    ) -> Block:
        net = ipaddress.ip_network(cidr) if isinstance(cidr, str) else cidr
        return cls(
            net, affinity=affinity_for(host) if host else None, strict_affinity=strict_affinity
        )

    # ---- JSON (Calico's shape) ------------------------------------------------------------------

    @classmethod
    def from_json(cls, raw: bytes | str) -> Block:
        d = json.loads(raw)
        return cls(
            ipaddress.ip_network(d["cidr"]),
            affinity=d.get("affinity"),
            strict_affinity=bool(d.get("strictAffinity", False)),
            allocations=list(d["allocations"]),
            unallocated=list(d.get("unallocated") or []),
            attributes=list(d.get("attributes") or []),
            sequence_number=int(d.get("sequenceNumber", 0)),
            deleted=bool(d.get("deleted", False)),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "cidr": str(self.cidr),
                "affinity": self.affinity,
                "strictAffinity": self.strict_affinity,
                "allocations": self.allocations,
                "unallocated": self.unallocated,
                "attributes": self.attributes,
                "deleted": self.deleted,
                "sequenceNumber": self.sequence_number,
            },
            separators=(",", ":"),
        )

    # ---- queries --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.allocations)

    @property
    def free_count(self) -> int:
        return len(self.unallocated)

    @property
    def in_use(self) -> int:
        return self.size - len(self.unallocated)

    @property
    def host(self) -> str | None:
        """The host this block is affine to (``affinity`` is ``host:<name>``)."""
        if self.affinity and self.affinity.startswith("host:"):
            return self.affinity[5:]
        return None

    def ordinal(self, ip: IPAddress | str) -> int:
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if addr not in self.cidr:
            raise BlockError(f"address {addr} is not in block {self.cidr}")
        return int(addr) - int(self.cidr.network_address)

    def address(self, ordinal: int) -> str:
        return str(self.cidr.network_address + ordinal)

    def attributes_of(self, ip: IPAddress | str) -> dict[str, Any] | None:
        """The attribute record (handle_id, secondary) of an allocated address, else None."""
        idx = self.allocations[self.ordinal(ip)]
        return None if idx is None else self.attributes[idx]

    def allocated(self) -> list[tuple[str, dict[str, Any]]]:
        """(address, attribute record) for every allocated address, in ordinal order."""
        return [
            (self.address(o), self.attributes[idx])
            for o, idx in enumerate(self.allocations)
            if idx is not None
        ]

    def ips_by_handle(self, handle_id: str) -> list[str]:
        return [ip for ip, attr in self.allocated() if attr.get("handle_id") == handle_id]

    # ---- mutation -------------------------------------------------------------------------------

    def _attr_index(self, handle_id: str | None, secondary: dict[str, str] | None) -> int:
        record: dict[str, Any] = {"handle_id": handle_id, "secondary": secondary or None}
        for i, existing in enumerate(self.attributes):
            if existing == record:
                return i
        self.attributes.append(record)
        return len(self.attributes) - 1

    def auto_assign(
        self, num: int, *, handle_id: str | None, attrs: dict[str, str] | None = None
    ) -> list[str]:
        """Allocate up to ``num`` free addresses (fewer if the block fills up)."""
        if num <= 0 or not self.unallocated:
            return []
        take = self.unallocated[:num]
        del self.unallocated[: len(take)]
        idx = self._attr_index(handle_id, attrs)
        for o in take:
            self.allocations[o] = idx
        self.sequence_number += 1
        return [self.address(o) for o in take]

    def assign(
        self, ip: IPAddress | str, *, handle_id: str | None, attrs: dict[str, str] | None = None
    ) -> None:
        """Allocate one specific address; BlockError if it is already in use."""
        o = self.ordinal(ip)
        if self.allocations[o] is not None:
            raise BlockError(f"address {ip} is already allocated in block {self.cidr}")
        self.unallocated.remove(o)
        self.allocations[o] = self._attr_index(handle_id, attrs)
        self.sequence_number += 1

    def release(self, ips: list[str]) -> tuple[list[str], dict[str, int]]:
        """Free ``ips``; returns (addresses that were not allocated, {handle_id: count freed})."""
        not_allocated: list[str] = []
        per_handle: dict[str, int] = {}
        for ip in ips:
            o = self.ordinal(ip)
            idx = self.allocations[o]
            if idx is None:
                not_allocated.append(ip)
                continue
            handle = self.attributes[idx].get("handle_id")
            if handle:
                per_handle[handle] = per_handle.get(handle, 0) + 1
            self.allocations[o] = None
            self.unallocated.append(o)
        if len(not_allocated) < len(ips):
            self._compact_attributes()
            self.sequence_number += 1
        return not_allocated, per_handle

    def release_by_handle(self, handle_id: str) -> int:
        """Free every address held by ``handle_id``; the number freed."""
        ips = self.ips_by_handle(handle_id)
        if ips:
            self.release(ips)
        return len(ips)

    def _compact_attributes(self) -> None:
        """Drop attribute records no allocation refers to and renumber the rest."""
        used = sorted({idx for idx in self.allocations if idx is not None})
        if len(used) == len(self.attributes):
            return
        remap = {old: new for new, old in enumerate(used)}
        self.attributes = [self.attributes[old] for old in used]
        self.allocations = [None if idx is None else remap[idx] for idx in self.allocations]
