"""Runs inside a workload namespace: echoes every UDP datagram on the given port."""

from __future__ import annotations

import socket
import sys


def main() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


if __name__ == "__main__":
    main()
