"""IPSetCalculator: the members of every active IP set, from the cluster-wide item index.

An IP set is active while some active policy or profile rule refers to it (reference counted).
Members are counted (two endpoints may share an address), so a member leaves only with its last
contributor. Net sets hold the items' CIDRs; named-port sets hold ``ip,proto,port`` for each
address of a matching item that has a port of that name and protocol.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from calico.calc import event_sequencer, labelindex, rule_scanner, validation
from calico.dpapi import messages as m


class IPSetCalculator:
    def __init__(self, sequencer: event_sequencer.EventSequencer) -> None:
        self._seq = sequencer
        self.index = labelindex.SelectorIndex(self._on_match_started, self._on_match_stopped)
        self._items: dict[str, validation.Item] = {}
        self._specs: dict[str, rule_scanner.IPSetSpec] = {}
        self._refs: Counter[str] = Counter()
        self._members: dict[str, Counter[str]] = {}
        self._contrib: dict[tuple[str, str], tuple[str, ...]] = {}

    def members(self, set_id: str) -> frozenset[str]:
        return frozenset(self._members.get(set_id, ()))

    def active_count(self) -> int:
        return len(self._specs)

    def describe(self, set_id: str) -> str | None:
        """What an active set holds, for people: its selector, or the named port it resolves."""
        spec = self._specs.get(set_id)
        if spec is None:
            return None
        if spec.kind == m.IPSET_NET:
            return str(spec.selector)
        proto = f"/{spec.protocol}" if spec.protocol else ""
        return f'named port "{spec.port_name}"{proto} of {spec.selector}'

    # ---- references from rules ----------------------------------------------------------------

    def ref(self, spec: rule_scanner.IPSetSpec) -> None:
        set_id = spec.id
        self._refs[set_id] += 1
        if self._refs[set_id] == 1:
            self._specs[set_id] = spec
            self._members[set_id] = Counter()
            self._seq.on_ipset_added(set_id, spec.kind)
            self.index.update_selector(set_id, spec.selector)

    def unref(self, spec: rule_scanner.IPSetSpec) -> None:
        set_id = spec.id
        self._refs[set_id] -= 1
        if self._refs[set_id] <= 0:
            del self._refs[set_id]
            self.index.delete_selector(set_id)
            del self._specs[set_id]
            del self._members[set_id]
            self._seq.on_ipset_removed(set_id)

    # ---- items --------------------------------------------------------------------------------

    def on_item_update(self, item: validation.Item, labels: labelindex.Labels) -> None:
        self._items[item.id] = item
        self.index.update_item(item.id, labels)
        for set_id in list(self.index.matches_by_item.get(item.id, ())):
            new = self._contributions(self._specs[set_id], item)
            if new != self._contrib.get((set_id, item.id)):
                self._withdraw(set_id, item.id)
                self._contribute(set_id, item.id, new)

    def on_item_remove(self, item_id: str) -> None:
        self.index.delete_item(item_id)
        self._items.pop(item_id, None)

    # ---- matches ------------------------------------------------------------------------------

    def _on_match_started(self, set_id: str, item_id: str) -> None:
        item = self._items[item_id]
        self._contribute(set_id, item_id, self._contributions(self._specs[set_id], item))

    def _on_match_stopped(self, set_id: str, item_id: str) -> None:
        self._withdraw(set_id, item_id)

    def _contribute(self, set_id: str, item_id: str, members: tuple[str, ...]) -> None:
        self._contrib[(set_id, item_id)] = members
        counter = self._members[set_id]
        for member in members:
            counter[member] += 1
            if counter[member] == 1:
                self._seq.on_member_added(set_id, member)

    def _withdraw(self, set_id: str, item_id: str) -> None:
        members = self._contrib.pop((set_id, item_id), ())
        counter = self._members.get(set_id)
        if counter is None:
            return
        for member in members:
            counter[member] -= 1
            if counter[member] <= 0:
                del counter[member]
                self._seq.on_member_removed(set_id, member)

    @staticmethod
    def _contributions(spec: rule_scanner.IPSetSpec, item: validation.Item) -> tuple[str, ...]:
        if spec.kind == m.IPSET_NET:
            return item.nets
        out = []
        for port in item.ports:
            if port.name != spec.port_name or (spec.protocol and port.protocol != spec.protocol):
                continue
            for net in item.nets:
                addr = ipaddress.ip_network(net).network_address
                out.append(f"{addr},{port.protocol},{port.port}")
        return tuple(out)
