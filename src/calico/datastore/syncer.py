"""Syncer: a consistent, exactly-once stream of datastore changes under a set of etcd prefixes.

Protocol (libcalico-go's watchersyncer, simplified to one loop per prefix set)::

    WaitForDatastore ──list @rev──> ResyncInProgress ──first list done──> InSync
          ▲                                                        │
          └──── etcd gone: retry with backoff, resume watch at rev+1 ◄──┘
                compacted: re-list, emit only the differences (deletes included)

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

from calico.datastore.etcd import EtcdClient, EtcdCompacted, EtcdError, WatchEvent, prefix_end

logger = logging.getLogger(__name__)


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


def common_prefix(prefixes: Sequence[str]) -> str:
    """The longest common prefix of ``prefixes`` (one watch covers them all)."""
    first, last = min(prefixes), max(prefixes)
    i = 0
    while i < min(len(first), len(last)) and first[i] == last[i]:
        i += 1
    return first[:i]


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
    ) -> None:
        self._etcd = etcd
        self._prefixes = tuple(prefixes)
        self._watch_prefix = common_prefix(self._prefixes)
        self._on_updates = on_updates
        self._on_status = on_status
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._revs: dict[str, int] = {}  # key -> last delivered mod revision
        self._rev = 0  # everything up to here has been delivered
        self._status: SyncStatus | None = None
        self.relists = 0  # how many times a compaction forced a re-list (a metric)
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="syncer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()

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
                logger.info("watch compacted at %d; re-listing", exc.compact_revision)
                self.relists += 1
                need_list = True
            except EtcdError as exc:
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
        return any(key.startswith(p) for p in self._prefixes)

    def _list(self) -> None:
        if self._status is not SyncStatus.IN_SYNC:
            self._set_status(SyncStatus.RESYNC_IN_PROGRESS)
        kvs, rev = self._etcd.get_prefix(self._watch_prefix)
        seen: set[str] = set()
        updates: list[Update] = []
        for kv in kvs:
            if not self._wanted(kv.key):
                continue
            seen.add(kv.key)
            if self._revs.get(kv.key) != kv.mod_revision:
                self._revs[kv.key] = kv.mod_revision
                updates.append(Update(kv.key, _decode(kv.value, kv.key), kv.mod_revision))
        for key in sorted(set(self._revs) - seen):
            del self._revs[key]
            updates.append(Update(key, None, rev))
        self._rev = rev
        if updates:
            self._on_updates(updates)
        self._set_status(SyncStatus.IN_SYNC)

    def _watch(self) -> None:
        for events in self._etcd.watch_prefix(self._watch_prefix, self._rev + 1):
            if self.stopped.is_set():
                return
            updates = [u for u in (self._apply(e) for e in events) if u is not None]
            self._rev = max(self._rev, *(e.mod_revision for e in events))
            if updates:
                self._on_updates(updates)

    def _apply(self, event: WatchEvent) -> Update | None:
        if not self._wanted(event.key):
            return None
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
