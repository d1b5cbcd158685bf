"""Typha's cache: the current state as encoded entries, a bounded log of changes, snapshots.

Owned by the server's event loop thread (no locks). Fed by the syncer (through the loop):

    apply(entries, revision) ─┬─> state: key -> encoded entry (present keys only)
    set_status(status, rev)  ─┴─> log: seq -> Crumb(frame, time, bytes)   (one frame, all clients)

A new client is given ``snapshot()``: frames holding every entry of the state after crumb S,
ended by a Status frame, and then follows the log from S + 1. Every (key, revision) reaches it
once: the snapshot is the state *after* S, the log holds only what came after. A snapshot is
built once and reused by every client that connects while it is fresh (crumbs since it ≤ a
quarter of its size, and all of them still in the log), so 500 agents reconnecting at once cost
one encoding.

The log is bounded: :meth:`trim` drops crumbs no client needs and, past ``max_bytes``, the
oldest ones even if a client needs them (that client is then too far behind and is dropped by
the server: its buffer is bounded, the others never wait for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from calico.datastore import typha_wire as wire


@dataclass(frozen=True, slots=True)
class Crumb:
    seq: int
    frame: bytes
    at: float  # monotonic time it was logged
    revision: int  # the datastore revision the state is at after it
    total: int  # bytes of every crumb up to this one (for "bytes since")


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int  # the state after this crumb; the client follows the log from seq + 1
    revision: int  # the datastore revision of that state
    frames: tuple[bytes, ...]  # Updates frames then one Status frame
    compressed: tuple[bytes, ...]  # the same, Updates chunks zlib-compressed where it saves
    keys: int
    raw_bytes: int
    compressed_bytes: int


class Cache:
    def __init__(
        self,
        *,
        max_batch: int = 100,
        max_message: int = 100,
        max_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_batch = max_batch  # entries per snapshot frame
        self._max_message = max_message  # entries per change frame
        self.max_bytes = max_bytes
        self._clock = clock
        self.state: dict[str, bytes] = {}
        self.status = "wait-for-datastore"
        self.revision = 0  # everything up to here is in the state
        self.seq = 0  # the last crumb's
        self.log: dict[int, Crumb] = {}
        self.first = 1  # the oldest crumb kept
        self._total = 0
        self._snap: Snapshot | None = None
        self.updates = 0  # entries applied (metric)
        self.snapshots_generated = 0
        self.snapshots_reused = 0

    # ---- input --------------------------------------------------------------------------------

    def apply(self, entries: Sequence[tuple[str, int, bytes | None]], revision: int) -> int:
        """Changes from the syncer: ``(key, revision, encoded entry | None for a delete)``;
        ``revision``: the datastore revision they bring the state to. Returns crumbs added."""
        added = 0
        chunk: list[bytes] = []
        for key, rev, encoded in entries:
            if encoded is None:
                self.state.pop(key, None)
                encoded = wire.encode_entry(key, rev, None)
            else:
                self.state[key] = encoded
            chunk.append(encoded)
            if len(chunk) >= self._max_message:
                self._log(wire.updates_frame(chunk))
                chunk, added = [], added + 1
        self.revision = max(self.revision, revision)  # the batch's last crumb carries it
        if chunk:
            self._log(wire.updates_frame(chunk))
            added += 1
        self.updates += len(entries)
        return added

    def set_status(self, status: str, revision: int) -> None:
        self.status = status
        self.revision = max(self.revision, revision)
        self._log(wire.encode(wire.Status(status, self.revision)))

    def _log(self, frame: bytes) -> None:
        self.seq += 1
        self._total += len(frame)
        self.log[self.seq] = Crumb(self.seq, frame, self._clock(), self.revision, self._total)

    # ---- output -------------------------------------------------------------------------------

    def crumb(self, seq: int) -> Crumb | None:
        """The crumb ``seq`` (None when trimmed or not yet logged)."""
        return self.log.get(seq)

    def log_bytes(self) -> int:
        first = self.log.get(self.first)
        return self._total - first.total + len(first.frame) if first else 0

    def _bytes_since(self, seq: int) -> int:
        crumb = self.log.get(seq)
        return self._total - crumb.total if crumb else self._total

    def snapshot(self) -> Snapshot:
        snap = self._snap
        fresh = snap is not None and (
            snap.seq == self.seq or self._bytes_since(snap.seq) * 4 <= snap.raw_bytes
        )
        if snap is not None and fresh and snap.seq + 1 >= self.first:
            self.snapshots_reused += 1
            return snap
        snap = self._build()
        self._snap = snap
        self.snapshots_generated += 1
        return snap

    def _build(self) -> Snapshot:
        entries = list(self.state.values())
        plain: list[bytes] = []
        packed: list[bytes] = []
        for i in range(0, len(entries), self._max_batch):
            chunk = entries[i : i + self._max_batch]
            plain.append(wire.updates_frame(chunk))
            packed.append(wire.updates_frame(chunk, compress=True))
        end = wire.encode(wire.Status(self.status, self.revision))
        plain.append(end)
        packed.append(end)
        return Snapshot(
            self.seq,
            self.revision,
            tuple(plain),
            tuple(packed),
            len(entries),
            sum(map(len, plain)),
            sum(map(len, packed)),
        )

    # ---- bounds -------------------------------------------------------------------------------

    def trim(self, needed: int) -> int:
        """Drop crumbs below ``needed`` (the oldest seq a client still needs; seq + 1 when none)
        unless the cached snapshot needs them, then the oldest past ``max_bytes`` regardless.
        Returns the oldest crumb kept (``self.first``)."""
        snap = self._snap
        keep_from = needed
        if snap is not None and snap.seq + 1 < keep_from:
            if self._bytes_since(snap.seq) * 4 <= snap.raw_bytes:
                keep_from = snap.seq + 1  # still worth reusing
            else:
                self._snap = None  # cheaper to rebuild than to replay
        while self.first < keep_from and self.first in self.log:
            del self.log[self.first]
            self.first += 1
        while self.log and self.log_bytes() > self.max_bytes:
            del self.log[self.first]
            self.first += 1
        if self.first > self.seq:
            self.first = self.seq + 1
        if self._snap is not None and self._snap.seq + 1 < self.first:
            self._snap = None
        return self.first

    def drop_snapshot(self) -> None:
        self._snap = None


__all__ = ["Cache", "Crumb", "Snapshot"]
