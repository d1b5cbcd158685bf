"""SelectorIndex: which items (endpoints, network sets) each selector matches, kept incrementally.

Callbacks ``on_match_started(sel_id, item_id)`` / ``on_match_stopped(sel_id, item_id)`` fire as
matches change. Work per change is bounded by the change, not the totals: a selector is indexed
under one of its label restrictions (``sel.label_restrictions()``), so a new selector is evaluated
only against items carrying that label, and an item's label change is evaluated only against the
selectors indexed under its labels plus the unrestricted ones and its current matches.

``LinearScanIndex`` below is the reference (evaluate everything) that tests compare against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

from calico import selector

MatchCallback = Callable[[str, str], None]
Labels = Mapping[str, str]


def _noop(_sel_id: str, _item_id: str) -> None:
    return None


class SelectorIndex:
    def __init__(
        self,
        on_match_started: MatchCallback = _noop,
        on_match_stopped: MatchCallback = _noop,
    ) -> None:
        self.on_match_started = on_match_started
        self.on_match_stopped = on_match_stopped
        self._selectors: dict[str, selector.Selector] = {}
        self._sel_slot: dict[str, tuple[str, str | None] | None] = {}
        self._sels_unrestricted: set[str] = set()
        self._sels_by_kv: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._sels_by_key: dict[str, set[str]] = defaultdict(set)
        self._labels: dict[str, Labels] = {}
        self._items_by_kv: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._items_by_key: dict[str, set[str]] = defaultdict(set)
        self.matches_by_sel: dict[str, set[str]] = defaultdict(set)
        self.matches_by_item: dict[str, set[str]] = defaultdict(set)

    # ---- selectors ----------------------------------------------------------------------------

    def update_selector(self, sel_id: str, sel: selector.Selector) -> None:
        old = self._selectors.get(sel_id)
        if old == sel:
            return
        if old is not None:
            self._unindex_selector(sel_id)
        self._selectors[sel_id] = sel
        self._index_selector(sel_id, sel)
        now = {i for i in self._candidate_items(sel_id) if sel.evaluate(self._labels[i])}
        before = set(self.matches_by_sel.get(sel_id, ()))
        for item_id in sorted(before - now):
            self._stop(sel_id, item_id)
        for item_id in sorted(now - before):
            self._start(sel_id, item_id)

    def delete_selector(self, sel_id: str) -> None:
        if sel_id not in self._selectors:
            return
        for item_id in sorted(self.matches_by_sel.get(sel_id, ())):
            self._stop(sel_id, item_id)
        self._unindex_selector(sel_id)
        del self._selectors[sel_id]
        self.matches_by_sel.pop(sel_id, None)

    def _index_selector(self, sel_id: str, sel: selector.Selector) -> None:
        restrictions = sel.label_restrictions()
        slot: tuple[str, str | None] | None = None
        if restrictions:
            # Prefer a key with a small value set (most selective); ties by name.
            key = min(restrictions, key=lambda k: (restrictions[k] is None, k))
            values = restrictions[key]
            if values is not None and len(values) == 1:
                slot = (key, next(iter(values)))
            else:
                slot = (key, None)
        self._sel_slot[sel_id] = slot
        if slot is None:
            self._sels_unrestricted.add(sel_id)
        elif slot[1] is None:
            self._sels_by_key[slot[0]].add(sel_id)
        else:
            self._sels_by_kv[(slot[0], slot[1])].add(sel_id)

    def _unindex_selector(self, sel_id: str) -> None:
        slot = self._sel_slot.pop(sel_id, None)
        if slot is None:
            self._sels_unrestricted.discard(sel_id)
        elif slot[1] is None:
            self._sels_by_key[slot[0]].discard(sel_id)
        else:
            self._sels_by_kv[(slot[0], slot[1])].discard(sel_id)

    def _candidate_items(self, sel_id: str) -> set[str]:
        slot = self._sel_slot.get(sel_id)
        if slot is None:
            return set(self._labels)
        if slot[1] is None:
            return set(self._items_by_key.get(slot[0], ()))
        return set(self._items_by_kv.get((slot[0], slot[1]), ()))

    # ---- items --------------------------------------------------------------------------------

    def update_item(self, item_id: str, labels: Labels) -> None:
        old = self._labels.get(item_id)
        if old is not None:
            if old == labels:
                return
            self._unindex_item(item_id, old)
        labels = dict(labels)
        self._labels[item_id] = labels
        for k, v in labels.items():
            self._items_by_kv[(k, v)].add(item_id)
            self._items_by_key[k].add(item_id)
        candidates = set(self._sels_unrestricted)
        for k, v in labels.items():
            candidates |= self._sels_by_kv.get((k, v), set())
            candidates |= self._sels_by_key.get(k, set())
        before = set(self.matches_by_item.get(item_id, ()))
        candidates |= before
        now = {s for s in candidates if self._selectors[s].evaluate(labels)}
        for sel_id in sorted(before - now):
            self._stop(sel_id, item_id)
        for sel_id in sorted(now - before):
            self._start(sel_id, item_id)

    def delete_item(self, item_id: str) -> None:
        old = self._labels.pop(item_id, None)
        if old is None:
            return
        for sel_id in sorted(self.matches_by_item.get(item_id, ())):
            self._stop(sel_id, item_id)
        self._unindex_item(item_id, old)
        self.matches_by_item.pop(item_id, None)

    def _unindex_item(self, item_id: str, labels: Labels) -> None:
        for k, v in labels.items():
            self._items_by_kv[(k, v)].discard(item_id)
            if not self._items_by_kv[(k, v)]:
                del self._items_by_kv[(k, v)]
            self._items_by_key[k].discard(item_id)
            if not self._items_by_key[k]:
                del self._items_by_key[k]

    # ---- matches ------------------------------------------------------------------------------

    def _start(self, sel_id: str, item_id: str) -> None:
        self.matches_by_sel[sel_id].add(item_id)
        self.matches_by_item[item_id].add(sel_id)
        self.on_match_started(sel_id, item_id)

    def _stop(self, sel_id: str, item_id: str) -> None:
        self.matches_by_sel[sel_id].discard(item_id)
        if not self.matches_by_sel[sel_id]:
            del self.matches_by_sel[sel_id]
        self.matches_by_item[item_id].discard(sel_id)
        if not self.matches_by_item[item_id]:
            del self.matches_by_item[item_id]
        self.on_match_stopped(sel_id, item_id)

    def matches(self) -> set[tuple[str, str]]:
        return {(s, i) for s, items in self.matches_by_sel.items() for i in items}


class LinearScanIndex:
    """The reference: every (selector, item) pair evaluated from scratch."""

    def __init__(self) -> None:
        self.selectors: dict[str, selector.Selector] = {}
        self.labels: dict[str, Labels] = {}

    def matches(self) -> set[tuple[str, str]]:
        return {
            (s, i)
            for s, sel in self.selectors.items()
            for i, labels in self.labels.items()
            if sel.evaluate(labels)
        }
