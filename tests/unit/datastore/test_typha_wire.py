"""Typha's wire codec: frames cut at any byte, spliced entries, compression, bad input."""

from __future__ import annotations

import random

import pytest

from calico.datastore import typha_wire as wire


def _stream() -> tuple[bytes, list[object]]:
    entries = [
        wire.encode_entry(f"/calico/k/{i}", 10 + i, {"spec": {"i": i, "pad": "x" * (i * 37)}})
        for i in range(250)
    ]
    msgs: list[object] = [
        wire.Welcome(1, "felix", "typha-a"),
        wire.Updates([("/calico/k/0", 10, {"spec": {"i": 0, "pad": ""}})]),
        wire.Status("in-sync", 300),
        wire.Ping(12.5, 301),
        wire.Refused("bye"),
    ]
    data = wire.updates_frame(entries[:1])
    data += b"".join(wire.encode(m) for m in msgs[2:])  # type: ignore[arg-type]
    data = wire.encode(msgs[0]) + data  # type: ignore[arg-type]
    data += wire.updates_frame(entries, compress=True)
    want = [
        *msgs,
        wire.Updates(
            [
                (f"/calico/k/{i}", 10 + i, {"spec": {"i": i, "pad": "x" * (i * 37)}})
                for i in range(250)
            ]
        ),
    ]
    return data, want


@pytest.mark.parametrize("seed", range(10))
def test_frames_survive_any_read_boundaries(seed: int) -> None:
    data, want = _stream()
    rng = random.Random(seed)
    reader = wire.FrameReader(wire.MAX_SERVER_FRAME)
    got = []
    pos = 0
    while pos < len(data):
        step = rng.randrange(1, 900)
        reader.feed(data[pos : pos + step])
        pos += step
        got += [wire.decode_server(p) for p in reader.frames()]
    assert got == want
    assert reader.pending() == 0


def test_a_spliced_entry_decodes_as_the_typed_message() -> None:
    frame = wire.updates_frame([wire.encode_entry("/a", 3, {"x": [1, 2.5, None, True]}),
                                wire.encode_entry("/b", 4, None)])  # fmt: skip
    reader = wire.FrameReader(1 << 20)
    reader.feed(frame)
    (payload,) = reader.frames()
    assert wire.decode_server(payload) == wire.Updates(
        [("/a", 3, {"x": [1, 2.5, None, True]}), ("/b", 4, None)]
    )


def test_compression_only_when_it_pays() -> None:
    small = [wire.encode_entry("/a", 1, {"x": 1})]
    assert wire.updates_frame(small, compress=True) == wire.updates_frame(small)
    big = [wire.encode_entry(f"/k/{i}", i, {"spec": {"a": "b" * 40}}) for i in range(100)]
    packed = wire.updates_frame(big, compress=True)
    assert len(packed) * 3 < len(wire.updates_frame(big))
    assert packed[0] & 0x80  # the header's top bit


def test_client_messages_round_trip() -> None:
    reader = wire.FrameReader(wire.MAX_CLIENT_FRAME)
    reader.feed(wire.encode(wire.Hello("node1", "felix", compression=("zlib",))))
    reader.feed(wire.encode(wire.Pong(1.5)))
    got = [wire.decode_client(p) for p in reader.frames()]
    assert got == [wire.Hello("node1", "felix", 1, ("zlib",)), wire.Pong(1.5)]


def test_an_oversized_frame_is_refused_before_it_is_buffered() -> None:
    reader = wire.FrameReader(wire.MAX_CLIENT_FRAME)
    reader.feed(wire.HEADER.pack(wire.MAX_CLIENT_FRAME + 1))
    with pytest.raises(wire.WireError, match="exceeds the limit"):
        reader.frames()


@pytest.mark.parametrize(
    "payload",
    [b"\x00\x01garbage", wire.encode(wire.Pong(1.0))[4:]],
    ids=["garbage", "a client message where a server one is due"],
)
def test_bad_payloads_are_wire_errors(payload: bytes) -> None:
    with pytest.raises(wire.WireError, match="bad server message"):
        wire.decode_server(payload)


def test_a_corrupt_compressed_frame_is_a_wire_error() -> None:
    reader = wire.FrameReader(1 << 20)
    reader.feed(wire.frame(b"not zlib at all", compressed=True))
    with pytest.raises(wire.WireError, match="bad compressed frame"):
        reader.frames()
