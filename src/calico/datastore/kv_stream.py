"""KVStream: a syncer's source in a store with one revision counter (etcd, the memory backend).

Lists its prefixes one by one, in pages, every page at the revision the first was read at; watches
them as one key range (from the first prefix to the end of the last: the etcd gateway takes one key
range a stream), from a given revision. After a compaction, one read-only transaction checks, per
prefix, that no key was modified after the syncer's revision and that the prefix holds as many keys
as the syncer knows (none was deleted): then the watch may resume without a list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from calico.datastore.backend import (
    KV,
    Cmp,
    Op,
    StoreError,
    TxnResult,
    Unavailable,
    WatchResponse,
    op_get,
    prefix_end,
)

# The compaction check is one transaction of two reads per prefix; etcd's --max-txn-ops is 128.
MAX_CHECKED_PREFIXES = 64


class RevisionedStore(Protocol):
    """What a KVStream needs: paged lists at a revision, a range watch, read transactions."""

    def get_prefix_pages(
        self, prefix: str, *, revision: int = 0, limit: int = 500
    ) -> Iterator[tuple[list[KV], int]]: ...

    def watch(
        self, prefix: str, start_revision: int, *, range_end: str | None = None,
        probe_after: float = 10.0, probe_timeout: float = 5.0,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[WatchResponse]: ...  # fmt: skip

    def txn(
        self, compare: Sequence[Cmp], success: Sequence[Op], failure: Sequence[Op] | None = None
    ) -> TxnResult: ...


def covering(prefixes: Sequence[str]) -> list[str]:
    """``prefixes`` without those inside another (each watched key is under exactly one)."""
    out: list[str] = []
    for p in sorted(set(prefixes)):
        if not out or not p.startswith(out[-1]):
            out.append(p)
    return out


class KVStream:
    name = "keys"

    def __init__(self, store: RevisionedStore, prefixes: Sequence[str]) -> None:
        self._store = store
        self.prefixes = tuple(covering(prefixes))
        if not self.prefixes:
            raise ValueError("a stream needs at least one prefix")
        # the watch: from the first prefix to the end of the last (sorted)
        self.range = (self.prefixes[0], prefix_end(self.prefixes[-1]))

    def list_pages(self, *, limit: int) -> Iterator[tuple[list[KV], int]]:
        rev = 0
        for prefix in self.prefixes:
            for kvs, read_at in self._store.get_prefix_pages(prefix, revision=rev, limit=limit):
                rev = read_at  # the first page's, then the same
                yield kvs, rev

    def watch(
        self, start_revision: int, *, probe_after: float, probe_timeout: float,
        stopped: Callable[[], bool],
    ) -> Iterator[WatchResponse]:  # fmt: skip
        return self._store.watch(
            self.range[0], start_revision, range_end=self.range[1], probe_after=probe_after,
            probe_timeout=probe_timeout, stopped=stopped,
        )  # fmt: skip

    def unchanged_since(self, revision: int, known: dict[str, int]) -> tuple[int, str]:
        if len(self.prefixes) > MAX_CHECKED_PREFIXES:
            return 0, f"{len(self.prefixes)} prefixes are too many to check"
        ops = []
        for p in self.prefixes:
            ops.append(op_get(p, prefix=True, keys_only=True, min_mod_revision=revision + 1))
            ops.append(op_get(p, prefix=True, count_only=True))
        try:
            res = self._store.txn([], ops)
        except Unavailable:
            raise  # the syncer's loop retries, and comes back here
        except StoreError as exc:  # the store refused the check: a re-list is always right
            return 0, f"the check failed: {exc}"
        for i, p in enumerate(self.prefixes):
            if res.responses[2 * i] or res.counts[2 * i + 1] != known.get(p, 0):
                return 0, f"{p} changed"
        return res.revision, ""
