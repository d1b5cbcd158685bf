"""Runs inside a workload namespace: sends one UDP packet every INTERVAL from a fresh socket (a new
conntrack flow each time, so an established entry never hides a verdict change) and reports, per
packet, ``<send time (CLOCK_MONOTONIC)> <1 if echoed else 0>`` once its reply window closes."""

from __future__ import annotations

import select
import socket
import sys
import time

INTERVAL = 0.002
WINDOW = 0.15


def main() -> None:
    target = (sys.argv[1], int(sys.argv[2]))
    pending: dict[socket.socket, float] = {}
    answered: set[socket.socket] = set()
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                s.sendto(b"p", target)
            except OSError:
                pass
            pending[s] = now
            next_send += INTERVAL
        readable, _, _ = select.select(
            list(pending), [], [], max(0.0, next_send - time.monotonic())
        )
        for s in readable:
            try:
                s.recv(16)
                answered.add(s)
            except OSError:
                pass
        now = time.monotonic()
        for s, sent in list(pending.items()):
            if now - sent > WINDOW:
                sys.stdout.write(f"{sent:.6f} {1 if s in answered else 0}\n")
                answered.discard(s)
                del pending[s]
                s.close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
