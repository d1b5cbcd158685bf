"""MasqManager: IPPools -> natOutgoing (convert only, no I/O).

Per family, two interval sets: ``cali40-masq-pools`` (pools with ``natOutgoing``) and
``cali40-all-pools`` (every pool, disabled ones included), and one ``postrouting`` nat base chain,
``cali-POSTROUTING``::

    ip saddr @cali40-masq-pools ip daddr != @cali40-all-pools ip daddr != @cali40-all-hosts
        masquerade                       (or ``snat ip to <NATOutgoingAddress>`` when set)
    (the same for ip6 with the cali60 sets)

So traffic from a masquerading pool leaves with the node's address unless it goes to another pool
or to a cluster node. The chain is fixed; a pool change only changes set elements (one small
delta in the table transaction, never a table reload).
"""

from __future__ import annotations

import ipaddress

from calico.dataplane import hostip_manager, ipset_manager, nft_table
from calico.dataplane import nft_render as r
from calico.dpapi import messages as m

CHAIN = "cali-POSTROUTING"
BASE = "type nat hook postrouting priority srcnat; policy accept;"
MASQ_POOLS = {4: "cali40-masq-pools", 6: "cali60-masq-pools"}
ALL_POOLS = {4: "cali40-all-pools", 6: "cali60-all-pools"}
DECLS = {4: "type ipv4_addr; flags interval;", 6: "type ipv6_addr; flags interval;"}


def chain_rules(nat_address: str = "") -> tuple[str, ...]:
    rules = []
    for family, ip in ((4, "ip"), (6, "ip6")):
        action = "masquerade"
        if nat_address and ":" not in nat_address and family == 4:
            action = f"snat ip to {nat_address}"
        rules.append(
            r.with_comment(
                f"{ip} saddr @{MASQ_POOLS[family]} {ip} daddr != @{ALL_POOLS[family]}"
                f" {ip} daddr != @{hostip_manager.ALL_HOSTS[family]} counter {action}"
            )
        )
    return tuple(rules)


class MasqManager:
    def __init__(self, table: nft_table.NftTable) -> None:
        self._table = table
        self._pools: dict[str, m.IPPool] = {}
        self._dirty = True
        self._nat_address = ""
        table.set_base_chain(CHAIN, BASE, chain_rules())

    @property
    def dirty(self) -> bool:
        return self._dirty

    def set_nat_address(self, address: str) -> None:
        if address != self._nat_address:
            self._nat_address = address
            self._table.set_base_chain(CHAIN, BASE, chain_rules(address))

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.IPAMPoolUpdate(id=pool_id, pool=pool):
                if self._pools.get(pool_id) != pool:
                    self._pools[pool_id] = pool
                    self._dirty = True
            case m.IPAMPoolRemove(id=pool_id):
                if self._pools.pop(pool_id, None) is not None:
                    self._dirty = True

    def complete_deferred_work(self) -> None:
        if not self._dirty:
            return
        for family in (4, 6):
            pools = [
                p for p in self._pools.values() if ipaddress.ip_network(p.cidr).version == family
            ]
            masq = {p.cidr for p in pools if p.masquerade}
            every = {p.cidr for p in pools}
            decl = DECLS[family]
            self._table.set_set(MASQ_POOLS[family], decl, ipset_manager.net_elements(masq))
            self._table.set_set(ALL_POOLS[family], decl, ipset_manager.net_elements(every))
        self._dirty = False
