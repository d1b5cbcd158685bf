"""A Kubernetes lab *host*: one PID + mount namespace inside a lab network namespace, and the
daemons started in it.

The control plane (in the core namespace) and every node are hosts. A host's first process is
:mod:`calico_lab.k8s_init` (PID 1 of the host's PID namespace, after ``ip netns exec`` and
``unshare --pid --fork --mount-proc --propagation private``); each daemon is then started with
``nsenter --net=/var/run/netns/<netns> --mount=/proc/<init>/ns/mnt --pid=/proc/<init>/ns/pid``.
nsenter forks for the PID namespace and stays the daemon's parent, in the daemon's process group:
it is the PID recorded (its command line names the lab's namespace, which
:func:`calico_lab.daemons.alive` checks), and stopping that group stops the daemon.

The machine is shared with the lab's other nodes, so what is per host is made per host: a cgroup
root ``calab-<lab>-<node>`` in every cgroup hierarchy (the kubelet's ``cgroupRoot``), removed
depth-first at teardown; and the mount points the hosts bind their own directories over
(``/opt/cni/bin``...) are made on the machine only when missing, recorded in a machine-wide
registry (:data:`REGISTRY`, every lab using them listed) and removed, when empty, by the last
Kubernetes lab to go.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from calico.lib import netns
from calico.lib.cmd import run
from calico_lab import daemons, k8s_init, k8s_state, state
from calico_lab.k8s_state import KubeHost, KubeState
from calico_lab.state import LabError, LabState

REGISTRY = Path(state.RUN_BASE) / "k8s-mount-points.json"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_TIMEOUT = 30.0


def host_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A daemon's environment: a host's plain one (nothing of the caller's leaks in)."""
    return {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(extra or {})}


def nsenter(host: KubeHost) -> list[str]:
    return [
        "nsenter",
        f"--net={netns.NETNS_RUN_DIR}/{host.netns}",
        f"--mount=/proc/{host.init_pid}/ns/mnt",
        f"--pid=/proc/{host.init_pid}/ns/pid",
        "--",
    ]


# ---- cgroups ----------------------------------------------------------------------------------


def cgroup_mounts(mountinfo: str | None = None) -> list[tuple[str, str]]:
    """The machine's cgroup hierarchies as ``(mount point, mount options)`` for k8s_init:
    ``cpu``, ``none,name=systemd``, ``cgroup2``... (from ``/proc/self/mountinfo``)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    out = []
    for line in mountinfo.splitlines():
        fields = line.split(" - ")
        if len(fields) != 2:
            continue
        where = line.split()[4]
        fstype, _, superopts = fields[1].split(" ", 2)
        if fstype == "cgroup2":
            out.append((where, "cgroup2"))
        elif fstype == "cgroup":
            opts = [o for o in superopts.split(",") if o not in ("rw", "ro")]
            if all(o.startswith("name=") for o in opts):
                opts.insert(0, "none")
            out.append((where, ",".join(opts)))
    return out


def make_cgroup_root(name: str) -> None:
    """``<hierarchy>/<name>`` in every v1 hierarchy (cpuset: with its parent's cpus and mems)."""
    for where, opts in cgroup_mounts():
        if opts == "cgroup2":
            continue
        path = Path(where) / name
        path.mkdir(exist_ok=True)
        if "cpuset" in opts.split(","):
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if not (path / knob).read_text().strip():
                    (path / knob).write_text((Path(where) / knob).read_text())


def remove_cgroup_root(name: str, *, timeout: float = 10.0) -> list[str]:
    """Remove ``<hierarchy>/<name>`` and everything below it, deepest first; what remains."""
    if not name.startswith(state.NETNS_PREFIX):
        raise LabError(f"refusing to remove cgroup {name!r}: not named {state.NETNS_PREFIX}...")
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for where, _ in cgroup_mounts():
            root = Path(where) / name
            if not root.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
            if root.is_dir():
                left.append(str(root))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)  # processes killed a moment ago are still leaving their cgroups


# ---- mount points on the machine ----------------------------------------------------------------


@contextlib.contextmanager
def _registry() -> Iterator[dict[str, list[str]]]:
    REGISTRY.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(REGISTRY.parent, os.O_RDONLY | os.O_DIRECTORY)  # no lock file left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(REGISTRY.read_text()) if REGISTRY.exists() else {}
        except ValueError:
            data = {}
        reg = {"made": list(data.get("made", [])), "labs": list(data.get("labs", []))}
        yield reg
        if reg["labs"] or reg["made"]:
            REGISTRY.write_text(json.dumps(reg, indent=1))
        else:
            REGISTRY.unlink(missing_ok=True)
    finally:
        os.close(lock)


def claim_mount_points(lab: LabState, paths: Sequence[str]) -> None:
    """Make each missing ``path`` (and missing parents), recorded before it is made."""
    with _registry() as reg:
        if lab.run_root not in reg["labs"]:
            reg["labs"].append(lab.run_root)
        for path in paths:
            missing = [p for p in [Path(path), *Path(path).parents] if not p.exists()]
            for p in reversed(missing):
                reg["made"].append(str(p))
                REGISTRY.write_text(json.dumps(reg, indent=1))  # write-ahead
                p.mkdir()


def release_mount_points(lab: LabState) -> list[str]:
    """This lab no longer uses the mount points; the last lab removes those made (when empty).
    Returns what could not be removed."""
    left = []
    with _registry() as reg:
        if lab.run_root in reg["labs"]:
            reg["labs"].remove(lab.run_root)
        if not reg["labs"]:
            for path in reversed(reg["made"]):
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    left.append(f"{path} ({exc.strerror})")
            reg["made"] = []
    return left


# ---- the host's init and daemons ---------------------------------------------------------------


def init_alive(host: KubeHost) -> bool:
    """The recorded init still runs (a child of the recorded unshare, running k8s_init)."""
    if host.init_pid <= 0 or not daemons.alive(host.unshare_pid):
        return False
    try:
        stat = Path(f"/proc/{host.init_pid}/stat").read_text()
        cmdline = Path(f"/proc/{host.init_pid}/cmdline").read_bytes()
    except OSError:
        return False
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return ppid == host.unshare_pid and b"k8s_init.py" in cmdline


def _child_of(pid: int) -> int:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def start_init(lab: LabState, ks: KubeState, name: str, *, init_args: list[str]) -> KubeHost:
    """The host's PID 1 (unless running); ``init_args``: k8s_init's mount options."""
    host = ks.hosts[name]
    if init_alive(host):
        return host
    hdir = k8s_state.host_dir(lab, name)
    ready = hdir / "init.ready"
    ready.unlink(missing_ok=True)
    unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--propagation", "private"]
    argv = [*unshare, sys.executable, "-I", "-S", k8s_init.__file__, "--ready", str(ready)]
    host.unshare_pid = daemons.spawn(
        [*argv, *init_args], netns=host.netns, log_file=hdir / "log" / "init.log"
    )
    host.init_pid = 0
    k8s_state.save(lab, ks)

    def up() -> bool:
        if not daemons.alive(host.unshare_pid):
            raise LabError(f"{name}: the host's init exited; see {hdir / 'log' / 'init.log'}")
        return ready.exists()

    daemons.wait_until(up, timeout=INIT_TIMEOUT, interval=0.05, what=f"{name}'s init")
    host.init_pid = _child_of(host.unshare_pid)
    k8s_state.save(lab, ks)
    if not init_alive(host):
        raise LabError(f"{name}: cannot find the host's init (PID 1) below {host.unshare_pid}")
    return host


def ensure_daemon(
    lab: LabState,
    ks: KubeState,
    name: str,
    daemon: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Start ``argv`` in host ``name`` unless the recorded one runs; True when started now."""
    host = ks.hosts[name]
    if daemons.alive(host.daemons.get(daemon, 0)):
        return False
    pid = daemons.spawn(
        [*nsenter(host), *argv],
        netns=None,  # nsenter enters the host's namespaces itself
        log_file=k8s_state.log_file(lab, name, daemon),
        env=host_env(env),
    )
    host.daemons[daemon] = pid
    k8s_state.save(lab, ks)
    return True


def run_in(host: KubeHost, argv: Sequence[str], *, timeout: float = 120) -> str:
    """Run a command in the host's namespaces; its stdout."""
    return run([*nsenter(host), *argv], timeout=timeout).stdout


def stop(host: KubeHost, order: Sequence[str] = ()) -> None:
    """Stop the daemons (``order`` first, then the rest), then the init: the kernel ends
    whatever is left in the host's PID namespace (containers, shims), and its mounts go."""
    names = [d for d in order if d in host.daemons] + [d for d in host.daemons if d not in order]
    for daemon in names:
        daemons.stop(host.daemons[daemon], grace=10)
    if init_alive(host):
        os.kill(host.init_pid, signal.SIGKILL)
    daemons.stop(host.unshare_pid, grace=5)
