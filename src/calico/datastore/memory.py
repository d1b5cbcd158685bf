"""MemoryBackend: the datastore seam in process memory, with etcd's semantics (tests only).

For unit tests of IPAM and controller logic without a store process: one revision counter, a
multi-version history (reads at an older revision, until it is compacted), atomic transactions
with compares, and watches from a revision (:class:`~calico.datastore.backend.Compacted` once it
is gone). Thread-safe: every client of one store is the same object. Test hooks:
:meth:`compact`, :meth:`break_watches` (every open watch ends with ``Unavailable``).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from calico.datastore.backend import (
    KV,
    Cmp,
    Compacted,
    Get,
    Op,
    Put,
    StoreError,
    SyncStream,
    TxnResult,
    Unavailable,
    WatchEvent,
    WatchResponse,
    as_bytes,
    cmp_absent,
    cmp_mod,
    op_delete,
    op_put,
    prefix_end,
)


@dataclass(frozen=True, slots=True)
class _Version:
    mod_revision: int
    create_revision: int
    value: bytes | None  # None: deleted at mod_revision


class MemoryBackend:
    """An in-memory store with etcd's revision discipline (see the module docstring)."""

    atomic_txn = True
    datastore_type = "memory"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._keys: list[str] = []  # sorted: every key with a version (live or deleted)
        self._versions: dict[str, list[_Version]] = {}
        self._revision = 1  # etcd starts at 1
        self._compacted = 0
        self._log: list[tuple[int, list[WatchEvent]]] = []  # (revision, events), ascending
        self._breaks = 0  # watches started before the latest break end
        self.closed = False

    # ---- identity ---------------------------------------------------------------------------

    def where(self) -> str:
        return "memory"

    def close(self) -> None:
        self.closed = True

    @property
    def current_revision(self) -> int:
        return self._revision

    # ---- reading ----------------------------------------------------------------------------

    def _at(self, key: str, revision: int) -> KV | None:
        for v in reversed(self._versions.get(key, ())):
            if v.mod_revision <= revision:
                if v.value is None:
                    return None
                return KV(key, v.value, v.mod_revision, v.create_revision)
        return None

    def _check_readable(self, revision: int) -> int:
        if revision and revision < self._compacted:
            raise StoreError("mvcc: required revision has been compacted")
        if revision > self._revision:
            raise StoreError("mvcc: required revision is a future revision")
        return revision or self._revision

    def _range(self, start: str, end: str, revision: int) -> list[KV]:
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end) if end != "\0" else len(self._keys)
        out = []
        for key in self._keys[lo:hi]:
            kv = self._at(key, revision)
            if kv is not None:
                out.append(kv)
        return out

    def get(self, key: str) -> KV | None:
        with self._cond:
            return self._at(key, self._revision)

    def get_prefix(self, prefix: str, *, revision: int = 0) -> tuple[list[KV], int]:
        with self._cond:
            rev = self._check_readable(revision)
            return self._range(prefix, prefix_end(prefix), rev), self._revision

    def get_prefix_pages(
        self, prefix: str, *, revision: int = 0, limit: int = 500
    ) -> Iterator[tuple[list[KV], int]]:
        start = prefix
        while True:
            with self._cond:
                revision = self._check_readable(revision)
                kvs = self._range(start, prefix_end(prefix), revision)
            page = kvs[:limit]
            yield page, revision
            if len(kvs) <= limit or not page:
                return
            start = page[-1].key + "\0"

    def revision(self) -> int:
        return self._revision

    # ---- writing ----------------------------------------------------------------------------

    def _holds(self, c: Cmp) -> bool:
        kv = self._at(c.key, self._revision)
        return (
            (kv is None)
            if c.mod_revision == 0
            else (kv is not None and kv.mod_revision == c.mod_revision)
        )

    def _read(self, op: Get) -> tuple[list[KV], int]:
        end = prefix_end(op.key) if op.prefix else op.key + "\0"
        kvs = self._range(op.key, end, self._revision)
        count = len(kvs)
        if op.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= op.min_mod_revision]
        if op.count_only:
            return [], count
        if op.keys_only:
            kvs = [KV(kv.key, b"", kv.mod_revision, kv.create_revision) for kv in kvs]
        return kvs, count

    def _write(self, ops: Sequence[Op]) -> tuple[list[list[KV]], list[int]]:
        """Apply ``ops`` at one new revision (only if something changes); reads see the state
        before this transaction's writes, as etcd's do not (etcd forbids reading a key the
        same transaction wrote; callers never do)."""
        rev = self._revision + 1
        events: list[WatchEvent] = []
        responses: list[list[KV]] = []
        counts: list[int] = []
        for op in ops:
            if isinstance(op, Get):
                kvs, count = self._read(op)
                responses.append(kvs)
                counts.append(count)
                continue
            responses.append([])
            counts.append(0)
            current = self._at(op.key, self._revision)
            if isinstance(op, Put):
                value = as_bytes(op.value)
                created = current.create_revision if current is not None else rev
                self._add_version(op.key, _Version(rev, created, value))
                events.append(WatchEvent("PUT", op.key, value, rev))
            elif current is not None:  # a Delete of a live key
                self._add_version(op.key, _Version(rev, 0, None))
                events.append(WatchEvent("DELETE", op.key, b"", rev))
        if events:
            self._revision = rev
            self._log.append((rev, events))
            self._cond.notify_all()
        return responses, counts

    def _add_version(self, key: str, version: _Version) -> None:
        if key not in self._versions:
            bisect.insort(self._keys, key)
            self._versions[key] = []
        self._versions[key].append(version)

    def txn(
        self, compare: Sequence[Cmp], success: Sequence[Op], failure: Sequence[Op] | None = None
    ) -> TxnResult:
        with self._cond:
            ok = all(self._holds(c) for c in compare)
            responses, counts = self._write(success if ok else (failure or []))
            return TxnResult(ok, self._revision, responses, counts)

    def create(self, key: str, value: bytes | str, *, lease: int = 0) -> int | None:
        res = self.txn([cmp_absent(key)], [op_put(key, value)])
        return res.revision if res.succeeded else None

    def update(self, key: str, value: bytes | str, mod_revision: int) -> int | None:
        res = self.txn([cmp_mod(key, mod_revision)], [op_put(key, value)])
        return res.revision if res.succeeded else None

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int:
        return self.txn([], [op_put(key, value)]).revision

    def delete(self, key: str, *, mod_revision: int = 0) -> bool:
        with self._cond:
            if self._at(key, self._revision) is None:
                return False
            compare = [cmp_mod(key, mod_revision)] if mod_revision else []
            return self.txn(compare, [op_delete(key)]).succeeded

    def delete_prefix(self, prefix: str) -> int:
        with self._cond:
            kvs = self._range(prefix, prefix_end(prefix), self._revision)
            self._write([op_delete(kv.key) for kv in kvs])
            return len(kvs)

    # ---- history ----------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Forget every version older than ``revision`` (the newest one at or before it stays,
        unless it is a deletion); watches and reads before it fail from now on."""
        with self._cond:
            revision = min(revision, self._revision)
            self._compacted = max(self._compacted, revision)
            for key in list(self._versions):
                versions = self._versions[key]
                keep = [v for v in versions if v.mod_revision > revision]
                older = [v for v in versions if v.mod_revision <= revision]
                if older and older[-1].value is not None:
                    keep.insert(0, older[-1])
                if keep:
                    self._versions[key] = keep
                else:
                    del self._versions[key]
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            self._log = [(r, e) for r, e in self._log if r > revision]

    def break_watches(self) -> None:
        """Every open watch ends with ``Unavailable`` (a lost connection)."""
        with self._cond:
            self._breaks += 1
            self._cond.notify_all()

    def watch(
        self, prefix: str, start_revision: int, *, range_end: str | None = None,
        probe_after: float = 10.0, probe_timeout: float = 5.0,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[WatchResponse]:  # fmt: skip
        end = range_end or prefix_end(prefix)
        with self._cond:
            if start_revision < self._compacted:
                raise Compacted(self._compacted)
            breaks = self._breaks
        next_rev = start_revision
        while not stopped():
            with self._cond:
                if self._breaks != breaks:
                    raise Unavailable("memory store: watch broken (test hook)")
                batch = [(r, e) for r, e in self._log if r >= next_rev]
                if not batch:
                    self._cond.wait(min(probe_after, 0.2))
                    continue
                upto = self._revision
            events = [e for _, evs in batch for e in evs if prefix <= e.key < end]
            next_rev = upto + 1
            yield WatchResponse(events, upto)

    def preflight(self, keys: Sequence[str]) -> None:
        """Any key may be written."""

    def sync_streams(self, prefixes: Sequence[str]) -> list[SyncStream]:
        from calico.datastore.kv_stream import KVStream

        return [KVStream(self, prefixes)]


__all__ = ["MemoryBackend"]
