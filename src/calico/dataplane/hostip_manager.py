"""HostIPManager: every cluster Node's addresses -> the nft sets ``cali40-all-hosts`` and
``cali60-all-hosts`` (convert only, no I/O).

The sets are always declared (empty without Nodes): the masquerade chain never NATs traffic to
a cluster node, and the tunnel filter accepts IPIP/VXLAN only from one. Addresses are counted (two
Nodes may claim the same one), so an address leaves with its last Node; the table driver sends
only the element delta.
"""

from __future__ import annotations

from collections import Counter

from calico.dataplane import nft_table
from calico.dpapi import messages as m

ALL_HOSTS = {4: "cali40-all-hosts", 6: "cali60-all-hosts"}
DECLS = {4: "type ipv4_addr;", 6: "type ipv6_addr;"}


def host_addrs(host: m.HostMetadataUpdate) -> dict[int, str]:
    """family -> bare address of a Node (its prefix length dropped)."""
    out = {}
    if host.ipv4_addr:
        out[4] = host.ipv4_addr.split("/")[0]
    if host.ipv6_addr:
        out[6] = host.ipv6_addr.split("/")[0]
    return out


class HostIPManager:
    def __init__(self, table: nft_table.NftTable) -> None:
        self._table = table
        self._hosts: dict[str, dict[int, str]] = {}
        self._counts: dict[int, Counter[str]] = {4: Counter(), 6: Counter()}
        self._dirty = {4, 6}

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.HostMetadataUpdate(hostname=name):
                self._set(name, host_addrs(msg))
            case m.HostMetadataRemove(hostname=name):
                self._set(name, {})

    def _set(self, name: str, addrs: dict[int, str]) -> None:
        old = self._hosts.pop(name, {})
        if addrs:
            self._hosts[name] = addrs
        for family in (4, 6):
            before, after = old.get(family), addrs.get(family)
            if before == after:
                continue
            counts = self._counts[family]
            if before is not None:
                counts[before] -= 1
                if counts[before] <= 0:
                    del counts[before]
            if after is not None:
                counts[after] += 1
            self._dirty.add(family)

    def complete_deferred_work(self) -> None:
        for family in sorted(self._dirty):
            elements = frozenset(self._counts[family])
            self._table.set_set(ALL_HOSTS[family], DECLS[family], elements)
        self._dirty.clear()
