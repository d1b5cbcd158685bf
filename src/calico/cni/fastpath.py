"""The launcher's first step: hand the call to the CNI server if one listens, else run it here.

Imports only ``posix`` and ``sys`` (built in) and ``_socket`` (the C module): under ``python -IS``
even ``os`` costs ≈ 1 ms of a ≈ 7 ms interpreter start, and ``socket`` pulls ``enum`` and more.
Any trouble reaching the server (no socket, refused, a server of another namespace answering
FALLBACK, a broken reply) runs the call in this process instead, which is always correct: ADD
and DEL are idempotent (a repeated ADD reuses the handle's addresses and replaces a stale veth).

With the request goes a file descriptor of this process's root directory (SCM_RIGHTS): the server
resolves every path of the call (CNI_NETNS, the kubeconfig, TLS files, the log file) through it,
so it sees them as this process does, whatever mount namespace the server runs in.
"""

import _socket
import posix
import sys

TIMEOUT = 300.0
# "{netns}" becomes the inode of the caller's (server's) network namespace: one server per node
# namespace, even when the lab's nodes share one bin dir and one /var/run.
DEFAULT_SOCKET = "/var/run/calico/cni-{netns}.sock"


def netns_inode() -> str:
    try:
        return str(posix.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return ""


def socket_for(template: str) -> str:
    return template.replace("{netns}", netns_inode()) if "{netns}" in template else template


def _request(plugin: str, data: bytes) -> bytes:
    env = dict(posix.environ)  # bytes -> bytes: no decoding
    env[b"CALICO_PLUGIN"] = plugin.encode()
    env[b"CALICO_NETNS_INO"] = netns_inode().encode()
    return b"CNI2\n" + b"".join(k + b"=" + v + b"\0" for k, v in env.items()) + b"\0" + data


def _send(sock: "_socket.socket", request: bytes) -> None:
    """The request, its first bytes carrying our root directory's descriptor (SCM_RIGHTS)."""
    root = posix.open("/", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        fd = root.to_bytes(4, sys.byteorder, signed=True)
        sent = sock.sendmsg([request[:65536]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd)])
    finally:
        posix.close(root)
    sock.sendall(request[sent:])


def ask(socket_path: str, plugin: str, data: bytes) -> tuple[int, bytes, bytes] | None:
    """(exit code, stdout, stderr) from the server, or None to run the call in-process."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.settimeout(TIMEOUT)
        sock.connect(socket_path)
        _send(sock, _request(plugin, data))
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
    import os

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


def main(socket_path: str, plugin: str, src: str = "") -> int:
    data = sys.stdin.buffer.read()
    result = ask(socket_for(socket_path), plugin, data) if socket_path else None
    if result is None:
        if src and src not in sys.path:
            sys.path.insert(0, src)
        result = run_here(plugin, data)
    rc, out, err = result
    _write_all(1, out)
    _write_all(2, err)
    return rc


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[posix.write(fd, data) :]
