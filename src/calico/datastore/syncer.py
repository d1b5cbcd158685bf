"""Syncer: a consistent, exactly-once stream of datastore changes under a set of etcd prefixes.

Protocol (libcalico-go's watchersyncer, simplified to one loop per prefix set)::

    WaitForDatastore ──list @rev──> ResyncInProgress ──first list done──> InSync
          ▲                                                        │
          └──── etcd gone: retry with backoff, resume watch at rev+1 ◄──┘
                (the next member of a cluster; rev = the newest revision known delivered)
                compacted: nothing watched changed since rev? resume at now+1, no re-list;
                           else re-list, emit only the differences (deletes included)

What is read: the prefixes (those inside another dropped) are listed one by one, in pages of
``LIST_PAGE`` keys, every page at the revision the first was read at; the first list hands each
page to the consumer before reading the next, so a big datastore is never decoded all at once (a
later re-list, after a compaction, hands over its differences in one batch, as a watch would).
The watch is one stream (the etcd gateway takes one key range a stream) over the smallest range
holding every prefix, from the list's revision + 1; an event for a key outside the prefixes (an
agent's range from the IPAM blocks to the v3 resources also holds every IPAM handle) is dropped
by its key, before its value is decoded.

``rev`` advances with every event and every progress notification, so a quiet Calico in an etcd
busy with other keys (Kubernetes) still resumes where it can. When etcd has compacted past it
anyway (Kubernetes compacts every 5 minutes), one transaction checks that no key under the
watched prefixes was modified after ``rev`` and that each prefix holds as many keys as we know
of (so none was deleted); if so the watch resumes from that transaction's revision.

Each key's last delivered mod revision is remembered, so an event is delivered once even when
a reconnect replays it, and a re-list after compaction turns into exactly the missing puts and
deletes.
Callbacks run on the syncer's thread; they receive ``list[Update]`` batches and ``SyncStatus``.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from calico.datastore.etcd import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    WatchEvent,
    op_get,
    prefix_end,
)

logger = logging.getLogger(__name__)

# The compaction check is one transaction of two reads per prefix; etcd's --max-txn-ops is 128.
MAX_CHECKED_PREFIXES = 64
LIST_PAGE = 250  # keys per range request of a list (memory: see docs/design/agent.md)


class SyncStatus(enum.Enum):
    WAIT_FOR_DATASTORE = "wait-for-datastore"
    RESYNC_IN_PROGRESS = "resync-in-progress"
    IN_SYNC = "in-sync"


@dataclass(frozen=True, slots=True)
class Update:
    """One key's new value (``None`` = deleted), decoded from JSON."""

    key: str
    value: Any | None
    revision: int


def _decode(raw: bytes, key: str) -> Any | None:
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("ignoring undecodable value at %s", key)
        return None


def covering(prefixes: Sequence[str]) -> list[str]:
    """``prefixes`` without those inside another (each watched key is under exactly one)."""
    out: list[str] = []
    for p in sorted(set(prefixes)):
        if not out or not p.startswith(out[-1]):
            out.append(p)
    return out


class Syncer:
    def __init__(
        self,
        etcd: EtcdClient,
        prefixes: Sequence[str],
        *,
        on_updates: Callable[[list[Update]], None],
        on_status: Callable[[SyncStatus], None] = lambda s: None,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
        probe_after: float = 10.0,
        probe_timeout: float = 5.0,
    ) -> None:
        self._etcd = etcd
        self._prefixes = tuple(covering(prefixes))  # each wanted key is under exactly one
        if not self._prefixes:
            raise ValueError("a syncer needs at least one prefix")
        # the watch: from the first prefix to the end of the last (sorted)
        self._range = (self._prefixes[0], prefix_end(self._prefixes[-1]))
        self._on_updates = on_updates
        self._on_status = on_status
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._probe_after = probe_after  # a silent watch's member is probed after this long
        self._probe_timeout = probe_timeout
        self._revs: dict[str, int] = {}  # key -> last delivered mod revision
        self._rev = 0  # everything up to here has been delivered
        self._status: SyncStatus | None = None
        # metrics: re-lists forced by a compaction, compactions resumed from without one,
        # and broken connections (each followed by a resume)
        self.relists = 0
        self.compaction_resumes = 0
        self.disconnects = 0
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="syncer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the syncer to end: it does after the callback it is in, or within ``probe_after``
        when its watch is quiet."""
        self.stopped.set()

    @property
    def revision(self) -> int:
        """The datastore revision up to which every change has been delivered (read it from a
        callback: it is the syncer thread's)."""
        return self._rev

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread ``start()`` made to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def run(self) -> None:
        self._set_status(SyncStatus.WAIT_FOR_DATASTORE)
        delay = self._retry_delay
        need_list = True
        while not self.stopped.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                delay = self._retry_delay
                self._watch()
            except EtcdCompacted as exc:
                need_list = not self._resume_after_compaction(exc.compact_revision)
            except EtcdError as exc:
                self.disconnects += 1
                logger.warning("datastore connection lost (%s); retrying in %.1fs", exc, delay)
                if self._status is not SyncStatus.IN_SYNC:
                    self._set_status(SyncStatus.WAIT_FOR_DATASTORE)
                self.stopped.wait(delay)
                delay = min(delay * 2, self._max_retry_delay)

    # ---- internals --------------------------------------------------------------------------

    def _set_status(self, status: SyncStatus) -> None:
        if status is not self._status:
            self._status = status
            self._on_status(status)

    def _wanted(self, key: str) -> bool:
        return key.startswith(self._prefixes)

    def _list(self) -> None:
        """Read every prefix at one revision; deliver what differs from what was delivered."""
        first = self._status is not SyncStatus.IN_SYNC
        if first:
            self._set_status(SyncStatus.RESYNC_IN_PROGRESS)
        rev = 0
        seen: set[str] = set()
        held: list[Update] = []  # a re-list's differences, delivered together
        for prefix in self._prefixes:
            pages = self._etcd.get_prefix_pages(prefix, revision=rev, limit=LIST_PAGE)
            for kvs, read_at in pages:
                rev = read_at  # the first page's, then the same
                page = []
                for kv in kvs:
                    seen.add(kv.key)
                    if self._revs.get(kv.key) != kv.mod_revision:
                        page.append(Update(kv.key, _decode(kv.value, kv.key), kv.mod_revision))
                if first:
                    self._deliver(page)
                else:
                    held += page
        self._deliver(held, gone=sorted(set(self._revs) - seen), revision=rev)
        self._rev = rev
        self._set_status(SyncStatus.IN_SYNC)

    def _deliver(self, puts: list[Update], *, gone: Sequence[str] = (), revision: int = 0) -> None:
        """Hand over ``puts`` and the deletion of the keys ``gone`` (at ``revision``), and
        remember them as delivered."""
        for u in puts:
            self._revs[u.key] = u.revision
        for key in gone:
            del self._revs[key]
        updates = puts + [Update(key, None, revision) for key in gone]
        if updates:
            self._on_updates(updates)

    def _unchanged_at(self) -> tuple[int, str]:
        """(R, "") when no watched key was modified or deleted after ``self._rev``, as read at
        revision R; else (0, why)."""
        if len(self._prefixes) > MAX_CHECKED_PREFIXES:
            return 0, f"{len(self._prefixes)} prefixes are too many to check"
        ops = []
        for p in self._prefixes:
            ops.append(op_get(p, prefix=True, keys_only=True, min_mod_revision=self._rev + 1))
            ops.append(op_get(p, prefix=True, count_only=True))
        try:
            res = self._etcd.txn([], ops)
        except EtcdUnavailable:
            raise  # the run loop retries, and comes back here
        except EtcdError as exc:  # etcd refused the check: a re-list is always right
            return 0, f"the check failed: {exc}"
        for i, p in enumerate(self._prefixes):
            known = sum(1 for k in self._revs if k.startswith(p))
            if res.responses[2 * i] or res.counts[2 * i + 1] != known:
                return 0, f"{p} changed"
        return res.revision, ""

    def _resume_after_compaction(self, compact_revision: int) -> bool:
        """True when the watch can resume without a re-list (``self._rev`` then moves on)."""
        revision, why = self._unchanged_at()
        if not revision:
            logger.info(
                "watch compacted at %d, %s since %d: re-listing", compact_revision, why, self._rev
            )
            self.relists += 1
            return False
        logger.info(
            "watch compacted at %d; nothing watched changed since %d: resuming at %d",
            compact_revision,
            self._rev,
            revision,
        )
        self._rev = max(self._rev, revision)
        self.compaction_resumes += 1
        return True

    def _watch(self) -> None:
        for resp in self._etcd.watch(
            self._range[0],
            self._rev + 1,
            range_end=self._range[1],
            probe_after=self._probe_after,
            probe_timeout=self._probe_timeout,
            stopped=self.stopped.is_set,
        ):
            if self.stopped.is_set():
                return
            updates = [u for u in (self._apply(e) for e in resp.events) if u is not None]
            self._rev = max(self._rev, resp.revision)
            if updates:
                self._on_updates(updates)

    def _apply(self, event: WatchEvent) -> Update | None:
        if not self._wanted(event.key):
            return None  # between the prefixes: never decoded
        last = self._revs.get(event.key)
        if event.type == "DELETE":
            if last is None:
                return None
            del self._revs[event.key]
            return Update(event.key, None, event.mod_revision)
        if last is not None and last >= event.mod_revision:
            return None  # already delivered (replayed after a reconnect)
        self._revs[event.key] = event.mod_revision
        return Update(event.key, _decode(event.value, event.key), event.mod_revision)


__all__ = ["SyncStatus", "Syncer", "Update", "prefix_end"]
