"""Runs inside a workload namespace: serves TCP/UDP ports and answers probe commands on stdin.

Commands (one per line): ``tcp <ip> <port>``, ``udp <ip> <port>``, ``icmp <ip>``,
``hold <ip> <port>`` (open a long-lived TCP connection), ``held`` (is it still passing data?).
Each answer is one line: ``ok`` or ``fail``. Standalone (stdlib only): started with
``ip netns exec <ns> python probe_agent.py --tcp 80,8080 --udp 53``.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import sys
import threading
import time

TIMEOUT = 0.5


def listen_tcp(port: int) -> socket.socket:
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)  # dual stack
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", port))
    srv.listen(64)
    return srv


def serve_tcp(srv: socket.socket) -> None:
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo_tcp, args=(conn,), daemon=True).start()


def echo_tcp(conn: socket.socket) -> None:
    with conn:
        while True:
            try:
                data = conn.recv(1024)
            except OSError:
                return
            if not data:
                return
            conn.sendall(data)


def listen_udp(port: int) -> socket.socket:
    srv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # dual stack
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    return srv


def serve_udp(srv: socket.socket) -> None:
    while True:
        data, addr = srv.recvfrom(2048)
        srv.sendto(data, addr)


def probe_tcp(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=TIMEOUT) as s:
            s.sendall(b"x")
            return s.recv(1) == b"x"
    except OSError:
        return False


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def probe_udp(ip: str, port: int) -> bool:
    with socket.socket(_family(ip), socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        try:
            s.sendto(b"ping", (ip, port))
            data, _ = s.recvfrom(64)
            return data == b"ping"
        except OSError:
            return False


def _checksum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2))
    if len(data) % 2:
        total += data[-1] << 8
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe_icmp6(ip: str) -> bool:
    """ICMPv6 echo over a raw socket (the kernel fills in the checksum)."""
    ident = random.randrange(1, 0xFFFF)
    packet = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"calico-probe"
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.settimeout(TIMEOUT)
        s.sendto(packet, (ip, 0))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                data, addr = s.recvfrom(2048)
            except OSError:
                return False
            typ, _code, _sum, rid, _seq = struct.unpack("!BBHHH", data[:8])
            if typ == 129 and rid == ident and addr[0] == ip:
                return True
    return False


def probe_icmp(ip: str) -> bool:
    """One echo request over a raw socket; True on a matching echo reply."""
    if ":" in ip:
        return probe_icmp6(ip)
    ident = random.randrange(1, 0xFFFF)  # a new conntrack entry per probe
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"calico-probe"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(TIMEOUT)
        s.sendto(packet, (ip, 0))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                data, addr = s.recvfrom(2048)
            except OSError:
                return False
            ihl = (data[0] & 0x0F) * 4
            typ, _code, _sum, rid, _seq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if addr[0] == ip and typ == 0 and rid == ident:
                return True
    return False


class Held:
    sock: socket.socket | None = None


def hold(ip: str, port: int) -> bool:
    try:
        Held.sock = socket.create_connection((ip, port), timeout=TIMEOUT)
        Held.sock.settimeout(TIMEOUT)
    except OSError:
        return False
    return held()


def held() -> bool:
    if Held.sock is None:
        return False
    try:
        Held.sock.sendall(b"y")
        return Held.sock.recv(1) == b"y"
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", default="")
    ap.add_argument("--udp", default="")
    args = ap.parse_args()
    # Bound before "ready": a probe never fails just because a server is not listening yet
    # (that would look like a policy drop).
    for p in filter(None, args.tcp.split(",")):
        threading.Thread(target=serve_tcp, args=(listen_tcp(int(p)),), daemon=True).start()
    for p in filter(None, args.udp.split(",")):
        threading.Thread(target=serve_udp, args=(listen_udp(int(p)),), daemon=True).start()
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        ok = False
        if parts[0] == "tcp":
            ok = probe_tcp(parts[1], int(parts[2]))
        elif parts[0] == "udp":
            ok = probe_udp(parts[1], int(parts[2]))
        elif parts[0] == "icmp":
            ok = probe_icmp(parts[1])
        elif parts[0] == "hold":
            ok = hold(parts[1], int(parts[2]))
        elif parts[0] == "held":
            ok = held()
        print("ok" if ok else "fail", flush=True)


if __name__ == "__main__":
    main()
