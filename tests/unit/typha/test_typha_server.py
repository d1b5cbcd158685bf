"""Typha's server policy, with in-memory transports and a fake clock: late joiners get the state
then the stream exactly once; a slow client is dropped (bounded buffer) and never holds up the
others; handshake, pong and connection limits; refusals say why."""

from __future__ import annotations

import asyncio
from typing import Any

from calico.datastore import typha_wire as wire
from calico.datastore.syncer import SyncStatus
from calico.datastore.typha_state import ClientState
from calico.typha.cache import Cache
from calico.typha.metrics import Metrics
from calico.typha.server import LIVE, Conn, Server, ServerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport(asyncio.Transport):
    """Holds what the server wrote until the test 'reads' it; flow control as asyncio's."""

    def __init__(self, conn: Conn) -> None:
        super().__init__()
        self.conn = conn
        self.buf = bytearray()
        self.high = 1 << 20
        self.paused = False
        self.closing = False
        self.aborted = False
        self.most_buffered = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            return
        self.buf += data
        self.most_buffered = max(self.most_buffered, len(self.buf))
        if len(self.buf) > self.high and not self.paused:
            self.paused = True
            self.conn.pause_writing()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high or self.high

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000)}.get(name, default)

    def abort(self) -> None:
        self.aborted = self.closing = True
        self.conn.connection_lost(None)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def read_all(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        if self.paused:
            self.paused = False
            self.conn.resume_writing()
        return data


class Client:
    """A client over a FakeTransport, decoding into the real client state machine."""

    def __init__(self, server: Server, *, syncer: str = "felix", hello: bool = True) -> None:
        self.conn = Conn(server)
        self.transport = FakeTransport(self.conn)
        self.conn.connection_made(self.transport)
        self.reader = wire.FrameReader(wire.MAX_SERVER_FRAME)
        self.state = ClientState()
        self.held: dict[str, Any] = {}
        self.delivered: list[tuple[str, int]] = []
        self.statuses: list[SyncStatus] = []
        self.msgs: list[Any] = []
        self.state.start()
        if hello:
            self.conn.data_received(wire.encode(wire.Hello("node", syncer, compression=("zlib",))))

    def read(self) -> None:
        """Everything the server has for us (reading lets it write more)."""
        while self.transport.buf:
            self.reader.feed(self.transport.read_all())
        for payload in self.reader.frames():
            msg = wire.decode_server(payload)
            self.msgs.append(msg)
            if isinstance(msg, wire.Welcome):
                out = self.state.connected()
            elif isinstance(msg, wire.Updates):
                out = self.state.on_updates(msg.entries)
            elif isinstance(msg, wire.Status):
                out = self.state.on_status(msg.status, msg.revision)
            else:
                continue
            for u in out.updates:
                self.delivered.append((u.key, u.revision))
                if u.value is None:
                    self.held.pop(u.key)
                else:
                    self.held[u.key] = u.value
            self.statuses += out.statuses


def _server(clock: Clock, **cfg: Any) -> tuple[Server, Cache]:
    cache = Cache(max_bytes=cfg.pop("max_bytes", 64 << 20), clock=clock)
    return Server({"felix": cache}, ServerConfig(**cfg), Metrics(), clock=clock), cache


def _change(server: Server, i: int, size: int = 10) -> None:
    key = f"/calico/k/{i % 50}"
    server.on_changes(
        "felix", [(key, 100 + i, wire.encode_entry(key, 100 + i, {"pad": "x" * size}))], 100 + i
    )


def _want(cache: Cache) -> dict[str, Any]:
    out = {}
    for encoded in cache.state.values():
        ((key, _, value),) = wire.decode_server(wire.updates_frame([encoded])[4:]).entries  # type: ignore[union-attr]
        out[key] = value
    return out


def aborted(c: Client) -> bool:
    """Whether the server aborted ``c``'s connection (read anew each time)."""
    return bool(c.transport.aborted)


def test_early_and_late_clients_hold_the_same_state_each_change_once() -> None:
    clock = Clock()
    server, cache = _server(clock)
    server.on_status("felix", "resync-in-progress", 0)
    early = Client(server)
    for i in range(30):
        _change(server, i)
    server.on_status("felix", "in-sync", 129)
    early.read()
    late = Client(server)
    for i in range(30, 80):
        _change(server, i)
        if i == 55:
            late.read()
    early.read()
    late.read()
    for c in (early, late):
        assert c.statuses[-1] is SyncStatus.IN_SYNC
        assert c.held == _want(cache)
        assert len(c.delivered) == len(set(c.delivered))
    assert isinstance(late.msgs[0], wire.Welcome)
    assert server.metrics.active._value.get() == 2


def test_a_slow_client_is_dropped_and_the_others_never_wait() -> None:
    clock = Clock()
    server, cache = _server(clock, write_buffer=4096, max_bytes=32 * 1024)
    server.on_status("felix", "in-sync", 0)
    slow, fast = Client(server), Client(server)
    fast.read()
    for i in range(2000):
        _change(server, i, size=200)
        fast.read()  # reads everything as it comes
        assert slow.transport.most_buffered <= 4096 + 512  # the bound, plus one frame
    assert aborted(slow)
    assert slow.conn.phase == "closed"
    assert not aborted(fast)
    assert fast.held == _want(cache)
    assert server.metrics.dropped.labels("slow")._value.get() == 1
    assert cache.log_bytes() <= 32 * 1024


def test_a_client_behind_for_longer_than_max_fall_behind_is_dropped() -> None:
    clock = Clock()
    server, _ = _server(clock, write_buffer=4096, max_fall_behind=5.0, new_client_grace=1.0)
    server.on_status("felix", "in-sync", 0)
    slow, fast = Client(server), Client(server)
    slow.read()
    fast.read()
    clock.now += 2  # past the grace
    for i in range(100):
        _change(server, i, size=200)
    fast.read()
    server.check(clock.now)
    assert not aborted(slow)  # behind, but for less than 5 s
    clock.now += 5.5
    fast.read()
    server.check(clock.now)
    assert aborted(slow)
    assert not aborted(fast)
    assert fast.conn.phase == LIVE


def test_handshake_and_pong_timeouts() -> None:
    clock = Clock()
    server, _ = _server(clock, handshake_timeout=3.0, pong_timeout=20.0, ping_interval=5.0)
    silent = Client(server, hello=False)
    chatty = Client(server)
    clock.now += 4
    server.check(clock.now)
    assert aborted(silent)
    assert not aborted(chatty)
    for _ in range(3):
        clock.now += 6
        chatty.conn.data_received(wire.encode(wire.Pong(0.0)))
        server.check(clock.now)
    assert not aborted(chatty)
    chatty.read()
    assert sum(isinstance(m, wire.Ping) for m in chatty.msgs) == 3  # one per interval
    clock.now += 21
    server.check(clock.now)
    assert aborted(chatty)
    assert server.metrics.dropped.labels("pong")._value.get() == 1


def test_a_ping_carries_the_revision_of_what_was_written() -> None:
    clock = Clock()
    server, _ = _server(clock, ping_interval=1.0, write_buffer=4096)
    server.on_status("felix", "in-sync", 7)
    c = Client(server)
    c.read()
    for i in range(200):  # c does not read: it is behind
        _change(server, i, size=200)
    clock.now += 2
    server.check(clock.now)
    c.read()
    ping = next(m for m in c.msgs if isinstance(m, wire.Ping))
    assert ping.revision < 299  # not Typha's newest: what this client had been sent


def test_refusals_say_why() -> None:
    clock = Clock()
    server, _ = _server(clock, max_conns=1)
    Client(server)
    extra = Client(server, hello=False)
    extra.read()
    assert extra.msgs == [wire.Refused("too many connections (limit 1)")]
    server2, _ = _server(clock)
    bad = Client(server2, syncer="bgp")
    bad.read()
    assert bad.msgs == [wire.Refused("unknown syncer type 'bgp'")]
    assert bad.transport.closing
    garbage = Client(server2, hello=False)
    garbage.conn.data_received(wire.frame(b"\xc1\xc1"))
    garbage.read()
    assert isinstance(garbage.msgs[0], wire.Refused)
    assert "bad client message" in garbage.msgs[0].reason
