"""Sockets inside test network namespaces, made from the test process without touching the root ns.

A socket belongs to the network namespace its creating thread was in. ``socket_in_netns`` creates
one in a short-lived thread that has ``setns()``-ed into the namespace, so the test process can
listen or connect "from" a pod or a node namespace. ``Forwarder`` uses that to make the root
namespace's etcd (on 127.0.0.1) reachable at the same 127.0.0.1 port inside each node namespace,
which is where the CNI plugin runs in these tests.
"""

from __future__ import annotations

import os
import socket
import threading

from calico.lib import netns as lib_netns


def socket_in_netns(
    name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A socket created inside namespace ``name`` (setns failing raises: never the root ns)."""
    return lib_netns.call_in(name, lambda: socket.socket(family, kind, proto))


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Forwarder:
    """127.0.0.1:``port`` inside ``netns`` → 127.0.0.1:``port`` in the test's own namespace."""

    def __init__(self, netns: str, port: int, *, target_port: int | None = None) -> None:
        self.netns = netns
        self.port = port
        self.target_port = target_port or port
        self.listener = socket_in_netns(netns)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(256)
        self._stopped = False
        self._socks: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                up.settimeout(None)
            except OSError:
                conn.close()
                continue
            self._socks += [conn, up]
            threading.Thread(target=_pump, args=(conn, up), daemon=True).start()
            threading.Thread(target=_pump, args=(up, conn), daemon=True).start()

    @property
    def connections(self) -> int:
        """How many connections were forwarded so far."""
        return len(self._socks) // 2

    def close(self) -> None:
        self._stopped = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


def tcp_roundtrip(client_ns: str, server_ns: str, server_ip: str, port: int = 8080) -> bytes:
    """Open a TCP connection from ``client_ns`` to a listener in ``server_ns``; the echoed bytes."""
    family = socket.AF_INET6 if ":" in server_ip else socket.AF_INET
    srv = socket_in_netns(server_ns, family)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((server_ip, port))
    srv.listen(1)
    srv.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"echo:" + conn.recv(100))
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    cli = socket_in_netns(client_ns, family)
    cli.settimeout(10)
    try:
        cli.connect((server_ip, port))
        cli.sendall(b"hello")
        return cli.recv(100)
    finally:
        cli.close()
        t.join(5)
        srv.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(netns: str, ip: str, *, timeout: float = 1.0, tries: int = 10) -> bool:
    """ICMP echo from ``netns`` to ``ip`` (IPv4 or IPv6) with a raw socket; True on a reply."""
    import struct
    import time

    v6 = ":" in ip
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    sock = socket_in_netns(netns, family, socket.SOCK_RAW, proto)
    ident = os.getpid() & 0xFFFF
    try:
        for seq in range(tries):
            typ, reply = (128, 129) if v6 else (8, 0)
            header = struct.pack("!BBHHH", typ, 0, 0, ident, seq)
            payload = b"calico-test"
            csum = 0 if v6 else _checksum(header + payload)  # the kernel fills ICMPv6's
            sock.sendto(struct.pack("!BBHHH", typ, 0, csum, ident, seq) + payload, (ip, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(2048)
                except TimeoutError:
                    break
                icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
                rtype, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                if rtype == reply and rid == ident and rseq == seq:
                    return True
        return False
    finally:
        sock.close()
