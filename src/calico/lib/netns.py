"""Named network namespaces: make, delete (with their processes), and enter per thread.

Rather than exec a helper per call, a *thread* enters the namespace with ``setns(2)`` (network
namespaces are per thread on Linux); sockets made by that thread stay in that namespace for their
lifetime. :class:`NetnsExecutor` is a one-thread pool pinned to a namespace (the lab reaches its
etcd in the lab's core namespace this way, the caller's own thread never changing namespace);
:func:`call_in` runs one function on a fresh thread there (a socket for a test, a probe).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from calico.lib.cmd import CmdError, run

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/var/run/netns")
_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _path(netns: str) -> Path:
    """``/var/run/netns/<netns>``; an empty name or one with a path in it is refused (it would
    name the directory itself, or a namespace elsewhere, e.g. the root one's ``/proc/1/ns/net``)."""
    if not netns or "/" in netns or netns in (".", ".."):
        raise ValueError(f"network namespace name {netns!r} is not a namespace name")
    return NETNS_RUN_DIR / netns


PROCESS_NETNS = re.compile(r"^/proc/[1-9][0-9]*/ns/net$")


def enter(netns: str) -> None:
    """Move the *calling thread* into the named namespace."""
    fd = os.open(_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def enter_process(path: str) -> None:
    """Move the *calling thread* into a process's namespace, ``/proc/<pid>/ns/net`` (a container's
    has no name); never into this process's own (the root one, for the lab and the tests)."""
    if not PROCESS_NETNS.match(path):
        raise ValueError(f"{path!r} is not /proc/<pid>/ns/net")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise ValueError(f"{path} is this process's own network namespace")
        _setns(fd)
    finally:
        os.close(fd)


def enter_any(ref: str) -> None:
    """:func:`enter_process` for a ``/proc/...`` path, else :func:`enter` (a name)."""
    if ref.startswith("/proc/"):
        enter_process(ref)
    else:
        enter(ref)


def exists(netns: str) -> bool:
    return _path(netns).exists()


def add(netns: str) -> None:
    """Create the namespace (if absent) with ``lo`` up."""
    if not exists(netns):
        run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])


def pids(netns: str) -> list[int]:
    if not exists(netns):
        return []
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_all(netns: str, *, grace: float = 3.0) -> None:
    """TERM every process in the namespace, then KILL the ones still there after ``grace``."""
    victims = pids(netns)
    for pid in victims:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while victims and time.monotonic() < deadline:
        time.sleep(0.05)
        victims = pids(netns)
    for pid in victims:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def delete(netns: str) -> None:
    """Kill the namespace's processes and delete it (no error when already gone)."""
    if not exists(netns):
        return
    kill_all(netns)
    try:
        run(["ip", "netns", "del", netns])
    except CmdError:
        if exists(netns):
            raise


def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Write sysctls inside ``netns`` (never in the root namespace)."""
    args = [f"{k}={v}" for k, v in settings.items()]
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *args])


class NetnsExecutor:
    """A single worker thread that lives in ``netns``; submit calls to run there."""

    def __init__(self, netns: str) -> None:
        if not exists(netns):
            raise OSError(f"network namespace {netns} does not exist")
        self.netns = netns
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"ns-{netns}", initializer=enter, initargs=(netns,)
        )

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def call_in(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread inside ``netns`` (for one-off work)."""

    def body() -> T:
        enter(netns)
        return fn()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(body).result()
