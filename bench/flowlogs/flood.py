"""A paced flood of new UDP flows (stdlib only; run inside a workload's namespace).

    python -I flood.py SRC_IP DST_IP PORT RATE SECONDS

Sends RATE datagrams a second for SECONDS, each from the next source port (1024-65535, wrapping),
so every datagram is a new flow (a new conntrack entry, a new verdict). Crafted on a raw socket:
no socket per flow, so the sender keeps up on a busy machine. Prints one JSON line: how many it
sent and how long it took.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def packet(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    payload = b"x"
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp


def main() -> None:
    src_ip, dst_ip, port, rate, seconds = sys.argv[1:6]
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    per_slot, slot = max(1, int(rate) // 100), 0.01
    sent, sport = 0, 1024
    start = time.monotonic()
    end = start + float(seconds)
    next_slot = start
    while time.monotonic() < end:
        for _ in range(per_slot):
            try:
                sock.sendto(packet(src, dst, sport, int(port)), (dst_ip, 0))
                sent += 1
            except OSError:
                pass
            sport = sport + 1 if sport < 65535 else 1024
        next_slot += slot
        delay = next_slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
