"""What an IPAM decision rests on: the etcd records read, each with the revision it was read at.

A :class:`View` knows which records it holds and so how to read them all again in one etcd
round trip (:meth:`View.read_ops`, used as the failure branch of every writing transaction: a
lost compare returns the fresh records, which become the next attempt's view). It grows by
stages when a decision needs more (:meth:`View.read_more`): the affine blocks' values, the key
list of every block of a family (to claim a free one), every block of a family (to borrow).

A :class:`Cache` keeps per-host views between calls of a long-lived caller (the CNI server), so
a steady-state assignment needs no read at all: the writing transaction compares every record
it relies on, so a stale remembered view never leads to a wrong write, only to one failed
compare (which returns fresh records).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from calico.datastore.backend import KV, Backend, Get, op_get
from calico.ipam import keys
from calico.model import kinds

POOL_PREFIX = kinds.lookup("IPPool").prefix()


def _keys_only(prefix: str) -> Get:
    return op_get(prefix, prefix=True, keys_only=True)


class View:
    """Records for one host (and optionally one handle), by kind."""

    def __init__(self, host: str, versions: list[int], handle_key: str = "") -> None:
        self.host = host
        self.versions = list(versions)
        self.handle_key = handle_key
        self.node_key = kinds.lookup("Node").key(host)
        self.handle: KV | None = None
        self.pools: list[KV] = []
        self.node: KV | None = None
        self.config: KV | None = None
        self.affinity: dict[int, list[KV]] = {}
        self.blocks: dict[str, KV | None] = {}  # block key -> KV (None: read and absent)
        self.ensure: dict[str, KV | None] = {}  # keys that must exist -> KV (None: absent)
        self.index: dict[int, set[str]] = {}  # family -> every block key (for claims)
        self.all_blocks: dict[int, list[KV]] = {}  # family -> every block (for borrows)
        self.remembered = False  # from a Cache, not read by this call

    # ---- reading ----------------------------------------------------------------------------

    def read_ops(self) -> list[Get]:
        """Operations that read every record this view holds (in :meth:`load`'s order)."""
        ops = [op_get(self.handle_key)] if self.handle_key else []
        ops += [op_get(POOL_PREFIX, prefix=True), op_get(self.node_key), op_get(keys.CONFIG_KEY)]
        ops += [op_get(keys.host_affinity_prefix(self.host, v), prefix=True) for v in self.versions]
        ops += [op_get(k) for k in self.ensure]
        ops += [op_get(k) for k in self.blocks]
        ops += [_keys_only(keys.block_prefix(v)) for v in self.index]
        ops += [op_get(keys.block_prefix(v), prefix=True) for v in self.all_blocks]
        return ops

    def load(self, responses: list[list[KV]]) -> None:
        """Replace every record with the responses to :meth:`read_ops` (same order)."""
        it = iter(responses)
        self.handle = _one(next(it)) if self.handle_key else None
        self.pools = next(it)
        self.node = _one(next(it))
        self.config = _one(next(it))
        self.affinity = {v: next(it) for v in self.versions}
        self.ensure = {k: _one(next(it)) for k in self.ensure}
        self.blocks = {k: _one(next(it)) for k in self.blocks}
        self.index = {v: {kv.key for kv in next(it)} for v in self.index}
        self.all_blocks = {v: next(it) for v in self.all_blocks}
        self.remembered = False

    def read(self, store: Backend) -> None:
        self.load(store.txn([], self.read_ops()).responses)

    def read_more(
        self,
        store: Backend,
        *,
        blocks: Sequence[str] = (),
        ensure: Sequence[str] = (),
        index: Sequence[int] = (),
        all_blocks: Sequence[int] = (),
    ) -> None:
        """Add records to the view, read in one round trip."""
        ops = [op_get(k) for k in blocks] + [op_get(k) for k in ensure]
        ops += [_keys_only(keys.block_prefix(v)) for v in index]
        ops += [op_get(keys.block_prefix(v), prefix=True) for v in all_blocks]
        if not ops:
            return
        it = iter(store.txn([], ops).responses)
        self.blocks.update({k: _one(next(it)) for k in blocks})
        self.ensure.update({k: _one(next(it)) for k in ensure})
        self.index.update({v: {kv.key for kv in next(it)} for v in index})
        self.all_blocks.update({v: next(it) for v in all_blocks})

    # ---- remembering ------------------------------------------------------------------------

    def copy(self, *, handle_key: str = "") -> View:
        """The view's host records for another call: no handle, no family-wide listings."""
        out = View(self.host, self.versions, handle_key)
        out.pools, out.node, out.config = self.pools, self.node, self.config
        out.affinity = dict(self.affinity)
        out.blocks = {k: kv for k, kv in self.blocks.items() if kv is not None}
        out.ensure = dict(self.ensure)
        out.remembered = True
        return out


def _one(kvs: list[KV]) -> KV | None:
    return kvs[0] if kvs else None


class Cache:
    """Per-host views kept between calls by a long-lived caller (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, View] = {}

    def get(self, host: str, versions: list[int], handle_key: str) -> View | None:
        """A private copy of the host's view (calls run concurrently), if it covers ``versions``."""
        with self._lock:
            view = self._views.get(host)
            if view is None or any(v not in view.affinity for v in versions):
                return None
            return view.copy(handle_key=handle_key)

    def put(self, view: View) -> None:
        with self._lock:
            self._views[view.host] = view.copy()

    def drop(self, host: str) -> None:
        with self._lock:
            self._views.pop(host, None)

    def block_keys(self, host: str) -> list[str]:
        with self._lock:
            view = self._views.get(host)
            return list(view.blocks) if view else []

    def update_blocks(self, host: str, kvs: list[KV]) -> None:
        with self._lock:
            view = self._views.get(host)
            if view is not None:
                for kv in kvs:
                    if kv.key in view.blocks:
                        view.blocks[kv.key] = kv
