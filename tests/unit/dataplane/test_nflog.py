"""The NFLOG parser against messages captured from this kernel (``data/nflog_capture.json``, made
by ``scripts/capture_nflog.py``: a TCP SYN to port 80 denied, a UDP datagram, an ICMP echo request
and an IPv6 TCP SYN, each logged by an ``nft log group 1`` rule with its prefix, the mark set to
0x80000 first), and the configuration messages' bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from calico.dataplane import nflog

CAPTURE = json.loads((Path(__file__).parent / "data" / "nflog_capture.json").read_text())


def captured() -> list[nflog.LogPacket]:
    return [p for raw in CAPTURE["messages"] for p in nflog.parse(bytes.fromhex(raw))]


def test_captured_messages_parse() -> None:
    pkts = captured()
    assert [(p.prefix, p.family, p.proto) for p in pkts] == [
        ("DI:0123456789ab", 4, 6),
        ("AIS:ffffffffffff", 4, 17),
        ("AE:a1b2c3d4e5f6", 4, 1),
        ("DE:000000000000", 6, 6),
    ]
    tcp, udp, icmp, tcp6 = pkts
    assert (tcp.src, tcp.dst, tcp.dport, tcp.length) == ("10.9.0.2", "10.9.0.1", 80, 60)
    assert 1024 <= tcp.sport <= 65535
    assert (udp.dport, udp.length) == (81, 31)
    assert (icmp.sport, icmp.dport) == (8, 0)  # ICMP: type, code
    assert (tcp6.src, tcp6.dst, tcp6.dport) == ("fd00:9::2", "fd00:9::1", 443)
    assert tcp6.length == 80  # 40 header + 40 TCP with options
    for p in pkts:
        assert p.mark == 0x80000
        assert p.indev == 2 and p.outdev == 0  # noqa: PT018 - input hook: in only
        assert p.timestamp is not None and p.timestamp > 1.6e9  # noqa: PT018


def test_each_message_is_a_netlink_ulog_packet() -> None:
    for raw in CAPTURE["messages"]:
        data = bytes.fromhex(raw)
        length, kind = struct.unpack_from("=IH", data)
        assert kind == (nflog.NFNL_SUBSYS_ULOG << 8) | nflog.NFULNL_MSG_PACKET
        assert length <= len(data)


def test_batches_and_other_messages() -> None:
    data = b"".join(bytes.fromhex(raw) for raw in CAPTURE["messages"])
    done = struct.pack("=IHHII", 20, nflog.NLMSG_DONE, 2, 0, 0) + b"\0" * 4
    assert [p.prefix for p in nflog.parse(done + data + done)] == [p.prefix for p in captured()]
    assert nflog.parse(b"") == []


@given(st.binary(max_size=400), st.integers(0, 400))
def test_garbage_never_raises(junk: bytes, cut: int) -> None:
    real = bytes.fromhex(CAPTURE["messages"][0])
    for data in (junk, real[:cut], real + junk, junk + real):
        nflog.parse(data)  # truncated or foreign data is skipped, never an exception


def test_config_messages() -> None:
    msg = nflog.config_message(7, nflog.bind_attrs(copy_range=128, nlbufsiz=65536, qthresh=64,
                                                    timeout=10), seq=1)  # fmt: skip
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq) == (len(msg), (4 << 8) | 1, 1)
    assert flags == nflog.NLM_F_REQUEST | nflog.NLM_F_ACK
    family, version, group = struct.unpack_from("!BBH", msg, 16)
    assert (family, version, group) == (0, 0, 7)
    attrs = nflog._attrs(msg, 20, len(msg))
    assert attrs[nflog.NFULA_CFG_CMD][0] == nflog.NFULNL_CFG_CMD_BIND
    assert struct.unpack("!IBB", attrs[nflog.NFULA_CFG_MODE]) == (128, nflog.NFULNL_COPY_PACKET, 0)
    assert struct.unpack("!I", attrs[nflog.NFULA_CFG_QTHRESH]) == (64,)


def test_errors_of_acks() -> None:
    ack = struct.pack("=IHHII", 36, nflog.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -16)
    ok = struct.pack("=IHHII", 36, nflog.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", 0)
    assert nflog.errors(ack + b"\0" * 16 + ok + b"\0" * 16) == [16, 0]
