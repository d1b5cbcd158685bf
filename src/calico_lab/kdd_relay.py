"""A TCP relay from the lab's namespaces to an API server on the machine's loopback.

``up --datastore kubernetes --kubeconfig FILE``: the user's API server listens on this machine's
``127.0.0.1:PORT`` (kind, a test kube-apiserver), which no lab namespace can route to. This process
runs in the root namespace, opens one listening socket on the same ``127.0.0.1:PORT`` *inside*
each namespace named (``setns(2)`` on a thread while the socket is made; the socket stays in that
namespace), and joins every connection accepted there to a new connection to the real server made
from the root namespace. The bytes pass through untouched (TLS end to end, so the kubeconfig and
its certificates work unchanged). It listens on nothing in the root namespace.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import threading
import urllib.parse
from pathlib import Path

from calico.lib import netns
from calico_lab.errors import LabError

BUF = 65536


def target(kubeconfig: str) -> tuple[str, int]:
    """The API server's (host, port) from ``kubeconfig``; it must be on this machine's loopback."""
    from calico.lib.kubeconfig import KubeconfigError, load_kubeconfig

    try:
        server = str(load_kubeconfig(kubeconfig).get("server") or "")
    except KubeconfigError as exc:
        raise LabError(f"--kubeconfig {kubeconfig}: {exc}") from None
    url = urllib.parse.urlsplit(server)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LabError(
            f"--kubeconfig {kubeconfig}: API server {server!r} is not on this machine's loopback "
            "(the lab's namespaces reach one only there, through the lab's relay)"
        )
    return ("127.0.0.1" if host == "localhost" else host), port


def _listen_in(ns: str, host: str, port: int) -> socket.socket:
    def make() -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        return sock

    return netns.call_in(ns, make)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(BUF):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _join(client: socket.socket, host: str, port: int) -> None:
    try:
        upstream = socket.create_connection((host, port), timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    t = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    t.start()
    _pump(client, upstream)
    t.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, host: str, port: int) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_join, args=(client, host, port), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calico_lab.kdd_relay", description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT on this machine's loopback")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("netns", nargs="+", help="lab namespaces to listen in")
    args = parser.parse_args(argv)
    host, _, port_text = args.target.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    for ns in args.netns:
        if not ns.startswith("calab-"):
            raise SystemExit(f"kdd_relay: {ns!r} is not a lab namespace")
        sock = _listen_in(ns, host, port)
        threading.Thread(target=_serve, args=(sock, host, port), daemon=True).start()
    Path(args.ready_file).touch()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
