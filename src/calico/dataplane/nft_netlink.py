"""Rule counters of ``table inet calico`` straight from the kernel over nfnetlink (read only).

``libnftables`` builds its cache of the whole table before it answers any ``list`` command, so
reading one chain's counters costs as much as listing everything (≈ 40 ms on a table of 3,000
chains and 1,000 sets; the whole table as JSON ≈ 1 s). The kernel itself can dump the rules of
one chain, or of the table without its sets: this module sends that request
(``NFT_MSG_GETRULE`` with ``NLM_F_DUMP``, filtered by table and chain) and decodes just what the
counters need from each rule: its chain, its comment (the rule's user data) and the packets and
bytes of its ``counter`` expression. Nothing here changes the kernel.

Used by ``dataplane.counters`` (per-rule counters for explain, ``calicoctl get -o wide`` and the
metrics) and by ``NftTable`` to carry counters across a full table replace.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETRULE = 7
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFPROTO_INET = 1
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_USERDATA = 1, 2, 4, 7
NFTA_LIST_ELEM, NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 1, 2
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTNL_UDATA_RULE_COMMENT = 0
NLA_TYPE_MASK = 0x3FFF


class NetlinkError(OSError):
    pass


@dataclass(frozen=True, slots=True)
class RuleCount:
    chain: str
    comment: str
    packets: int
    bytes: int


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            return
        yield kind & NLA_TYPE_MASK, data[offset + 4 : offset + size]
        offset += size + (-size % 4)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _comment(udata: bytes) -> str:
    """The comment TLV of a rule's user data (``u8 type, u8 len, value``: libnftnl's format)."""
    offset = 0
    while offset + 2 <= len(udata):
        kind, size = udata[offset], udata[offset + 1]
        if kind == NFTNL_UDATA_RULE_COMMENT:
            return _cstr(udata[offset + 2 : offset + 2 + size])
        offset += 2 + size
    return ""


_COUNTER_NAME = struct.pack("=HH", 12, NFTA_EXPR_NAME) + b"counter\0"


def _counter(exprs: bytes) -> tuple[int, int] | None:
    """The packets and bytes of the rule's ``counter`` expression. The expression list is
    searched for the name attribute (``counter``: 12 bytes with its header, no padding) rather
    than decoded element by element, which costs ~4x more on a large dump."""
    i = exprs.find(_COUNTER_NAME)
    if i < 0:
        return None
    size, _ = struct.unpack_from("=HH", exprs, i + 12)  # NFTA_EXPR_DATA follows the name
    data = dict(_attrs(exprs[i + 16 : i + 12 + size]))
    (packets,) = struct.unpack(">Q", data.get(NFTA_COUNTER_PACKETS, b"\0" * 8))
    (nbytes,) = struct.unpack(">Q", data.get(NFTA_COUNTER_BYTES, b"\0" * 8))
    return packets, nbytes


def _rule(payload: bytes) -> RuleCount | None:
    fields = dict(_attrs(payload, 4))  # after struct nfgenmsg
    counts = _counter(fields.get(NFTA_RULE_EXPRESSIONS, b""))
    if counts is None:
        return None
    comment = _comment(fields.get(NFTA_RULE_USERDATA, b""))
    return RuleCount(_cstr(fields.get(NFTA_RULE_CHAIN, b"")), comment, *counts)


def dump_rules(table: str, chain: str | None = None) -> list[RuleCount]:
    """Every rule with a counter in ``inet <table>`` (or only in ``chain``), in kernel order.
    A table or chain that does not exist raises NetlinkError (ENOENT)."""
    body = struct.pack("=BBH", NFPROTO_INET, 0, 0) + _attr(NFTA_RULE_TABLE, table.encode() + b"\0")
    if chain is not None:
        body += _attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE
    head = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    out: list[RuleCount] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(10)
        sock.send(head + body)
        while True:
            reply = sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(reply):
                size, rtype, _, _, _ = struct.unpack_from("=IHHII", reply, offset)
                if rtype == NLMSG_DONE:
                    return out
                if rtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", reply, offset + 16)
                    if err:
                        raise NetlinkError(-err, os.strerror(-err))
                    return out
                rule = _rule(reply[offset + 16 : offset + size])
                if rule is not None:
                    out.append(rule)
                offset += max(size + (-size % 4), 16)


def missing(exc: OSError) -> bool:
    """The table or chain asked for does not exist (yet)."""
    return exc.errno == errno.ENOENT
