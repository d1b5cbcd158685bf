"""IPSetManager: dpapi IP sets -> nft sets, one per family (convert only, no I/O).

Net sets are interval sets; nft refuses overlapping intervals, so a set holding any non-host
CIDR is collapsed (``ipaddress.collapse_addresses``) before it is handed to the driver, which
diffs elements against what the kernel has. Host-only sets (the common case: endpoint /32s) are
passed through, so a one-member change costs a one-element delta.
"""

from __future__ import annotations

import ipaddress

from calico.dataplane import nft_render as r
from calico.dataplane import nft_table
from calico.dpapi import messages as m

DECLS = {
    (m.IPSET_NET, 4): "type ipv4_addr; flags interval;",
    (m.IPSET_NET, 6): "type ipv6_addr; flags interval;",
    (m.IPSET_PORT, 4): "type ipv4_addr . inet_proto . inet_service;",
    (m.IPSET_PORT, 6): "type ipv6_addr . inet_proto . inet_service;",
}


def _family(member: str) -> int:
    return 6 if ":" in member.split(",", 1)[0] else 4


def net_elements(members: set[str]) -> frozenset[str]:
    nets = [ipaddress.ip_network(x, strict=False) for x in members]
    if any(n.num_addresses > 1 for n in nets):
        nets = list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]
    return frozenset(str(n.network_address) if n.num_addresses == 1 else str(n) for n in nets)


def port_elements(members: set[str]) -> frozenset[str]:
    return frozenset(" . ".join(x.split(",")) for x in members)


class IPSetManager:
    def __init__(self, table: nft_table.NftTable) -> None:
        self._table = table
        self._kinds: dict[str, str] = {}
        self._members: dict[str, dict[int, set[str]]] = {}
        self._dirty: set[str] = set()

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.IPSetUpdate(id=set_id, kind=kind, members=members):
                self._kinds[set_id] = kind
                self._members[set_id] = {4: set(), 6: set()}
                for x in members:
                    self._members[set_id][_family(x)].add(x)
                self._dirty.add(set_id)
            case m.IPSetDeltaUpdate(id=set_id, added=added, removed=removed):
                fams = self._members[set_id]
                for x in removed:
                    fams[_family(x)].discard(x)
                for x in added:
                    fams[_family(x)].add(x)
                self._dirty.add(set_id)
            case m.IPSetRemove(id=set_id):
                self._kinds.pop(set_id, None)
                self._members.pop(set_id, None)
                self._dirty.discard(set_id)
                for family in (4, 6):
                    self._table.delete_set(r.ipset_name(set_id, family))

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def complete_deferred_work(self) -> None:
        for set_id in self._dirty:
            kind = self._kinds[set_id]
            for family in (4, 6):
                members = self._members[set_id][family]
                elements = net_elements(members) if kind == m.IPSET_NET else port_elements(members)
                self._table.set_set(r.ipset_name(set_id, family), DECLS[(kind, family)], elements)
        self._dirty.clear()
