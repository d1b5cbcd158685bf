"""What a Typha client hands its consumer: the syncer's contract over a chain of connections.

Pure (no I/O): the client (typha_client) feeds it what each connection brings, in order; it
returns the :class:`Update` batches and :class:`SyncStatus` changes to deliver. The contract is
the datastore syncer's (syncer.py): every (key, revision) delivered once, status
WaitForDatastore -> ResyncInProgress -> InSync once, and what the consumer holds at InSync is the
datastore's state at one revision.

A connection brings a snapshot (Updates frames, ended by the server's first Status), then the
changes after it (Updates and Status frames, Pings carrying the server's revision).

* **First connection** (nothing delivered yet): entries pass straight through, page by page, as
  the syncer's first list does; InSync once the snapshot has ended and the server says in-sync.
* **Later connections** (the client lost its server, and reconnected to the same or another):
  the new server's state is collected until its snapshot has ended and it is in sync, compared
  with what was delivered (by revision, as the syncer's re-list), and the differences handed over
  in one batch: keys whose revision changed, and deletes for keys the new server does not hold.
  Then entries pass through again.
* **A server behind the old one** (both watch one datastore, one may lag by a moment): an entry
  older than the one delivered is skipped (the server's own stream brings the newer one later,
  delivered once); a key it does not hold but that was delivered at a revision above the
  server's is not deleted at once but kept *pending*, and deleted when a later message shows the
  server past that revision without the key having come back. A deleted key's revision is kept
  (a *tombstone*, the newest :data:`MAX_TOMBSTONES`), so a server that has not seen the delete
  yet cannot bring the key back at an older revision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.syncer import SyncStatus, Update

IN_SYNC = SyncStatus.IN_SYNC.value
MAX_TOMBSTONES = 10_000  # a server lagging by more deletes may replay one (its delete follows)
Entry = tuple[str, int, Any]


@dataclass
class Output:
    """What to deliver, in order: status changes come after the updates of the same step."""

    updates: list[Update] = field(default_factory=list)
    statuses: list[SyncStatus] = field(default_factory=list)


class ClientState:
    def __init__(self, prefixes: Iterable[str] = ()) -> None:
        self._prefixes = tuple(prefixes)  # empty: every key the server sends
        self.revs: dict[str, int] = {}  # key -> revision delivered
        self.status: SyncStatus | None = None
        self._delivered_any = False
        # the current connection
        self._holding = False
        self._snapshot_done = False
        self._server_in_sync = False
        self._seen: set[str] = set()  # held: keys the server holds
        self._changed: dict[str, tuple[int, Any]] = {}  # held: keys whose revision differs
        self._pending: dict[str, int] = {}  # key -> revision: delete once the server is past it
        self._tombstones: dict[str, int] = {}  # deleted key -> revision it was gone at
        self.resyncs = 0  # connections after the first that completed a comparison

    # ---- connection lifecycle -----------------------------------------------------------------

    def start(self) -> Output:
        return self._status(SyncStatus.WAIT_FOR_DATASTORE)

    def connected(self) -> Output:
        """A new connection was welcomed: its snapshot follows."""
        self._holding = self._delivered_any
        self._snapshot_done = False
        self._server_in_sync = False
        self._seen = set()
        self._changed = {}
        self._pending = {}
        return self._status(SyncStatus.RESYNC_IN_PROGRESS)

    def disconnected(self) -> Output:
        """The connection broke; before the first InSync the consumer waits again."""
        self._holding = False
        if self.status is not SyncStatus.IN_SYNC:
            return self._status(SyncStatus.WAIT_FOR_DATASTORE)
        return Output()

    def _status(self, status: SyncStatus) -> Output:
        if status is self.status or self.status is SyncStatus.IN_SYNC:
            return Output()
        self.status = status
        return Output(statuses=[status])

    # ---- messages -----------------------------------------------------------------------------

    def _wanted(self, key: str) -> bool:
        return not self._prefixes or key.startswith(self._prefixes)

    def on_updates(self, entries: Iterable[Entry]) -> Output:
        if self._holding:
            for key, rev, value in entries:
                if self._wanted(key):
                    self._hold(key, rev, value)
            return Output()
        out = Output()
        top = 0
        for key, rev, value in entries:
            top = max(top, rev)
            if self._wanted(key):
                u = self._apply(key, rev, value)
                if u is not None:
                    out.updates.append(u)
        if self._pending and self._snapshot_done and self._server_in_sync:
            out.updates += self._resolve_pending(top)
        return out

    def on_status(self, status: str, revision: int) -> Output:
        self._snapshot_done = True  # the snapshot ends with the server's status
        self._server_in_sync = self._server_in_sync or status == IN_SYNC
        out = Output()
        if self._server_in_sync and self._holding:
            out.updates = self._compare(revision)
            self._holding = False
            self.resyncs += 1
        elif self._pending and self._server_in_sync:
            out.updates = self._resolve_pending(revision)
        if self._server_in_sync:
            out.statuses = self._status(SyncStatus.IN_SYNC).statuses
        return out

    def on_progress(self, revision: int) -> Output:
        """A Ping: the server is at ``revision``."""
        if self._pending and not self._holding and self._server_in_sync:
            return Output(updates=self._resolve_pending(revision))
        return Output()

    # ---- internals ----------------------------------------------------------------------------

    def _apply(self, key: str, rev: int, value: Any) -> Update | None:
        """One entry in pass-through: delivered unless a revision at least as new was."""
        self._pending.pop(key, None)  # the server holds the key again: its stream decides
        last = self.revs.get(key)
        if last is not None and rev <= last:
            return None  # a replay, or an older state from a server behind
        if value is None:
            if last is None:
                return None
            self._bury(key, rev)
        elif rev <= self._tombstones.get(key, 0):
            return None  # from before a delete this server has not seen yet
        else:
            self._tombstones.pop(key, None)
            self.revs[key] = rev
        self._delivered_any = True
        return Update(key, value, rev)

    def _hold(self, key: str, rev: int, value: Any) -> None:
        if value is None:
            self._seen.discard(key)
            self._changed.pop(key, None)
            return
        self._seen.add(key)
        if self.revs.get(key) == rev:
            self._changed.pop(key, None)
        else:
            self._changed[key] = (rev, value)

    def _compare(self, revision: int) -> list[Update]:
        """The held state against what was delivered: the differences, deletes last."""
        out: list[Update] = []
        for key, (rev, value) in self._changed.items():
            u = self._apply(key, rev, value)
            if u is not None:
                out.append(u)
        for key in sorted(set(self.revs) - self._seen):
            if self.revs[key] <= revision:
                self._bury(key, revision)
                out.append(Update(key, None, revision))
            else:
                self._pending[key] = self.revs[key]  # the server has not got that far yet
        self._seen = set()
        self._changed = {}
        return out

    def _resolve_pending(self, revision: int) -> list[Update]:
        out = []
        for key, rev in list(self._pending.items()):
            if rev <= revision:
                del self._pending[key]
                if self.revs.get(key) == rev:
                    self._bury(key, revision)
                    out.append(Update(key, None, revision))
        return out

    def _bury(self, key: str, rev: int) -> None:
        del self.revs[key]
        self._tombstones[key] = rev
        if len(self._tombstones) > MAX_TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]

    @property
    def pending(self) -> dict[str, int]:
        return dict(self._pending)


__all__ = ["ClientState", "Output"]
