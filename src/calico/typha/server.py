"""Typha's server: many clients over TCP (TLS optional), each given a snapshot then the log.

One asyncio event loop owns the caches and every connection (no locks)::

    syncer thread ──call_soon_threadsafe──> on_changes / on_status ──> Cache (state + log)
                                                                        │ one frame per change
    accept ──> Conn: hello ──> Welcome, snapshot frames ──> log from the snapshot's seq + 1
                                  ▲ pump(): write while the transport's buffer is under
                                  │ ``write_buffer`` (pause_writing / resume_writing)
    housekeeping (every second): pings; drop a client whose handshake, snapshot or oldest
    unsent change is too old, or whose pong is overdue; trim the log (bytes bound)

Backpressure: a client never gets more than ``write_buffer`` bytes queued in its transport; the
rest of what it has not read is its position in the shared log. When it falls more than
``max_fall_behind`` seconds (or the log's byte bound) behind, it is dropped; writing to the
others never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calico.datastore import typha_tls
from calico.datastore import typha_wire as wire
from calico.typha.cache import Cache
from calico.typha.metrics import Metrics

logger = logging.getLogger(__name__)

HELLO, SNAPSHOT, LIVE, CLOSED = "hello", "snapshot", "live", "closed"
REFUSE_LINGER = 2.0  # seconds a refused connection stays open for the client to read why


@dataclass(frozen=True)
class ServerConfig:
    name: str = "typha"
    max_conns: int = 10000
    max_fall_behind: float = 300.0
    new_client_grace: float = 300.0
    ping_interval: float = 10.0
    pong_timeout: float = 60.0
    handshake_timeout: float = 10.0
    write_buffer: int = 1 << 20
    tls: typha_tls.TLSSettings | None = None
    housekeeping: float = 1.0


class Conn(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.phase = HELLO
        self.peer = "?"
        self.syncer = ""
        self.cache: Cache | None = None
        self.reader = wire.FrameReader(wire.MAX_CLIENT_FRAME)
        self.frames: tuple[bytes, ...] = ()
        self.frame_i = 0
        self.next_seq = 0
        self.snap_rev = 0  # the snapshot's revision
        self.sent_rev = 0  # the revision of what was written last (a Ping's progress mark)
        self.paused = False
        now = server.clock()
        self.opened = self.last_pong = self.last_ping = now
        self.live_since = 0.0
        self.bytes_sent = 0

    # ---- asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        transport.set_write_buffer_limits(high=self.server.cfg.write_buffer)
        self.server.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSED:
            return  # refused: what the client still sends (its hello) is read and ignored
        try:
            self.reader.feed(data)
            for payload in self.reader.frames():
                self._on_message(wire.decode_client(payload))
        except wire.WireError as exc:
            self.refuse(str(exc), "protocol")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase != CLOSED:
            self.phase = CLOSED
            self.server.closed(self, "client closed" if exc is None else f"lost: {exc}")

    # ---- protocol -----------------------------------------------------------------------------

    def _on_message(self, msg: wire.Hello | wire.Pong) -> None:
        if isinstance(msg, wire.Pong):
            self.last_pong = self.server.clock()
            self.server.metrics.ping_latency.observe(max(0.0, time.time() - msg.ts))
            return
        if self.phase != HELLO:
            raise wire.WireError("a second hello")
        cache = self.server.caches.get(msg.syncer)
        if cache is None:
            self.refuse(f"unknown syncer type {msg.syncer!r}", "refused")
            return
        if msg.version != wire.PROTOCOL_VERSION:
            self.refuse(f"protocol version {msg.version} (this Typha speaks 1)", "refused")
            return
        self.syncer, self.cache = msg.syncer, cache
        self.write(
            wire.encode(wire.Welcome(wire.PROTOCOL_VERSION, msg.syncer, self.server.cfg.name))
        )
        snap = self.server.snapshot(msg.syncer)
        self.frames = snap.compressed if "zlib" in msg.compression else snap.frames
        self.frame_i, self.next_seq, self.snap_rev = 0, snap.seq + 1, snap.revision
        self.phase = SNAPSHOT
        logger.info(
            "client %s (node %s, syncer %s): snapshot of %d keys",
            self.peer,
            msg.node or "?",
            msg.syncer,
            snap.keys,
        )
        self.pump()

    def write(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)
        self.bytes_sent += len(frame)
        self.server.metrics.bytes_sent.inc(len(frame))

    def pump(self) -> None:
        """Write what the client is owed while its buffer has room."""
        while not self.paused and self.phase in (SNAPSHOT, LIVE):
            if self.phase == SNAPSHOT:
                if self.frame_i < len(self.frames):
                    self.write(self.frames[self.frame_i])
                    self.frame_i += 1
                    continue
                self.frames, self.phase, self.sent_rev = (), LIVE, self.snap_rev
                self.live_since = self.server.clock()
                self.server.metrics.snapshot_send.observe(self.live_since - self.opened)
            assert self.cache is not None
            crumb = self.cache.crumb(self.next_seq)
            if crumb is None:
                if self.next_seq <= self.cache.seq:
                    self.drop("fell behind the log's bound", "slow")
                return
            self.write(crumb.frame)
            self.next_seq += 1
            self.sent_rev = crumb.revision

    def refuse(self, reason: str, why: str) -> None:
        logger.warning("refusing client %s: %s", self.peer, reason)
        transport = self.transport
        self._closed(why)
        if transport is not None and not transport.is_closing():
            transport.write(wire.encode(wire.Refused(reason)))
            _close_later(transport)

    def drop(self, reason: str, why: str) -> None:
        logger.warning("dropping client %s (syncer %s): %s", self.peer, self.syncer, reason)
        self._closed(why)
        if self.transport is not None:
            self.transport.abort()

    def _closed(self, why: str) -> None:
        if self.phase != CLOSED:
            self.phase = CLOSED
            self.server.closed(self, why)


def _close_later(transport: asyncio.Transport) -> None:
    """Close after REFUSE_LINGER: closing at once, with the client's hello arriving, resets the
    connection and can lose the Refused frame (the client would only see "connection reset");
    the client closes first once it has read why."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (unit tests drive connections by hand)
        transport.close()
        return
    loop.call_later(REFUSE_LINGER, transport.close)


class Server:
    def __init__(
        self,
        caches: dict[str, Cache],
        cfg: ServerConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.caches = caches
        self.cfg = cfg
        self.metrics = metrics
        self.clock = clock
        self.conns: set[Conn] = set()
        self._ssl = typha_tls.server_context(cfg.tls) if cfg.tls and cfg.tls.enabled else None
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Conn(self), host or None, port, ssl=self._ssl, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._task = loop.create_task(self._housekeeping())
        logger.info("serving on %s:%d%s", host or "*", self.port, " (TLS)" if self._ssl else "")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns):
            conn.drop("Typha stopping", "shutdown")
        if self._server is not None:
            await self._server.wait_closed()

    # ---- connections --------------------------------------------------------------------------

    def opened(self, conn: Conn) -> None:
        self.metrics.accepted.inc()
        if len(self.conns) >= self.cfg.max_conns:
            conn.refuse(f"too many connections (limit {self.cfg.max_conns})", "refused")
            return
        if self._ssl is not None and self.cfg.tls is not None:
            assert conn.transport is not None
            problem = typha_tls.peer_problem(
                conn.transport.get_extra_info("peercert"), self.cfg.tls
            )
            if problem:
                conn.refuse(f"client {problem}", "tls")
                return
        self.conns.add(conn)
        self.metrics.active.set(len(self.conns))

    def closed(self, conn: Conn, why: str) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.metrics.active.set(len(self.conns))
        if why not in ("client closed",) and not why.startswith("lost"):
            self.metrics.dropped.labels(why).inc()

    def snapshot(self, syncer: str) -> Any:
        cache = self.caches[syncer]
        generated = cache.snapshots_generated
        snap = cache.snapshot()
        if cache.snapshots_generated != generated:
            self.metrics.snapshots_generated.labels(syncer).inc()
            self.metrics.snapshot_raw_bytes.labels(syncer).set(snap.raw_bytes)
            self.metrics.snapshot_compressed_bytes.labels(syncer).set(snap.compressed_bytes)
        else:
            self.metrics.snapshots_reused.labels(syncer).inc()
        return snap

    # ---- input from the syncers (on the loop thread) ------------------------------------------

    def on_changes(
        self, syncer: str, entries: list[tuple[str, int, bytes | None]], rev: int
    ) -> None:
        cache = self.caches[syncer]
        cache.apply(entries, rev)
        self.metrics.updates.labels(syncer).inc(len(entries))
        self._after_change(syncer, cache)

    def on_status(self, syncer: str, status: str, rev: int) -> None:
        cache = self.caches[syncer]
        cache.set_status(status, rev)
        logger.info("syncer %s: %s at revision %d", syncer, status, rev)
        self._after_change(syncer, cache)

    def _after_change(self, syncer: str, cache: Cache) -> None:
        self.metrics.cache_size.labels(syncer).set(len(cache.state))
        for conn in list(self.conns):
            if conn.cache is cache:
                conn.pump()
        self._trim(cache)

    def _trim(self, cache: Cache) -> None:
        needed = [c.next_seq for c in self.conns if c.cache is cache and c.phase != HELLO]
        first = cache.trim(min(needed, default=cache.seq + 1))
        for conn in list(self.conns):
            if conn.cache is cache and conn.phase != HELLO and conn.next_seq < first:
                conn.drop(f"more than {cache.max_bytes} bytes of changes behind", "slow")

    # ---- housekeeping -------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.housekeeping)
            self.check(self.clock())

    def check(self, now: float) -> None:
        cfg = self.cfg
        for conn in list(self.conns):
            if conn.phase == HELLO:
                if now - conn.opened > cfg.handshake_timeout:
                    conn.drop(f"no hello within {cfg.handshake_timeout:.0f}s", "handshake")
                continue
            if now - conn.last_pong > cfg.pong_timeout:
                conn.drop(f"no pong for {now - conn.last_pong:.0f}s", "pong")
                continue
            if conn.phase == SNAPSHOT and now - conn.opened > cfg.new_client_grace:
                conn.drop(f"snapshot not read within {cfg.new_client_grace:.0f}s", "slow")
                continue
            if conn.phase == LIVE and now - conn.live_since > cfg.new_client_grace:
                assert conn.cache is not None
                crumb = conn.cache.crumb(conn.next_seq)
                if crumb is not None and now - crumb.at > cfg.max_fall_behind:
                    conn.drop(f"{now - crumb.at:.1f}s behind", "slow")
                    continue
            if now - conn.last_ping >= cfg.ping_interval:
                assert conn.cache is not None
                conn.last_ping = now
                conn.write(wire.encode(wire.Ping(time.time(), conn.sent_rev)))
        for syncer, cache in self.caches.items():
            self._trim(cache)
            self.metrics.log_bytes.labels(syncer).set(cache.log_bytes())
            self.metrics.breadcrumb_seq.labels(syncer).set(cache.seq)


__all__ = ["Conn", "Server", "ServerConfig"]
