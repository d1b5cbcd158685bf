"""Start and stop the lab's long-running processes (etcd, calico-node, pod responders) by PID.

A daemon runs inside a named namespace via ``ip netns exec`` (which execs, so the PID we get is the
daemon's), in its own session, with stdout/stderr appended to a log file. Its PID is recorded in
the lab state before anything waits on it. Stopping signals that PID's process group; the namespace
teardown in :mod:`calico.lib.netns` then removes any straggler by namespace name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from calico.lib import cmd as lib_cmd
from calico.lib.cmd import netns_argv
from calico_lab.state import NETNS_PREFIX, LabError


def venv_bin() -> Path:
    """Directory holding this installation's console scripts (calico-node, calicoctl, ...)."""
    return Path(sys.executable).parent


def executable(name: str) -> str:
    """Path of one of our console scripts, preferring the running interpreter's environment."""
    candidate = venv_bin() / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a lab process: ours, our venv first on PATH, plus ``extra``."""
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env.update(extra)
    return env


def spawn(
    argv: Sequence[str], *, netns: str | None, log_file: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start ``argv`` detached (new session) inside ``netns``; return its PID.

    ``netns`` must be a lab namespace; ``None`` (the root namespace) is only for the Kubernetes
    sync, which listens on nothing and changes nothing there.
    """
    if netns is not None and not netns.startswith(NETNS_PREFIX):
        raise LabError(f"refusing to start {argv[0]} in {netns!r}: not a lab namespace")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = lib_cmd.start(
            netns_argv(netns, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        # A zombie child of ours still "exists": reap it first when it is ours.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X", "") and _ours(pid)


# In every lab daemon's command line: etcd's ``--name calab-<lab>``, our scripts' paths.
MARKERS = (NETNS_PREFIX, "calico_lab/", "calico-node", "calico_lab.", "calico-typha")


def _ours(pid: int) -> bool:
    """A PID read back from the state file still names a daemon we started (the leader of its own
    session, running one of our programs), not a process that reused the PID (e.g. after a reboot:
    ``down`` must never signal that one's process group)."""
    try:
        if os.getsid(pid) != pid:
            return False
        cmdline = _cmdline(pid)
    except OSError:
        return False
    return any(m.encode() in cmdline for m in MARKERS)


def _cmdline(pid: int) -> bytes:
    """The process's command line. It reads empty for a moment while the process execs (a daemon
    we have just spawned goes through ``ip netns exec``), so an empty one is read again."""
    for _ in range(50):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if cmdline:
            return cmdline.replace(b"\0", b" ")
        time.sleep(0.01)
    return b""


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def stop(pid: int, *, grace: float = 5.0) -> None:
    """TERM the process group led by ``pid``, KILL it after ``grace`` seconds."""
    if not alive(pid):
        return
    _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        _killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(
    check: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str
) -> None:
    """Poll ``check()`` until it is truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
