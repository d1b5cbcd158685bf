"""NFLOG over netlink: the packets nftables ``log group N`` sends, read with the stdlib.

A ``socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)`` bound to an nfnetlink_log group of the
namespace the socket was made in. Configuration messages (``NFULNL_MSG_CONFIG``): bind the group,
copy the first ``copy_range`` bytes of each packet (headers are enough), and let the kernel batch
messages (``qthresh`` packets or ``timeout`` hundredths of a second) so a busy log costs one
``recv`` per batch. Each packet message (``NFULNL_MSG_PACKET``) carries netlink attributes; the
ones read here (kernel names)::

    NFULA_PACKET_HDR (1)  hw protocol, hook          NFULA_MARK (2)         skb mark (be32)
    NFULA_TIMESTAMP (3)   sec, usec (be64 each)      NFULA_IFINDEX_INDEV (4) / OUTDEV (5) (be32)
    NFULA_PAYLOAD (9)     the packet from its L3 header   NFULA_PREFIX (10)  NUL-terminated text

:func:`parse` is pure (tested against messages captured from this kernel); :class:`NflogSocket`
is the I/O. Nothing here imports a netlink library (DEPENDENCIES.md: pyroute2 only for events).
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLM_F_REQUEST, NLM_F_ACK = 1, 4
# config attributes
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_NLBUFSIZ, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH = (
    1,
    2,
    3,
    4,
    5,
)
NFULNL_CFG_CMD_BIND, NFULNL_CFG_CMD_UNBIND = 1, 2
NFULNL_COPY_PACKET = 2
# packet attributes
NFULA_PACKET_HDR, NFULA_MARK, NFULA_TIMESTAMP = 1, 2, 3
NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV = 4, 5
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
_NLA_TYPE_MASK = 0x3FFF  # NLA_F_NESTED | NLA_F_NET_BYTEORDER stripped

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}
_PORT_PROTOS = (6, 17, 132)
_V6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: skipped to the L4 header


class NflogError(OSError):
    """The kernel refused a configuration message (the errno says why: EBUSY, the group is
    bound by another socket in this namespace; EPERM, no CAP_NET_ADMIN)."""


@dataclass(frozen=True, slots=True)
class LogPacket:
    """One logged packet: the prefix of the rule that logged it and the packet's 5-tuple."""

    prefix: str
    mark: int
    indev: int  # ifindex (0: none)
    outdev: int
    family: int  # 4 | 6 (0: not IP)
    src: str = ""
    dst: str = ""
    proto: int = 0
    sport: int = 0  # ICMP: the type
    dport: int = 0  # ICMP: the code
    length: int = 0  # the IP packet's length
    timestamp: float | None = None


# ---- parsing (pure) ---------------------------------------------------------------------------


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3
    return out


_ADDRS: dict[bytes, str] = {}  # raw address -> text: a flood repeats a few addresses
_ADDRS_MAX = 65536


def _addr(raw: bytes) -> str:
    text = _ADDRS.get(raw)
    if text is None:
        if len(_ADDRS) >= _ADDRS_MAX:
            _ADDRS.clear()
        family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
        text = _ADDRS[raw] = socket.inet_ntop(family, raw)
    return text


def _decode_l3(payload: bytes) -> tuple[int, str, str, int, int, int, int]:
    """(family, src, dst, proto, sport, dport, length) of an IP packet's first bytes."""
    if len(payload) >= 20 and payload[0] >> 4 == 4:
        ihl = (payload[0] & 0x0F) * 4
        length, proto = struct.unpack_from("!H", payload, 2)[0], payload[9]
        src, dst = _addr(payload[12:16]), _addr(payload[16:20])
        sport, dport = _decode_l4(payload, ihl, proto)
        return 4, src, dst, proto, sport, dport, length
    if len(payload) >= 40 and payload[0] >> 4 == 6:
        length = struct.unpack_from("!H", payload, 4)[0] + 40
        proto, offset = payload[6], 40
        while proto in _V6_EXT and offset + 8 <= len(payload):
            proto, offset = payload[offset], offset + (payload[offset + 1] + 1) * 8
        src, dst = _addr(payload[8:24]), _addr(payload[24:40])
        sport, dport = _decode_l4(payload, offset, proto)
        return 6, src, dst, proto, sport, dport, length
    return 0, "", "", 0, 0, 0, len(payload)


def _decode_l4(payload: bytes, offset: int, proto: int) -> tuple[int, int]:
    if proto in _PORT_PROTOS and offset + 4 <= len(payload):
        sport, dport = struct.unpack_from("!HH", payload, offset)
        return sport, dport
    if proto in (1, 58) and offset + 2 <= len(payload):
        return payload[offset], payload[offset + 1]  # type, code
    return 0, 0


def _packet(data: bytes, offset: int, end: int) -> LogPacket:
    attrs = _attrs(data, offset + _NFGENMSG.size, end)
    prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
    mark = struct.unpack("!I", attrs[NFULA_MARK])[0] if NFULA_MARK in attrs else 0
    indev = (
        struct.unpack("!I", attrs[NFULA_IFINDEX_INDEV])[0] if NFULA_IFINDEX_INDEV in attrs else 0
    )
    outdev = (
        struct.unpack("!I", attrs[NFULA_IFINDEX_OUTDEV])[0] if NFULA_IFINDEX_OUTDEV in attrs else 0
    )
    stamp = None
    if NFULA_TIMESTAMP in attrs and len(attrs[NFULA_TIMESTAMP]) >= 16:
        sec, usec = struct.unpack_from("!QQ", attrs[NFULA_TIMESTAMP])
        stamp = sec + usec / 1e6
    family, src, dst, proto, sport, dport, length = _decode_l3(attrs.get(NFULA_PAYLOAD, b""))
    return LogPacket(prefix, mark, indev, outdev, family, src, dst, proto, sport, dport, length,
                     stamp)  # fmt: skip


def parse(data: bytes) -> list[LogPacket]:
    """The logged packets in one ``recv`` (one or several netlink messages; others skipped)."""
    out: list[LogPacket] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            out.append(_packet(data, offset + _NLMSGHDR.size, offset + length))
        offset += (length + 3) & ~3
    return out


def errors(data: bytes) -> list[int]:
    """The errnos of the NLMSG_ERROR messages in ``data`` (0 is an acknowledgement)."""
    found = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, *_ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        if kind == NLMSG_ERROR and length >= _NLMSGHDR.size + 4:
            found.append(-struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0])
        offset += (length + 3) & ~3
    return found


# ---- configuration messages (pure) ------------------------------------------------------------


def _nla(kind: int, value: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def config_message(group: int, attrs: list[bytes], *, seq: int) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, group) + b"".join(attrs)
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return (
        _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
    )


def bind_attrs(*, copy_range: int, nlbufsiz: int, qthresh: int, timeout: int) -> list[bytes]:
    return [
        _nla(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND)),
        _nla(NFULA_CFG_MODE, struct.pack("!IBB", copy_range, NFULNL_COPY_PACKET, 0)),
        _nla(NFULA_CFG_NLBUFSIZ, struct.pack("!I", nlbufsiz)),
        _nla(NFULA_CFG_QTHRESH, struct.pack("!I", qthresh)),
        _nla(NFULA_CFG_TIMEOUT, struct.pack("!I", timeout)),
    ]


# ---- the socket -------------------------------------------------------------------------------


class NflogSocket:
    """A bound NFLOG group in the caller's network namespace. ``recv`` returns the packets of
    one batch (empty on a timeout); a receive-buffer overrun (the agent fell behind) is counted in
    ``overruns`` and reading goes on."""

    def __init__(
        self,
        group: int,
        *,
        copy_range: int = 128,
        rcvbuf: int = 4 << 20,
        qthresh: int = 64,
        timeout_cs: int = 10,
    ) -> None:
        self.group = group
        self.overruns = 0
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, 0))
            attrs = bind_attrs(
                copy_range=copy_range, nlbufsiz=65536, qthresh=qthresh, timeout=timeout_cs
            )
            self._request(config_message(group, attrs, seq=1))
        except BaseException:
            self._sock.close()
            raise

    def _request(self, msg: bytes) -> None:
        self._sock.send(msg)
        self._sock.settimeout(2.0)
        for code in errors(self._sock.recv(65536)):
            if code:
                raise NflogError(
                    code, f"NFLOG group {self.group}: {errno.errorcode.get(code, code)}"
                )

    def recv(self, timeout: float) -> list[LogPacket]:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(1 << 17)
        except TimeoutError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.overruns += 1
                return []
            raise
        return parse(data)

    def close(self) -> None:
        try:
            unbind = [_nla(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_UNBIND))]
            self._sock.send(config_message(self.group, unbind, seq=2))
        except OSError:
            pass
        self._sock.close()
