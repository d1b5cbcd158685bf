"""CNI ADD/DEL latency: our ``calico`` + ``calico-ipam`` vs Debian's Go ``ptp`` + ``host-local``.

    .venv/bin/python -m bench.cni_latency [-n 30]

Everything runs inside one throwaway "node" namespace (``calt-bench-<pid>-node``), never the root
one: the outer process makes the namespaces, then re-runs itself inside the node namespace with
``ip netns exec``; there it starts etcd on 127.0.0.1, creates an IPPool and execs each plugin
directly (one fresh process per call, as a runtime does), rotating who goes first so all see the
same noise. Each ADD gets a fresh pod namespace. Contenders: "py" (the Python launchers, no CNI
server: every call runs in the fresh process), "c-nosrv" (the compiled launcher with no server
listening: it execs the Python launcher, what a node without the server runs), "c+server" and
"py+server" (the compiled / the Python launchers with ``calico.cni.server`` running: calls are
handed to it over a Unix socket; their calls use their own node name, as a node's calls all go
through its one server) and "ref" (ptp + host-local); "c+server-ds" is "c+server" with dual-stack
pods (an IPv4 and an IPv6 address each), compared with the IPv4 reference: ptp's own dual-stack
ADD waits for IPv6 duplicate address detection (≈ 1.7 s here), which would say nothing;
"c+server-k8s" is "c+server" for Kubernetes pods with the pod lookup on: a kubeconfig naming the
tests' fake API server (HTTPS with a throwaway CA and a bearer token, on the node namespace's
127.0.0.1), as the kubelet's calls do in a real cluster.
Prints median and p90 per contender and command, the ratios to the reference, a served VERSION
call per launcher (the launcher + socket floor) and the server's per-phase medians (from its
log: ``[prep 0.1, ipam 3.6, ...]``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results
from calico.lib import cmd as lib_cmd

DEBIAN_CNI = "/usr/lib/cni"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def call(
    plugin: str, command: str, conf: dict[str, object], cid: str, netns: str, cni_path: str,
    args: str = "",
) -> float:  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": cni_path,
        "CNI_ARGS": args,
    }
    data = json.dumps(conf).encode()
    start = time.perf_counter()
    proc = lib_cmd.run_process([plugin], input=data, env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{plugin} {command} failed: {proc.stdout!r} {proc.stderr!r}")
    return elapsed


NODE_SETUP = (
    "link add eth0 type veth peer name uplink0\nlink set eth0 up\nlink set uplink0 up\n"
    "addr add 10.99.0.1/24 dev eth0\nroute add default via 10.99.0.254 dev eth0 onlink\n"
)
CONTENDERS = ("py", "c-nosrv", "c+server", "py+server", "ref", "c+server-ds", "c+server-k8s")
OURS = ("py", "c-nosrv", "c+server", "py+server", "c+server-ds", "c+server-k8s")
K8S_NS = "bench"


def k8s_args(contender: str, pod: str) -> str:
    """CNI_ARGS of a Kubernetes pod for the contender that looks pods up, else none."""
    return f"K8S_POD_NAMESPACE={K8S_NS};K8S_POD_NAME={pod}" if contender.endswith("-k8s") else ""


def start_fake_kube(tmp: str, n: int) -> tuple[Any, Path]:
    """The tests' fake API server over HTTPS (a throwaway CA, a bearer token) on this
    namespace's 127.0.0.1, holding the pods the "-k8s" contender's calls look up."""
    from tests.fakekube.server import FakeKube

    fake = FakeKube(tls_dir=Path(tmp) / "kube-tls", token="bench-token").start()
    fake.create("namespaces", {"metadata": {"name": K8S_NS}})
    for i in [*range(n), "warm"]:
        fake.create("pods", {"metadata": {"name": f"pod-{i}", "namespace": K8S_NS,
                                          "labels": {"app": "bench"}}, "spec": {}})  # fmt: skip
    return fake, fake.write_kubeconfig(Path(tmp) / "kubeconfig")


def start_cni_server(src: str, socket_path: Path, log: Path) -> subprocess.Popen[bytes]:
    code = (
        f"import sys; sys.path.insert(0, {src!r}); from calico.cni.server import main; "
        f"main(['--socket', {str(socket_path)!r}])"
    )
    with open(log, "wb") as f:
        proc = lib_cmd.start([sys.executable, "-c", code], stderr=f)
    for _ in range(500):
        if socket_path.exists():
            return proc
        time.sleep(0.01)
    proc.kill()
    raise SystemExit("the CNI server did not start")


def in_netns(name: str) -> bool:
    """Whether this process is inside the named namespace (same inode as its bind mount)."""
    try:
        want = os.stat(f"/var/run/netns/{name}")
    except OSError:
        return False
    own = os.stat("/proc/self/ns/net")
    return (own.st_dev, own.st_ino) == (want.st_dev, want.st_ino)


Contenders = dict[str, tuple[str, dict[str, object]]]  # name -> (plugin executable, its conf)


def inner(n: int, node: str, pods: list[str], etcd_dir: str | None) -> None:
    """Runs inside the node namespace (and refuses to run anywhere else: it adds links, an
    address and a default route to the namespace it is in)."""
    if not node.startswith("calt-bench-") or "/" in node or not in_netns(node):
        raise SystemExit(f"--inner runs only inside the benchmark's node namespace, not {node!r}")
    src = str(Path(__file__).resolve().parents[2] / "src")
    sys.path.insert(0, src)
    from calico.datastore.etcd_server import EtcdServer

    lib_cmd.run_process(["ip", "link", "set", "lo", "up"], check=True)
    lib_cmd.run_process(["ip", "-batch", "-"], check=True, text=True, input=NODE_SETUP)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=etcd_dir) as edir:
        etcd = EtcdServer(Path(edir) / "etcd", port=23790, peer_port=23791)
        etcd.start()
        cni_server = None
        fake_kube = None
        try:
            _create_pools(etcd.endpoint)
            cni_server = start_cni_server(src, Path(tmp) / "cni.sock", Path(tmp) / "server.log")
            fake_kube, kubeconfig = start_fake_kube(tmp, n)
            exes = _install_contenders(Path(tmp), etcd.endpoint, kubeconfig)
            cni_path = f"{Path(tmp) / 'bin'}:{DEBIAN_CNI}"
            times = _measure(exes, n, pods, cni_path)
            # the floor of a served call: launcher start + socket round trip + a no-op VERSION
            floor = {c: [call(exes[c][0], "VERSION", exes[c][1], "v", "", cni_path)
                         for _ in range(20)] for c in ("c+server", "py+server")}  # fmt: skip
            phases = server_times((Path(tmp) / "server.log").read_text())
        finally:
            if cni_server is not None:
                cni_server.terminate()
                cni_server.wait(10)
            if fake_kube is not None:
                fake_kube.stop()
            etcd.stop()
    report(n, times, etcd_dir)
    for c, values in floor.items():
        print(
            f"a served VERSION call, {c} (launcher + socket floor): "
            f"median {statistics.median(values):.1f} ms (p90 {pct(values, 0.9):.1f})"
        )
    for cmd, by_phase in phases.items():
        if not by_phase:
            continue
        total = statistics.median(by_phase.pop("total"))
        detail = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in by_phase.items())
        print(
            f"inside the CNI server, {cmd}: median {total:.1f} ms ({detail}; the rest of "
            f"a served call is the launcher process and the socket)"
        )


def _create_pools(endpoint: str) -> None:
    from calico.datastore.client import Client
    from calico.datastore.etcd import EtcdClient

    for name, cidr in (("bench", "10.96.0.0/16"), ("bench6", "fd96::/64")):
        Client(EtcdClient(endpoint)).create(
            {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
             "metadata": {"name": name}, "spec": {"cidr": cidr}},
            validate=False,
        )  # fmt: skip


def _install_contenders(tmp: Path, etcd_endpoint: str, kubeconfig: Path) -> Contenders:
    """Each contender's plugin, installed under ``tmp``, and its network configuration."""
    from calico.cni import install

    plain, nosrv = tmp / "bin", tmp / "bin-nosrv"
    served, pyserved = tmp / "bin-server", tmp / "bin-pyserver"
    sock = str(tmp / "cni.sock")
    install.install_binaries(plain, socket_path="")
    install.install_binaries(nosrv, socket_path=str(tmp / "nobody.sock"))
    install.install_binaries(served, socket_path=sock)
    install.install_binaries(pyserved, socket_path=sock, compiled=False)
    if install.launcher_kind(served / "calico") != "compiled":
        raise SystemExit("no C compiler: the compiled launcher was not built")
    ours_conf = install.conf(etcd_endpoints=etcd_endpoint, nodename="bench",
                             cni_version="1.0.0", name="bench")  # fmt: skip
    ref_conf = {"cniVersion": "1.0.0", "name": "bench", "type": "ptp",
                "ipam": {"type": "host-local", "subnet": "10.97.0.0/16",
                         "dataDir": str(tmp / "host-local")}}  # fmt: skip
    # a node's calls all go through its server: "py" allocating from the same host's
    # blocks would only make the server's remembered block revisions miss
    served_conf = {**ours_conf, "nodename": "bench-served"}
    ds_conf = {**served_conf, "ipam": {"type": "calico-ipam", "assign_ipv6": "true"}}
    k8s_conf = {**served_conf, "policy": {"type": "k8s"},
                "kubernetes": {"kubeconfig": str(kubeconfig)}}  # fmt: skip
    return {"py": (str(plain / "calico"), ours_conf),
            "c-nosrv": (str(nosrv / "calico"), ours_conf),
            "c+server": (str(served / "calico"), served_conf),
            "py+server": (str(pyserved / "calico"), served_conf),
            "ref": (f"{DEBIAN_CNI}/ptp", ref_conf),
            "c+server-ds": (str(served / "calico"), ds_conf),
            "c+server-k8s": (str(served / "calico"), k8s_conf)}  # fmt: skip


def _measure(exes: Contenders, n: int, pods: list[str], cni_path: str) -> dict[str, list[float]]:
    """ADD and DEL times (ms) per contender over ``n`` rounds, after one warm-up call each;
    each round rotates who goes first."""
    times: dict[str, list[float]] = {f"{c} {cmd}": [] for c in CONTENDERS for cmd in ("ADD", "DEL")}
    warm = "/var/run/netns/" + pods[-1]
    for c in OURS:  # first block claim, caches
        exe, conf = exes[c]
        call(exe, "ADD", conf, "warm", warm, cni_path, k8s_args(c, "pod-warm"))
        call(exe, "DEL", conf, "warm", warm, cni_path, k8s_args(c, "pod-warm"))
    for i in range(n):
        k = i % len(CONTENDERS)
        order = list(CONTENDERS[k:] + CONTENDERS[:k])  # rotate who goes first
        netns = {
            c: "/var/run/netns/" + pods[len(CONTENDERS) * i + j] for j, c in enumerate(CONTENDERS)
        }
        for cmd in ("ADD", "DEL"):
            for c in order:
                exe, conf = exes[c]
                cid = f"{c.replace('+', '-')}-{i}"
                args = k8s_args(c, f"pod-{i}")
                times[f"{c} {cmd}"].append(call(exe, cmd, conf, cid, netns[c], cni_path, args))
    return times


def server_times(log: str) -> dict[str, dict[str, list[float]]]:
    """{"ADD": {"total": [ms...], "<phase>": [...]}, "DEL": ...} from the server's log lines
    ("served calico ADD c1 rc=0 (12.3 ms) [prep 0.4, ipam 3.1, ...]")."""
    kinds = ("ADD", "DEL", "ADD ds", "DEL ds", "ADD k8s", "DEL k8s")
    out: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    for line in log.splitlines():
        m = re.match(r"served calico (ADD|DEL) (\S+) rc=0 \(([\d.]+) ms\)(?: \[(.*)\])?", line)
        if not m or m[2] == "warm":
            continue  # container ids are unique per contender ("c-server-3"): no collisions
        kind = f"{m[1]} ds" if "-ds-" in m[2] else f"{m[1]} k8s" if "-k8s-" in m[2] else m[1]
        out[kind].setdefault("total", []).append(float(m[3]))
        for item in (m[4] or "").split(", "):
            name, _, ms = item.rpartition(" ")
            if name:
                out[kind].setdefault(name, []).append(float(ms))
    return out


def report(n: int, times: dict[str, list[float]], etcd_dir: str | None) -> None:
    floor = []
    for _ in range(10):
        start = time.perf_counter()
        lib_cmd.run_process([sys.executable, "-IS", "-c", "pass"], check=True)
        floor.append((time.perf_counter() - start) * 1000)
    where = f"etcd data in {etcd_dir or tempfile.gettempdir()}"
    print(f"CNI latency, {n} pods each, ms (a fresh process per call, in a node netns; {where})")
    print(f"{'':16} {'median':>8} {'p90':>8}")
    for k, v in times.items():
        print(f"{k:16} {statistics.median(v):8.1f} {pct(v, 0.9):8.1f}")
    for c in OURS:
        for cmd in ("ADD", "DEL"):
            ratio = statistics.median(times[f"{c} {cmd}"]) / statistics.median(times[f"ref {cmd}"])
            print(f"ratio {c}/ref {cmd} (median): {ratio:.2f}")
    print(f"python -IS -c pass (interpreter floor): median {statistics.median(floor):.1f} ms")
    rec = results.Recorder("cni_latency")
    for c in OURS:
        for cmd in ("ADD", "DEL"):
            rec.figure(
                f"{c}_{cmd}", title=f"CNI {cmd}, {c}", unit="ms", samples=times[f"{c} {cmd}"],
                baseline=times[f"ref {cmd}"], baseline_title="Go ptp + host-local",
                readme="CNI ADD, compiled launcher + per-node CNI server"
                if (c, cmd) == ("c+server", "ADD") else None,
                doc="docs/design/cni.md",
            )  # fmt: skip
    rec.figure("interpreter_floor", title="python -IS -c pass", unit="ms", samples=floor)
    rec.save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument(
        "--etcd-dir", default=None, help="parent dir for etcd's data (e.g. /dev/shm: no fsync cost)"
    )
    ap.add_argument("--inner", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--node", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner is not None:
        inner(args.n, args.node, args.inner, args.etcd_dir)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    tag = f"calt-bench-{os.getpid()}-{secrets.token_hex(2)}"
    node = f"{tag}-node"
    pods = [f"{tag}-p{i}" for i in range(len(CONTENDERS) * args.n + 1)]
    made = []
    try:
        for ns in [node, *pods]:
            lib_cmd.run_process(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        root = str(Path(__file__).resolve().parents[2])
        lib_cmd.run_process(
            [
                "ip",
                "netns",
                "exec",
                node,
                sys.executable,
                "-m",
                "bench.cni_latency",
                "-n",
                str(args.n),
                *(["--etcd-dir", args.etcd_dir] if args.etcd_dir else []),
                "--node",
                node,
                "--inner",
                *pods,
            ],
            check=True,
            cwd=root,
        )
    finally:
        for ns in made:
            lib_cmd.run_process(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
