"""The launcher's first step: hand the call to the CNI server if one listens, else run it here.

Imports only ``os``, ``sys`` and ``_socket`` (the C module; ``socket`` would pull ``enum`` and
more), so a call served by :mod:`calico.cni.server` costs little more than the interpreter's
start. Any trouble reaching the server (no socket, refused, a server of another namespace
answering FALLBACK, a broken reply) runs the call in this process instead, which is always correct:
ADD and DEL are idempotent (a repeated ADD reuses the handle's addresses and replaces a stale veth).
"""

from __future__ import annotations

import _socket
import os
import sys

TIMEOUT = 300.0
# "{netns}" becomes the inode of the caller's (server's) network namespace: one server per node
# namespace, even when the lab's nodes share one bin dir and one /var/run.
DEFAULT_SOCKET = "/var/run/calico/cni-{netns}.sock"


def netns_inode() -> str:
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return ""


def socket_for(template: str) -> str:
    return template.replace("{netns}", netns_inode())


def _request(plugin: str, data: bytes) -> bytes:
    env = dict(os.environ)
    env["CALICO_PLUGIN"] = plugin
    env["CALICO_NETNS_INO"] = netns_inode()
    items = b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in env.items())
    return b"CNI1\n" + items + b"\0" + data


def ask(socket_path: str, plugin: str, data: bytes) -> tuple[int, bytes, bytes] | None:
    """(exit code, stdout, stderr) from the server, or None to run the call in-process."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.settimeout(TIMEOUT)
        sock.connect(socket_path)
        sock.sendall(_request(plugin, data))
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        sock.close()
    reply = b"".join(chunks)
    rc_text, _, rest = reply.partition(b"\n")
    size_text, _, rest = rest.partition(b"\n")
    if not rc_text.isdigit() or not size_text.isdigit() or len(rest) < int(size_text):
        return None  # FALLBACK, or a reply cut short
    size = int(size_text)
    return int(rc_text), rest[:size], rest[size:]


def run_here(plugin: str, data: bytes) -> tuple[int, bytes, bytes]:
    from calico.cni import invocation

    if plugin == "calico-ipam":
        from calico.cni import ipam_plugin

        handler = ipam_plugin.dispatch
    else:
        from calico.cni import plugin as calico_plugin

        handler = calico_plugin.dispatch
    command = os.environ.get("CNI_COMMAND", "")
    rc, out, err = invocation.execute(handler, command, data, os.environ)
    return rc, out.encode(), err.encode()


def main(socket_path: str, plugin: str) -> int:
    data = sys.stdin.buffer.read()
    result = ask(socket_for(socket_path), plugin, data) if socket_path else None
    rc, out, err = result if result is not None else run_here(plugin, data)
    _write_all(1, out)
    _write_all(2, err)
    return rc


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
