"""CNI server: runs plugin calls in a long-lived process, so a call skips start-up and imports.

A runtime still execs ``calico`` / ``calico-ipam`` (the launchers written by ``install``), but the
launcher (:mod:`calico.cni.fastpath`, which imports nothing beyond ``_socket``) hands the call to
this server over a Unix socket when one is listening, and runs it in-process otherwise. The server
runs in the node's network namespace (``calico-node`` starts it: ``python -m calico.cni.server
--socket PATH``) and serves each call on its own thread with exactly the code the in-process path
runs (:func:`calico.cni.invocation.execute`).

Wire format (no JSON on the client side; the client shuts down its writes after the request)::

    request:  "CNI2\\n" + "KEY=VALUE\\0"... + "\\0" + stdin bytes, the first bytes sent with one
              file descriptor (SCM_RIGHTS): the caller's root directory
    reply:    "<exit code>\\n<len(stdout)>\\n" + stdout + stderr, or "FALLBACK\\n"

The client sends ``CALICO_NETNS_INO`` (the inode of its network namespace) and ``CALICO_PLUGIN``.
The server answers FALLBACK, and the client runs the call itself, when the network namespaces
differ (a server of another node), when no root descriptor came with the request (an older
launcher), or when the call needs something only the caller's own process can do (exec'ing a
delegated IPAM plugin with the caller's environment).

Calls for one container are serialised (ADD, DEL and CHECK of the same ``CNI_CONTAINERID``
and ``CNI_IFNAME`` run one at a time, in arrival order; other containers' calls run in
parallel): a runtime whose plugin process died or timed out mid-ADD sends DEL while this server
is still running that ADD, and the DEL must see what the ADD made (else the ADD's veth and
route would outlive the released address).

Paths are the caller's: the thread serving a call takes a file-system context of its own
(``unshare(CLONE_FS)``) and ``chroot``s to the caller's root, so CNI_NETNS, the kubeconfig, TLS
files, the nodename file and the log file resolve exactly as they would in the caller's process,
through the caller's mount namespace. A containerd pod netns (a bind mount under
``/var/run/netns`` that only containerd's mount namespace has) works even when this server runs
in a mount namespace of its own, e.g. a containerised calico-node. Everything a call can import
or load lazily is loaded at start (:func:`preload`): nothing is looked up in the caller's tree but
the call's own files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from calico.cni import fastpath, invocation, ipam_plugin, plugin, shared

MAGIC = b"CNI2\n"
CLONE_FS = 0x200
FALLBACK = b"FALLBACK\n"
HANDLERS = {"calico": plugin.dispatch, "calico-ipam": ipam_plugin.dispatch}


def parse_request(raw: bytes) -> tuple[dict[str, str], bytes]:
    if not raw.startswith(MAGIC):
        raise ValueError("not a CNI2 request")
    body = raw[len(MAGIC) :]
    env_part, sep, stdin = body.partition(b"\0\0")
    if not sep:
        raise ValueError("CNI2 request without an environment terminator")
    env: dict[str, str] = {}
    for item in env_part.split(b"\0"):
        key, _, value = item.decode("utf-8", "surrogateescape").partition("=")
        if key:
            env[key] = value
    return env, stdin


def own_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def wants_fallback(env: dict[str, str], stdin: bytes) -> bool:
    if env.get("CALICO_NETNS_INO") != str(own_netns_inode()):
        return True
    if env.get("CALICO_PLUGIN") == "calico" and env.get("CNI_COMMAND") != "VERSION":
        try:
            ipam = (json.loads(stdin).get("ipam") or {}).get("type")
        except (ValueError, AttributeError):
            return False  # let the plugin report the bad config
        return ipam != "calico-ipam"
    return False


class ContainerLocks:
    """One lock per container (and interface) with calls in flight; forgotten when idle."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def held(self, key: tuple[str, str]) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


CONTAINERS = ContainerLocks()


def handle(raw: bytes, *, caller_root: int | None) -> bytes:
    """Serve one request on this thread (which it may re-root: never the main thread)."""
    env, stdin = parse_request(raw)
    if caller_root is None or wants_fallback(env, stdin):
        sys.stderr.write(
            f"fallback {env.get('CNI_COMMAND', '')} {env.get('CNI_CONTAINERID', '')}\n"
        )
        return FALLBACK
    handler = HANDLERS.get(env.get("CALICO_PLUGIN", ""))
    if handler is None:
        return FALLBACK
    try:
        as_caller(caller_root)
    except OSError as exc:
        sys.stderr.write(f"fallback: cannot take the caller's root: {exc}\n")
        return FALLBACK
    command = env.get("CNI_COMMAND", "")
    start = time.perf_counter()
    with CONTAINERS.held((env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", ""))):
        rc, out, err = invocation.execute(handler, command, stdin, env)
    elapsed = (time.perf_counter() - start) * 1000
    sys.stderr.write(
        f"served {env.get('CALICO_PLUGIN')} {command} {env.get('CNI_CONTAINERID', '')} rc={rc}"
        f" ({elapsed:.1f} ms) [{invocation.phases()}]\n"
    )
    if rc != 0:  # the caller may be gone: the server's log keeps why
        sys.stderr.write("".join(f"  {line}\n" for line in err.splitlines()))
    payload = out.encode()
    return f"{rc}\n{len(payload)}\n".encode() + payload + err.encode()


def as_caller(root_fd: int) -> None:
    """From now on this thread resolves paths from the caller's root (its own fs context)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_FS) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare(CLONE_FS): {os.strerror(code)}")
    os.fchdir(root_fd)
    os.chroot(".")
    os.chdir("/")


def preload() -> None:
    """Load now what a call would otherwise load lazily from the (caller's) file system."""
    import ctypes
    import datetime
    import random
    import ssl
    import uuid

    from calico import selector
    from calico.cni import check, k8s, store
    from calico.ipam import report
    from calico.k8s import conversion, names
    from calico.model import validation

    ctypes.CDLL(None, use_errno=True)
    ssl.create_default_context()
    socket.getaddrinfo("localhost", None)  # the resolver's modules
    store.preload()
    del datetime, random, uuid, selector, check, k8s, store, report, conversion, names, validation


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        fds: list[int] = []
        try:
            first, fds, _, _ = socket.recv_fds(self.request, 65536, 4)
            chunks = [first]
            while first:
                chunk = self.request.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            root = fds[0] if len(fds) == 1 else None
            try:
                reply = handle(b"".join(chunks), caller_root=root)
            except ValueError:
                reply = FALLBACK
        finally:
            for fd in fds:
                os.close(fd)
        try:
            self.request.sendall(reply)
        except (BrokenPipeError, ConnectionResetError):
            # the caller died (killed or timed out); the call itself was completed
            sys.stderr.write("the caller went away before the reply\n")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of pods must not overflow the listen backlog


def serve(socket_path: str | os.PathLike[str]) -> Server:
    """Bind ``socket_path`` (mode 0600; a stale socket file is replaced) and return the server.

    ``{netns}`` in the path becomes this namespace's inode, as the launchers compute it.
    """
    shared.enable()  # keep etcd connections; finish veth deletes after replying
    preload()
    path = Path(fastpath.socket_for(str(socket_path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    old = os.umask(0o077)
    try:
        server = Server(str(path), _Handler)
    finally:
        os.umask(old)
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calico.cni.server", description=__doc__)
    ap.add_argument(
        "--socket",
        default=fastpath.DEFAULT_SOCKET,
        help="socket path; {netns} is replaced by this namespace's inode",
    )
    args = ap.parse_args(argv)
    path = fastpath.socket_for(args.socket)
    server = serve(path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        Path(path).unlink(missing_ok=True)
        shared.wait_all_deletes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
