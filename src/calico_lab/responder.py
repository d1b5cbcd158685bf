"""The lab pod's workload: answer on every containerPort (TCP, UDP, SCTP) with one line.

Run as a plain script inside the pod's namespace (``python -I -S responder.py ...``): stdlib only
and no site import, so it starts in a few tens of milliseconds. A TCP/SCTP client gets
``<ns>/<pod>\\n`` and the connection closes; a UDP datagram is answered with the same line. With
``--echo-peer`` the line is instead the source address the client connected from (the lab's
``outside`` host: it shows whether a pod's traffic arrived masqueraded). Once every socket is bound
the script creates ``--ready-file``, which is what the lab waits for.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
from pathlib import Path

PROTOS = {
    "tcp": (socket.SOCK_STREAM, 0),
    "udp": (socket.SOCK_DGRAM, 0),
    "sctp": (socket.SOCK_STREAM, 132),
}  # 132 = IPPROTO_SCTP


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def _open(proto: str, port: int) -> socket.socket | None:
    kind, number = PROTOS[proto]
    try:
        sock = socket.socket(socket.AF_INET, kind, number)
    except OSError as exc:  # e.g. SCTP not available in this kernel
        print(f"responder: cannot open {proto} socket for port {port}: {exc}", flush=True)
        return None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(64)
    sock.setblocking(False)
    return sock


def serve(args: argparse.Namespace) -> None:
    identity = f"{args.identity}\n".encode()

    def reply(peer: tuple[str, int]) -> bytes:
        return f"{peer[0]}\n".encode() if args.echo_peer else identity

    sel = selectors.DefaultSelector()
    for proto in PROTOS:
        for port in _ports(getattr(args, proto)):
            sock = _open(proto, port)
            if sock is not None:
                sel.register(sock, selectors.EVENT_READ, proto)
    if args.ready_file:
        Path(args.ready_file).write_text("ready\n")
    while True:
        for key, _ in sel.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                if key.data == "udp":
                    _, peer = ready.recvfrom(2048)
                    ready.sendto(reply(peer), peer)
                else:
                    conn, peer = ready.accept()
                    with conn:
                        conn.setblocking(True)
                        conn.settimeout(1)
                        conn.sendall(reply(peer))
            except OSError:
                continue


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--identity", default="pod")
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--echo-peer", action="store_true", help="answer the client's address")
    for proto in PROTOS:
        parser.add_argument(f"--{proto}", default="", help="comma-separated ports")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args)


if __name__ == "__main__":
    main()
