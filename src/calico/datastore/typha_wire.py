"""What Typha and its clients speak over TCP: length-prefixed msgpack frames (no I/O here).

A frame is a 4-byte big-endian header and a msgpack payload. The header's low 31 bits are the
payload's length; its top bit says the payload is zlib-compressed (only snapshot chunks are, and
only for a client that asked for it in its hello). Every message is a msgspec Struct encoded as an
array whose first element is its tag, so a frame costs a few bytes over its content::

    client -> server   Hello(node, syncer, version, compression)      once, first
                       Pong(ts)                                        answer to each Ping
    server -> client   Welcome(version, syncer, server)                once, first
                       Updates(entries)                                [(key, revision, value|None)]
                       Status(status, revision)                        the server's syncer status
                       Ping(ts, revision)                              every ping interval
                       Refused(reason)                                 then the server closes

An entry is ``(key, revision, value)``, the value the resource's decoded JSON (None: deleted).
The server encodes every entry once (:func:`encode_entry`) and splices the encoded entries into
each frame it sends (:func:`updates_frame`), so fanning a change out to N clients encodes it once.
The ``revision`` of a Status or a Ping is the datastore revision up to which everything has been
handed to the client (a client that reconnects to another server uses it, see typha_client).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import msgspec

PROTOCOL_VERSION = 1
HEADER = struct.Struct("!I")
COMPRESSED = 1 << 31
MAX_FRAME = (1 << 31) - 1
MAX_CLIENT_FRAME = 64 * 1024  # what a server accepts from a client (a hello, a pong)
MAX_SERVER_FRAME = 256 * 1024 * 1024  # what a client accepts from a server


class WireError(Exception):
    """A frame or message that breaks the protocol (the connection is dropped)."""


# ---- messages -----------------------------------------------------------------------------------


class Hello(msgspec.Struct, tag="hello", array_like=True, frozen=True):
    node: str
    syncer: str
    version: int = PROTOCOL_VERSION
    compression: tuple[str, ...] = ()


class Pong(msgspec.Struct, tag="pong", array_like=True, frozen=True):
    ts: float


class Welcome(msgspec.Struct, tag="welcome", array_like=True, frozen=True):
    version: int
    syncer: str
    server: str


class Updates(msgspec.Struct, tag="u", array_like=True, frozen=True):
    entries: list[tuple[str, int, Any]]


class _RawUpdates(msgspec.Struct, tag="u", array_like=True, frozen=True):
    """Updates as the server encodes it: entries already encoded (spliced in, not re-encoded)."""

    entries: list[msgspec.Raw]


class Status(msgspec.Struct, tag="status", array_like=True, frozen=True):
    status: str
    revision: int


class Ping(msgspec.Struct, tag="ping", array_like=True, frozen=True):
    ts: float
    revision: int


class Refused(msgspec.Struct, tag="refused", array_like=True, frozen=True):
    reason: str


ClientMsg = Hello | Pong
ServerMsg = Welcome | Updates | Status | Ping | Refused

_encoder = msgspec.msgpack.Encoder()
_client_decoder = msgspec.msgpack.Decoder(ClientMsg)
_server_decoder = msgspec.msgpack.Decoder(ServerMsg)


# ---- frames -------------------------------------------------------------------------------------


def frame(payload: bytes, *, compressed: bool = False) -> bytes:
    if len(payload) > MAX_FRAME:
        raise WireError(f"frame of {len(payload)} bytes is too big")
    return HEADER.pack(len(payload) | (COMPRESSED if compressed else 0)) + payload


def encode(msg: msgspec.Struct) -> bytes:
    """One message as a frame."""
    return frame(_encoder.encode(msg))


def encode_entry(key: str, revision: int, value: Any) -> bytes:
    """One entry, encoded once; :func:`updates_frame` splices it into any number of frames."""
    return _encoder.encode((key, revision, value))


def updates_frame(entries: Sequence[bytes], *, compress: bool = False) -> bytes:
    """An Updates frame of pre-encoded entries; ``compress``: zlib when it saves bytes."""
    payload = _encoder.encode(_RawUpdates([msgspec.Raw(e) for e in entries]))
    if compress and len(payload) > 1024:
        packed = zlib.compress(payload, 1)
        if len(packed) < len(payload):
            return frame(packed, compressed=True)
    return frame(payload)


class FrameReader:
    """Cuts a byte stream into frames: ``feed(data)`` then iterate ``frames()``."""

    def __init__(self, max_frame: int) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> int:
        return len(self._buf)

    def frames(self) -> list[bytes]:
        """The complete frames buffered so far (payloads, decompressed)."""
        out: list[bytes] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            (word,) = HEADER.unpack_from(buf, pos)
            size = word & ~COMPRESSED
            if size > self._max:
                raise WireError(f"frame of {size} bytes exceeds the limit of {self._max}")
            end = pos + HEADER.size + size
            if end > len(buf):
                break
            payload = bytes(buf[pos + HEADER.size : end])
            if word & COMPRESSED:
                try:
                    payload = zlib.decompress(payload)
                except zlib.error as exc:
                    raise WireError(f"bad compressed frame: {exc}") from None
            out.append(payload)
            pos = end
        if pos:
            del buf[:pos]
        return out


def decode_client(payload: bytes) -> Hello | Pong:
    try:
        msg: Hello | Pong = _client_decoder.decode(payload)
        return msg
    except msgspec.DecodeError as exc:
        raise WireError(f"bad client message: {exc}") from None


def decode_server(payload: bytes) -> Welcome | Updates | Status | Ping | Refused:
    try:
        msg: Welcome | Updates | Status | Ping | Refused = _server_decoder.decode(payload)
        return msg
    except msgspec.DecodeError as exc:
        raise WireError(f"bad server message: {exc}") from None


__all__ = [
    "MAX_CLIENT_FRAME",
    "MAX_SERVER_FRAME",
    "PROTOCOL_VERSION",
    "FrameReader",
    "Hello",
    "Ping",
    "Pong",
    "Refused",
    "Status",
    "Updates",
    "Welcome",
    "WireError",
    "decode_client",
    "decode_server",
    "encode",
    "encode_entry",
    "frame",
    "updates_frame",
]
