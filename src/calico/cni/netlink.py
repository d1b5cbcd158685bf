"""rtnetlink requests for the pod's network, both address families, without exec'ing ``ip``.

Everything pod setup changes in the kernel goes through here (stdlib + ctypes for ``setns``): the
veth pair with its peer born in the pod namespace, the host end's IPv6 address-generation mode,
addresses (IPv4 and IPv6, ``nodad``), routes (``replace`` for the host side), link up and delete.
No fork/exec per step, which on a busy node costs more than the kernel work itself. A netlink
socket belongs to the network namespace it was created in, so the pod's socket is created by a
short-lived thread that ``setns()``-es into CNI_NETNS (that thread's namespace only) and back: the
calling thread never changes namespace. Each request asks for an ACK; an error is
:class:`NetlinkError` with the kernel's errno (``EEXIST`` on a stale veth, ``ENODEV``...).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
NLMSG_ERROR = 2
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_NET_NS_FD = (
    1,
    3,
    4,
    18,
    26,
    28,
)
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 8, 1
IFA_ADDRESS, IFA_LOCAL, IFA_F_NODAD = 1, 2, 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
CLONE_NEWNET = 0x40000000


class NetlinkError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip(text: str) -> tuple[int, bytes]:
    """(address family, packed address) of an IPv4 or IPv6 address."""
    addr = ipaddress.ip_address(text)
    return (socket.AF_INET6 if addr.version == 6 else socket.AF_INET), addr.packed


class Netlink:
    """One NETLINK_ROUTE socket (bound to the namespace it was made in); requests are ACKed."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.settimeout(30)
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> None:
        self._seq += 1
        head = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                           self._seq, 0)  # fmt: skip
        self.sock.send(head + body)
        while True:
            reply = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(reply):
                size, rtype, _, seq, _ = struct.unpack_from("=IHHII", reply, offset)
                if rtype == NLMSG_ERROR and seq == self._seq:
                    (error,) = struct.unpack_from("=i", reply, offset + 16)
                    if error:
                        raise NetlinkError(-error, os.strerror(-error))
                    return
                offset += max(size + (-size % 4), 16)

    # ---- links ------------------------------------------------------------------------------

    def add_veth(
        self,
        *,
        name: str,
        mac: str,
        mtu: int,
        peer: str,
        peer_mac: str,
        peer_netns_fd: int,
        up: bool = True,
    ) -> None:
        """``link add NAME mtu M address MAC [up] type veth peer name PEER address .. netns FD``."""
        peer_body = _ifinfo() + b"".join(
            (
                _attr(IFLA_IFNAME, peer.encode() + b"\0"),
                _attr(IFLA_ADDRESS, _mac(peer_mac)),
                _attr(IFLA_MTU, struct.pack("=I", mtu)),
                _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd)),
            )
        )
        info = _attr(IFLA_INFO_KIND, b"veth") + _attr(
            IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_body)
        )
        flags = IFF_UP if up else 0
        body = _ifinfo(flags=flags, change=IFF_UP) + b"".join(
            (
                _attr(IFLA_IFNAME, name.encode() + b"\0"),
                _attr(IFLA_ADDRESS, _mac(mac)),
                _attr(IFLA_MTU, struct.pack("=I", mtu)),
                _attr(IFLA_LINKINFO, info),
            )
        )
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def link_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, _ifinfo(index, IFF_UP, IFF_UP))

    def no_ipv6_autoconf(self, index: int) -> None:
        """``link set INDEX addrgenmode none``: the kernel makes no IPv6 link-local of its own
        (set before the link goes up; the kernel refuses it in the creating request)."""
        spec = _attr(
            socket.AF_INET6, _attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
        )
        self.request(RTM_NEWLINK, 0, _ifinfo(index) + _attr(IFLA_AF_SPEC, spec))

    def delete_link(self, index: int) -> bool:
        """False if there was no such link."""
        try:
            self.request(RTM_DELLINK, 0, _ifinfo(index))
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    # ---- addresses and routes (the family follows the address) -------------------------------

    def add_addr(
        self, index: int, ip: str, prefixlen: int, *, scope: int = RT_SCOPE_UNIVERSE,
        nodad: bool = False,
    ) -> None:  # fmt: skip
        """``addr add IP/LEN dev INDEX [scope S] [nodad]``."""
        family, raw = _ip(ip)
        flags = IFA_F_NODAD if nodad else 0
        body = struct.pack("=BBBBi", family, prefixlen, flags, scope, index)
        body += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_route(
        self,
        index: int,
        dst: str,
        prefixlen: int,
        *,
        gateway: str | None = None,
        proto: int = RTPROT_BOOT,
        replace: bool = False,
    ) -> None:
        """``route add DST/LEN [via GW] dev INDEX proto P`` (IPv4 without a gateway: scope link);
        ``route replace`` with ``replace``."""
        family, raw = _ip(dst)
        link = gateway is None and family == socket.AF_INET
        scope = RT_SCOPE_LINK if link else RT_SCOPE_UNIVERSE
        body = struct.pack("=BBBBBBBBI", family, prefixlen, 0, 0, RT_TABLE_MAIN, proto, scope,
                           RTN_UNICAST, 0)  # fmt: skip
        if prefixlen:
            body += _attr(RTA_DST, raw)
        if gateway:
            body += _attr(RTA_GATEWAY, _ip(gateway)[1])
        body += _attr(RTA_OIF, struct.pack("=i", index))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL), body)


def _setns(fd: int) -> None:
    import ctypes  # lazy: only the pod side needs it

    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NetlinkError(code, f"setns: {os.strerror(code)}")


def in_netns(netns_fd: int, ifname: str) -> tuple[Netlink, int]:
    """A netlink socket inside the namespace ``netns_fd`` refers to, and ``ifname``'s index there.

    A socket stays bound to the namespace it was made in, so it is made by a short-lived thread
    that enters the namespace and leaves again; this thread's namespace never changes."""
    out: list[tuple[Netlink, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(netns_fd)
            try:
                nl = Netlink()
                try:
                    out.append((nl, socket.if_nametoindex(ifname)))
                except OSError:
                    nl.close()
                    raise
            finally:
                _setns(own)
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(own)

    thread = threading.Thread(target=run, name="netns")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]
