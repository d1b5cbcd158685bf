"""Support for the calico-lab end-to-end tests: a lab handle and a connectivity-matrix checker.

``LabHandle`` drives one lab both ways: through the ``calico-lab`` command (as a user would) and
in-process through the same modules the command uses (faster for many small steps).
``Reachability`` is the expected matrix, written per scenario as a rule ``allowed(src, dst, port,
proto)``; the check re-probes until the actual matrix equals it (policy takes effect
asynchronously) and on failure shows both.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from calico_lab import cluster, objects, pods, probe, state
from calico_lab.state import LabState

CALICO_LAB = str(Path(sys.executable).parent / "calico-lab")
Target = tuple[int, str]
Matrix = dict[str, dict[str, bool]]
Rule = Callable[[str, str, int, str], bool]


# Three pods pinned to node1, node2, node3 (the topology and encapsulation tests).
POD_ON_NODE = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 53, protocol: UDP}}]}}]
"""


def pods_on(*nodes: str) -> str:
    """One pod per node, named a, b, c, ... in order, each serving TARGETS."""
    names = "abcdefghijklmnopqrstuvwxyz"
    return "---".join(POD_ON_NODE.format(name=names[i], node=n) for i, n in enumerate(nodes))


PODS_ON_NODES = pods_on("node1", "node2", "node3")
TARGETS = [(8080, "TCP"), (53, "UDP")]  # what PODS_ON_NODES serve


@contextlib.contextmanager
def lab_root(path: Path) -> Iterator[Path]:
    """``CALICO_LAB_ROOT`` set to ``path`` (where the labs of a module or session live) for the
    ``with`` block, restored after."""
    old = os.environ.get("CALICO_LAB_ROOT")
    os.environ["CALICO_LAB_ROOT"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("CALICO_LAB_ROOT", None)
        else:
            os.environ["CALICO_LAB_ROOT"] = old


def unique_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


class LabHandle:
    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CALICO_LAB_ROOT": str(self.root), "CALICO_LAB": self.name}

    def cli(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [CALICO_LAB, *args],
            env=self.env,
            input=input,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"calico-lab {' '.join(args)}: exit {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def state(self) -> LabState:
        return state.require(self.name)

    # ---- in-process control plane (same code as `calico-lab apply/delete/label`) -----------

    def apply(self, text: str) -> list[str]:
        out: list[str] = []
        with cluster.session(self.name) as (lab, store):
            objects.apply(lab, store, objects.parse(text), out.append)
        return out

    def delete(self, text: str) -> list[str]:
        out: list[str] = []
        with cluster.session(self.name) as (lab, store):
            objects.delete(lab, store, objects.parse(text), out.append)
        return out

    def label_pod(self, key: str, changes: dict[str, str | None]) -> None:
        with cluster.session(self.name) as (lab, store):
            pods.relabel(lab, store, key, changes)

    def label_namespace(self, name: str, changes: dict[str, str | None]) -> None:
        with cluster.session(self.name) as (lab, store):
            objects.relabel_namespace(lab, store, name, changes)

    def matrices(
        self, targets: list[Target], *, timeout: float = 1.0, namespaces: list[str] | None = None
    ) -> dict[Target, Matrix]:
        return probe.matrices(self.state(), targets, timeout=timeout, namespaces=namespaces)


@contextlib.contextmanager
def running_lab(root: Path, prefix: str, *up_args: str) -> Iterator[LabHandle]:
    """A lab named ``<prefix><hex>`` brought up with ``calico-lab up <up_args> --quiet`` under
    ``root`` (``CALICO_LAB_ROOT`` for the block), its handle for the block, and ``down`` after it
    however the block ends."""
    with lab_root(root):
        handle = LabHandle(unique_name(prefix), root)
        try:
            handle.cli("up", *up_args, "--quiet")
            yield handle
        finally:
            handle.cli("down", "--quiet", check=False)


def expected(pods_: list[str], targets: list[Target], rule: Rule) -> dict[Target, Matrix]:
    """The full expected matrices; a pod always reaches itself (loopback, as in Kubernetes)."""
    return {
        (port, proto): {s: {d: s == d or rule(s, d, port, proto) for d in pods_} for s in pods_}
        for port, proto in targets
    }


def diff_text(want: dict[Target, Matrix], got: dict[Target, Matrix]) -> str:
    lines = []
    for target, matrix in want.items():
        for src, row in matrix.items():
            for dst, ok in row.items():
                actual = got.get(target, {}).get(src, {}).get(dst)
                if actual != ok:
                    lines.append(
                        f"  {target[1]}/{target[0]} {src} -> {dst}: expected "
                        f"{'allow' if ok else 'deny'}, got "
                        f"{'allow' if actual else 'deny'}"
                    )
    return "\n".join(lines)


def check(
    handle: LabHandle,
    want: dict[Target, Matrix],
    *,
    within: float = 30.0,
    namespaces: list[str] | None = None,
) -> None:
    """Probe until the matrices equal ``want``; fail listing every wrong cell."""
    deadline = time.monotonic() + within
    targets = list(want)
    while True:
        got = handle.matrices(targets, namespaces=namespaces)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"connectivity differs from the expectation after {within}s:\n"
                + diff_text(want, got)
            )
        time.sleep(0.5)


def outside_answer(
    handle: LabHandle, src: str, protocol: str = "TCP", *, within: float = 15.0
) -> str | None:
    """What the outside host answers ``src`` (a pod or node): the source address it saw. Asked
    again until it answers or ``within`` runs out (the agent programs masquerade asynchronously);
    None when it never answered."""
    deadline = time.monotonic() + within
    while True:
        seen = probe.probe_outside(handle.state(), src, port=80, protocol=protocol, timeout=0.5)
        if seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def calico_node_reads(name: str) -> bool:
    """Whether calico-node's code mentions ``name`` (an environment variable or a Node field):
    how a test finds out that a feature it needs from calico-node exists yet."""
    import calico.node

    package = Path(calico.node.__file__).parent
    return any(name in f.read_text() for f in package.glob("*.py"))


def has_link(ns: str, dev: str) -> bool:
    argv = ["ip", "-n", ns, "link", "show", "dev", dev]
    proc = subprocess.run(argv, capture_output=True, check=False)
    return proc.returncode == 0


def missing_link_type(kind: str) -> str:
    """ "" when the kernel can make a ``kind`` link (tried in a scratch namespace), else why not."""
    ns = f"calt-linktype-{os.getpid()}-{secrets.token_hex(3)}"  # pid: spared by other sweeps
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = subprocess.run(
            ["ip", "-n", ns, "link", "add", "probe0", "type", kind],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    return "" if proc.returncode == 0 else proc.stderr.strip() or f"exit {proc.returncode}"


def lab_pids(lab: LabState) -> list[int]:
    pids = [
        lab.etcd_pid,
        lab.apiserver_pid,
        lab.outside_pid,
        lab.typha_pid,
        *(n.pid for n in lab.nodes),
        *(p.responder_pid for p in lab.pods.values()),
    ]
    return [p for p in pids if p > 0]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose argv contains ``text``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and pid_alive(int(proc.name)):
            out.append(f"{proc.name}: {cmd}")
    return out


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.split()}


def root_links() -> set[str]:
    """The root namespace's network state as comparable lines: links, addresses, routes (every
    table) and nft tables. Read only; a lab must leave all of it as it found it."""

    def ip_json(*argv: str) -> list[dict[str, Any]]:
        out = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True)
        data: list[dict[str, Any]] = json.loads(out.stdout or "[]")
        return data

    found = {f"link {link['ifname']}" for link in ip_json("link", "show")}
    found |= {
        f"addr {link['ifname']} {a['local']}/{a['prefixlen']}"
        for link in ip_json("addr", "show")
        for a in link.get("addr_info", [])
    }
    found |= {
        f"route{v} {r.get('table', 'main')} {r.get('type', '')} {r['dst']} "
        f"{r.get('gateway', '')} {r.get('dev', '')}"
        for v in ("-4", "-6")
        for r in ip_json(v, "route", "show", "table", "all")
    }
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return found | {f"nft {line}" for line in nft.stdout.splitlines()}


def leftovers(name: str, root: Path, recorded_netns: list[str], pids: list[int]) -> list[str]:
    """Everything of lab ``name`` still present after ``down`` (empty list = clean)."""
    found = [f"netns {ns}" for ns in recorded_netns if ns in netns_names()]
    found += [
        f"netns {ns} (by prefix)" for ns in netns_names() if ns.startswith(state.netns_prefix(name))
    ]
    found += [f"pid {p}" for p in pids if pid_alive(p)]
    found += [f"process {c}" for c in processes_mentioning(str(root / name))]
    run_root = Path(state.run_root_for(name))  # CALICO_LAB_ROOT must name ``root`` here
    if run_root.exists():
        found.append(f"dir {run_root}")
    if (root / name).exists():
        found.append(f"dir {root / name}")
    if (root / f"{name}.lock").exists():
        found.append(f"file {root / name}.lock")
    return found
