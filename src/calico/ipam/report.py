"""Read-only IPAM reports: usage per pool and block; the leak check behind ``calicoctl ipam check``.

A *leak* is an allocated address that no WorkloadEndpoint lists in ``spec.ipNetworks`` and that is
not a node's tunnel address; the reverse (an endpoint whose address is not allocated) is reported
too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from calico.ipam.block import Block
from calico.ipam.client import IPAMClient
from calico.ipam.pools import pool_of


@dataclass(slots=True)
class BlockUsage:
    cidr: str
    affinity: str | None
    size: int
    in_use: int


@dataclass(slots=True)
class PoolUsage:
    cidr: str
    name: str
    size: int
    in_use: int = 0
    blocks: list[BlockUsage] = field(default_factory=list)


def usage(ipam: IPAMClient) -> list[PoolUsage]:
    """Totals per pool (addresses in the pool, addresses in use) with the pool's blocks."""
    pools = ipam.all_pools()
    out = {
        p.name: PoolUsage(cidr=str(p.cidr), name=p.name, size=p.cidr.num_addresses) for p in pools
    }
    orphans = PoolUsage(cidr="(no pool)", name="", size=0)
    for block in ipam.blocks():
        pool = pool_of(pools, block.cidr.network_address)
        target = out[pool.name] if pool else orphans
        target.in_use += block.in_use
        target.blocks.append(BlockUsage(str(block.cidr), block.affinity, block.size, block.in_use))
    result = list(out.values())
    if orphans.blocks:
        result.append(orphans)
    return result


@dataclass(slots=True)
class Allocation:
    ip: str
    block: str
    handle_id: str | None
    attributes: dict[str, Any]


@dataclass(slots=True)
class CheckReport:
    allocations: int = 0
    endpoints: int = 0
    leaked: list[Allocation] = field(default_factory=list)  # allocated, no endpoint
    unallocated_in_use: list[tuple[str, str]] = field(default_factory=list)  # (ip, endpoint)

    @property
    def ok(self) -> bool:
        return not self.leaked and not self.unallocated_in_use


def allocations(blocks: list[Block]) -> list[Allocation]:
    return [
        Allocation(ip, str(b.cidr), attr.get("handle_id"), attr.get("secondary") or {})
        for b in blocks
        for ip, attr in b.allocated()
    ]


def _endpoint_ips(ipam: IPAMClient) -> dict[str, str]:
    """address -> "namespace/name" of the WorkloadEndpoint listing it."""
    owners: dict[str, str] = {}
    for wep in ipam.client.list("WorkloadEndpoint"):
        meta = wep.get("metadata") or {}
        who = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
        for net in (wep.get("spec") or {}).get("ipNetworks") or []:
            owners[str(ipaddress.ip_interface(net).ip)] = who
    return owners


def _node_ips(ipam: IPAMClient) -> set[str]:
    out: set[str] = set()
    for node in ipam.client.list("Node"):
        spec = node.get("spec") or {}
        for field_name in ("ipv4IPIPTunnelAddr", "ipv4VXLANTunnelAddr"):
            value = spec.get(field_name) or (spec.get("bgp") or {}).get(field_name)
            if value:
                out.add(str(ipaddress.ip_address(value)))
    return out


def check(ipam: IPAMClient) -> CheckReport:
    """Compare the IPAM allocations with the WorkloadEndpoints (and node tunnel addresses)."""
    allocs = allocations(ipam.blocks())
    owners = _endpoint_ips(ipam)
    node_ips = _node_ips(ipam)
    report = CheckReport(allocations=len(allocs), endpoints=len(set(owners.values())))
    pools = ipam.all_pools()
    allocated = set()
    for a in allocs:
        allocated.add(a.ip)
        if a.ip not in owners and a.ip not in node_ips:
            report.leaked.append(a)
    for ip, who in sorted(owners.items()):
        if ip not in allocated and pool_of(pools, ipaddress.ip_address(ip)) is not None:
            report.unallocated_in_use.append((ip, who))
    return report
