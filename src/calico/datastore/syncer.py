"""Syncer: a consistent, exactly-once stream of datastore changes under a set of key prefixes.

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
Any backend (:mod:`calico.datastore.backend`): the syncer asks it for its sync streams. etcd (and
the memory backend) give one (:class:`~calico.datastore.kv_stream.KVStream`: everything above);
the Kubernetes API one per resource type (:mod:`calico.datastore.kube_stream`), each listed at its
own resourceVersion and watched from there, a 410 Gone taking that one type back to a list. Each
stream runs the loop above on its own (the first on the syncer's thread, the others on threads of
their own); InSync comes once every stream has listed.

Callbacks run on a syncer thread, one call at a time; they receive ``list[Update]`` batches and
``SyncStatus``.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from calico.datastore.backend import (
    Backend,
    Compacted,
    StoreError,
    SyncStream,
    WatchEvent,
    prefix_end,
)
from calico.datastore.kv_stream import MAX_CHECKED_PREFIXES, covering

logger = logging.getLogger(__name__)

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


class _Source:
    """One stream and what the syncer delivered from it."""

    def __init__(self, stream: SyncStream) -> None:
        self.stream = stream
        self.prefixes = stream.prefixes
        self.revs: dict[str, int] = {}  # key -> last delivered mod revision
        self.rev = 0  # everything up to here has been delivered
        self.listed = False  # a whole first list has been delivered

    def wanted(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def known(self) -> dict[str, int]:
        """Per prefix, how many keys under it were delivered (and not deleted since)."""
        out = dict.fromkeys(self.prefixes, 0)
        for key in self.revs:
            for p in self.prefixes:
                if key.startswith(p):
                    out[p] += 1
                    break
        return out


class Syncer:
    def __init__(
        self,
        backend: Backend,
        prefixes: Sequence[str],
        *,
        on_updates: Callable[[list[Update]], None],
        on_status: Callable[[SyncStatus], None] = lambda s: None,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
        probe_after: float = 10.0,
        probe_timeout: float = 5.0,
    ) -> None:
        self._backend = backend
        self._prefixes = tuple(covering(prefixes))  # each wanted key is under exactly one
        if not self._prefixes:
            raise ValueError("a syncer needs at least one prefix")
        self._sources = [_Source(s) for s in backend.sync_streams(self._prefixes)]
        self._on_updates = on_updates
        self._on_status = on_status
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._probe_after = probe_after  # a silent watch's member is probed after this long
        self._probe_timeout = probe_timeout
        self._status: SyncStatus | None = None
        self._lock = threading.RLock()  # callbacks and the shared state, one stream at a time
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
        """The datastore revision up to which every change has been delivered, on every stream
        (the lowest stream's mark; read it from a callback: it is the syncer threads')."""
        return min((src.rev for src in self._sources), default=0)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread ``start()`` made to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def run(self) -> None:
        self._set_status(SyncStatus.WAIT_FOR_DATASTORE)
        others = []
        for src in self._sources[1:]:
            name = f"syncer-{src.stream.name}"
            others.append(threading.Thread(target=self._run_source, args=(src,), name=name,
                                           daemon=True))  # fmt: skip
        for t in others:
            t.start()
        self._run_source(self._sources[0])
        for t in others:
            t.join()

    def _run_source(self, src: _Source) -> None:
        delay = self._retry_delay
        need_list = True
        while not self.stopped.is_set():
            try:
                if need_list:
                    self._list(src)
                    need_list = False
                delay = self._retry_delay
                self._watch(src)
            except Compacted as exc:
                need_list = not self._resume_after_compaction(src, exc.compact_revision)
            except StoreError as exc:
                with self._lock:
                    self.disconnects += 1
                    logger.warning("datastore connection lost (%s, %s); retrying in %.1fs",
                                   src.stream.name, exc, delay)  # fmt: skip
                    if self._status is not SyncStatus.IN_SYNC:
                        self._set_status(SyncStatus.WAIT_FOR_DATASTORE)
                self.stopped.wait(delay)
                delay = min(delay * 2, self._max_retry_delay)

    # ---- internals --------------------------------------------------------------------------

    def _set_status(self, status: SyncStatus) -> None:
        if status is not self._status:
            self._status = status
            self._on_status(status)

    def _list(self, src: _Source) -> None:
        """Read the stream's keys at one revision; deliver what differs from what was delivered."""
        first = not src.listed
        if first:
            with self._lock:
                self._set_status(SyncStatus.RESYNC_IN_PROGRESS)
        rev = 0
        seen: set[str] = set()
        held: list[Update] = []  # a re-list's differences, delivered together
        for kvs, read_at in src.stream.list_pages(limit=LIST_PAGE):
            rev = read_at
            page = []
            for kv in kvs:
                seen.add(kv.key)
                if src.revs.get(kv.key) != kv.mod_revision:
                    page.append(Update(kv.key, _decode(kv.value, kv.key), kv.mod_revision))
            if first:
                self._deliver(src, page)
            else:
                held += page
        self._deliver(src, held, gone=sorted(set(src.revs) - seen), revision=rev)
        src.rev = rev
        with self._lock:
            src.listed = True
            if all(s.listed for s in self._sources):
                self._set_status(SyncStatus.IN_SYNC)

    def _deliver(
        self, src: _Source, puts: list[Update], *, gone: Sequence[str] = (), revision: int = 0
    ) -> None:
        """Hand over ``puts`` and the deletion of the keys ``gone`` (at ``revision``), and
        remember them as delivered."""
        for u in puts:
            src.revs[u.key] = u.revision
        for key in gone:
            del src.revs[key]
        updates = puts + [Update(key, None, revision) for key in gone]
        if updates:
            with self._lock:
                self._on_updates(updates)

    def _resume_after_compaction(self, src: _Source, compact_revision: int) -> bool:
        """True when the watch can resume without a re-list (``src.rev`` then moves on)."""
        revision, why = src.stream.unchanged_since(src.rev, src.known())
        with self._lock:
            if not revision:
                logger.info("watch (%s) compacted at %d, %s since %d: re-listing",
                            src.stream.name, compact_revision, why, src.rev)  # fmt: skip
                self.relists += 1
                return False
            logger.info(
                "watch (%s) compacted at %d; nothing watched changed since %d: resuming at %d",
                src.stream.name, compact_revision, src.rev, revision,
            )  # fmt: skip
            self.compaction_resumes += 1
        src.rev = max(src.rev, revision)
        return True

    def _watch(self, src: _Source) -> None:
        for resp in src.stream.watch(
            src.rev + 1,
            probe_after=self._probe_after,
            probe_timeout=self._probe_timeout,
            stopped=self.stopped.is_set,
        ):
            if self.stopped.is_set():
                return
            updates = [u for u in (self._apply(src, e) for e in resp.events) if u is not None]
            src.rev = max(src.rev, resp.revision)
            if updates:
                with self._lock:
                    self._on_updates(updates)

    def _apply(self, src: _Source, event: WatchEvent) -> Update | None:
        if not src.wanted(event.key):
            return None  # between the prefixes: never decoded
        last = src.revs.get(event.key)
        if event.type == "DELETE":
            if last is None:
                return None
            del src.revs[event.key]
            return Update(event.key, None, event.mod_revision)
        if last is not None and last >= event.mod_revision:
            return None  # already delivered (replayed after a reconnect)
        src.revs[event.key] = event.mod_revision
        return Update(event.key, _decode(event.value, event.key), event.mod_revision)


__all__ = ["MAX_CHECKED_PREFIXES", "SyncStatus", "Syncer", "Update", "covering", "prefix_end"]
