"""Typha's cache: a snapshot then the log from its sequence number is the state, exactly once;
snapshots are reused while fresh; the log keeps what clients need and no more than its bound."""

from __future__ import annotations

from typing import Any

from calico.datastore import typha_wire as wire
from calico.typha.cache import Cache


def _entries(*items: tuple[str, int, Any]) -> list[tuple[str, int, bytes | None]]:
    return [(k, r, None if v is None else wire.encode_entry(k, r, v)) for k, r, v in items]


def _decode(frames: list[bytes]) -> list[Any]:
    reader = wire.FrameReader(wire.MAX_SERVER_FRAME)
    for f in frames:
        reader.feed(f)
    return [wire.decode_server(p) for p in reader.frames()]


def _replay(msgs: list[Any], state: dict[str, Any], seen: list[tuple[str, int]]) -> None:
    for m in msgs:
        if isinstance(m, wire.Updates):
            for key, rev, value in m.entries:
                seen.append((key, rev))
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value


def test_snapshot_then_log_is_the_state_exactly_once() -> None:
    cache = Cache(max_batch=3, max_message=2)
    cache.apply(_entries(*[(f"/k/{i}", i + 1, {"i": i}) for i in range(7)]), 7)
    cache.set_status("in-sync", 7)
    snap = cache.snapshot()
    cache.apply(_entries(("/k/1", 8, {"i": 100}), ("/k/2", 9, None), ("/k/new", 10, 1)), 10)
    state: dict[str, Any] = {}
    seen: list[tuple[str, int]] = []
    msgs = _decode(list(snap.frames))
    assert isinstance(msgs[-1], wire.Status)
    assert msgs[-1] == wire.Status("in-sync", 7)
    assert [len(m.entries) for m in msgs[:-1]] == [3, 3, 1]  # max_batch per snapshot frame
    _replay(msgs, state, seen)
    follow = [c.frame for s in range(snap.seq + 1, cache.seq + 1) if (c := cache.crumb(s))]
    _replay(_decode(follow), state, seen)
    assert len(seen) == len(set(seen))
    assert state == {k: wire.decode_server(wire.updates_frame([v])[4:]).entries[0][2]  # type: ignore[union-attr]
                     for k, v in cache.state.items()}  # fmt: skip
    assert cache.revision == 10
    assert [len(m.entries) for m in _decode(follow)] == [2, 1]  # max_message per change frame


def test_compressed_snapshot_decodes_to_the_same_messages() -> None:
    cache = Cache(max_batch=100)
    cache.apply(_entries(*[(f"/k/{i}", i + 1, {"pad": "x" * 50}) for i in range(300)]), 300)
    snap = cache.snapshot()
    assert snap.compressed_bytes * 3 < snap.raw_bytes
    assert _decode(list(snap.compressed)) == _decode(list(snap.frames))


def test_a_snapshot_is_reused_while_little_changed_since() -> None:
    cache = Cache()
    cache.apply(_entries(*[(f"/k/{i}", i + 1, {"pad": "x" * 100}) for i in range(100)]), 100)
    first = cache.snapshot()
    assert cache.snapshot() is first
    cache.apply(_entries(("/k/1", 101, {"pad": "y"})), 101)
    assert cache.snapshot() is first  # one small change: replaying it is cheaper
    assert (cache.snapshots_generated, cache.snapshots_reused) == (1, 2)
    for i in range(60):  # changes worth more than a quarter of the snapshot: a new one
        cache.apply(_entries((f"/k/{i}", 200 + i, {"pad": "z" * 100})), 200 + i)
    assert cache.snapshot() is not first


def test_trim_keeps_what_clients_and_the_snapshot_need_and_honours_the_byte_bound() -> None:
    cache = Cache(max_bytes=4096)
    for i in range(10):
        cache.apply(_entries((f"/k/{i}", i + 1, {"i": i})), i + 1)
    assert cache.trim(needed=4) == 4  # no snapshot cached: what no client needs goes
    assert cache.crumb(3) is None
    assert cache.crumb(4) is not None
    snap = cache.snapshot()
    cache.apply(_entries(("/k/x", 11, 1)), 11)
    assert cache.trim(needed=cache.seq + 1) == snap.seq + 1  # the fresh snapshot's tail stays
    for i in range(200):  # past the byte bound: the oldest go even if someone needs them
        cache.apply(_entries((f"/k/{i}", 100 + i, {"pad": "p" * 40})), 100 + i)
    first = cache.trim(needed=1)
    assert first > snap.seq + 1
    assert cache.log_bytes() <= 4096
    assert cache.snapshot() is not snap  # its tail is gone: rebuilt
