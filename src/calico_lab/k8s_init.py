"""PID 1 of a Kubernetes lab host: shape its private mount namespace like a host's, then reap.

Started by :mod:`calico_lab.k8s_host` as::

    ip netns exec calab-<lab>-node1 unshare --pid --fork --mount-proc --propagation private \\
        python -I -S k8s_init.py --ready FILE [--cgroup DIR=OPTS ...] [--mask SYSCTL=FILE ...] \\
        [--tmpfs DIR ...] [--bind SRC=DST ...]

Every daemon of the host (containerd, kubelet, kube-proxy, calico-node; the control plane's on
the core) is started inside this PID and mount namespace, so they all see the same mounts (pod
network namespaces under ``/run/netns``, containerd's state) and ending this process ends them all:
when PID 1 of a PID namespace exits, the kernel kills every process in it, containers included,
and the mount namespace goes with its last process. Nothing propagates to the machine's mounts
(``--propagation private``). In order:

1. ``--cgroup``: ``ip netns exec`` remounted ``/sys`` for the network namespace, which drops the
   cgroup mounts; a tmpfs on ``/sys/fs/cgroup`` gets each of the machine's hierarchies again, at the
   same paths (kubelet and runc find them in mountinfo).
2. ``--mask``: a file bind-mounted over ``/proc/sys/...``: kubelet reads the value it wants and
   writes nothing (those sysctls are not per network namespace: writing would change the machine).
3. ``--tmpfs``: a private ``/run`` (``/var/run``): containerd's state and shim sockets, runc's,
   ``/run/netns/cni-*``, ``/run/xtables.lock``: per host, gone with it.
4. ``--bind``: the host's own directories (``/run/calico``, ``/var/log``, ``/etc/cni/net.d``,
   ``/opt/cni/bin``, ``/var/lib/calico``, ``/var/lib/cni``) over the machine's paths.

Then it writes ``--ready`` and reaps orphans (containerd's shims are re-parented to it) until
SIGTERM. Standard library only and no site import (``-I -S``): it must start anywhere, fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path


def mount(*args: str, fds: tuple[int, ...] = ()) -> None:
    # Not through calico.lib.cmd: this runs as ``python -I -S k8s_init.py``, outside the package.
    argv = ["mount", *args]  # found on PATH, as lib.cmd does
    proc = subprocess.run(  # noqa: S603 - a fixed program, arguments from the lab's own code
        argv, capture_output=True, text=True, check=False, pass_fds=fds
    )
    if proc.returncode != 0:
        raise SystemExit(f"k8s_init: mount {' '.join(args)}: {proc.stderr.strip()}")


def pair(text: str) -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left or not right:
        raise argparse.ArgumentTypeError(f"{text!r}: expected A=B")
    return left, right


def mount_cgroups(hierarchies: list[tuple[str, str]]) -> None:
    """A tmpfs on /sys/fs/cgroup, then every hierarchy (``DIR=OPTS``; OPTS ``cgroup2`` for the
    unified one), then the tmpfs read-only as on a host."""
    mount("-t", "tmpfs", "-o", "mode=755", "cgroup", "/sys/fs/cgroup")
    for where, options in hierarchies:
        os.makedirs(where, exist_ok=True)
        if options == "cgroup2":
            mount("-t", "cgroup2", "cgroup2", where)
        else:
            mount("-t", "cgroup", "-o", options, "cgroup", where)
    mount("-o", "remount,ro,bind", "/sys/fs/cgroup")


def apply_mounts(args: argparse.Namespace) -> None:
    # Held open first: a source under /run is hidden once the tmpfs is mounted there.
    sources = [os.open(source, os.O_PATH | os.O_DIRECTORY) for source, _ in args.bind]
    if args.cgroup:
        mount_cgroups(args.cgroup)
    for sysctl, source in args.mask:
        mount("--bind", source, sysctl)
    for where in args.tmpfs:
        mount("-t", "tmpfs", "-o", "mode=755,size=512m", "calab-run", where)
    for fd, (_, target) in zip(sources, args.bind, strict=True):
        os.makedirs(target, exist_ok=True)  # inside a tmpfs above, or a mount point made for it
        mount("--bind", f"/proc/self/fd/{fd}", target, fds=(fd,))
        os.close(fd)


def reap_forever() -> None:
    """Reap every child (ours and orphans) until SIGTERM/SIGINT; no polling, no lost SIGCHLD."""
    wanted = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
    for sig in wanted:  # PID 1 gets a signal from outside its namespace only if it has a handler
        signal.signal(sig, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    while True:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        info = signal.sigwaitinfo(wanted)
        if info.si_signo in (signal.SIGTERM, signal.SIGINT):
            sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="k8s_init.py", description=__doc__)
    parser.add_argument("--ready", required=True, help="file to create once the mounts are made")
    parser.add_argument("--cgroup", type=pair, action="append", default=[], help="DIR=OPTS")
    parser.add_argument("--mask", type=pair, action="append", default=[], help="SYSCTL=FILE")
    parser.add_argument("--tmpfs", action="append", default=[], help="DIR")
    parser.add_argument("--bind", type=pair, action="append", default=[], help="SRC=DST")
    args = parser.parse_args(argv)
    if os.getpid() != 1:
        raise SystemExit("k8s_init: must be PID 1 of a new PID namespace (unshare --pid --fork)")
    apply_mounts(args)
    Path(args.ready).write_text(f"{os.getpid()}\n")
    reap_forever()


if __name__ == "__main__":
    main()
