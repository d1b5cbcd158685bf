"""What a cluster's pods cost the agent: its start, and each pod added and deleted, 10k pods.

    .venv/bin/python -m bench.agent_pods [--pods 10000] [--churn 300] [--reps 3]

World: a node namespace with etcd (``bench/agentnode.py``) holding ``--pods`` pods on 100 other
nodes, written as the CNI plugin writes them: each pod's address assigned by Calico IPAM
(``ipam.atomic.assign``, the CNI's call) in one transaction with its WorkloadEndpoint, so etcd
holds Calico's records (an IPAM block per 64 addresses, its affinity, a handle per pod); 10 local
endpoints and 100 policies as in ``bench.agent_memory`` (so remote pods are IP set members).
The agent runs as shipped (``ETCD_ENDPOINTS``, ``NODENAME``). Its CPU time comes from /proc
(utime + stime up to ready; for changes, the scheduler's run time of its threads, which per-tick
accounting would miss on a busy machine), the bytes it read from its TCP connections'
``bytes_received`` (``ss``: etcd's answers).

* ``start``: exec to /readiness (``--reps`` starts): CPU seconds, wall time, RSS. Baseline, same
  run: a second etcd holding only the same WorkloadEndpoints and policies (no IPAM records).
* ``pod``: ``--churn`` pods added then deleted on other nodes, the CNI's way (add: the IPAM
  transaction with the endpoint; delete: ``atomic.release`` with the endpoint as a guard, one
  transaction), against the running agent; its CPU and bytes read until it is idle again (no
  CPU for 1 s), per pod. Baseline, same agent: as many endpoints put and deleted without IPAM
  records.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import agentnode, results
from bench.agent_memory.__main__ import GROUPS, LOCAL, POLICIES, policy, wep
from calico.datastore.backend import Backend
from calico.ipam import atomic, keys
from calico.model import kinds

NODES = 100
POOL = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "pods"},
    "spec": {"cidr": "10.64.0.0/14", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"},
}
TICK = os.sysconf("SC_CLK_TCK")


def agent_cpu(pid: int) -> float:
    """CPU seconds the process has used, its exited threads included (accounted per tick)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def agent_run_ns(pid: int) -> int:
    """Nanoseconds on a CPU of the process's live threads (the scheduler's own count: exact,
    where per-tick accounting misses short bursts on a busy machine)."""
    return sum(int(t.read_text().split()[0]) for t in Path(f"/proc/{pid}/task").glob("*/schedstat"))


def agent_received(node: agentnode.Node, pid: int) -> int:
    """Bytes the agent's open TCP connections have received (``ss``: etcd's answers)."""
    out = agentnode.sh("ip", "netns", "exec", node.ns, "ss", "-tinpH")
    total, mine = 0, False
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):  # a socket's line; its details follow
            mine = f"pid={pid}," in line
        elif mine:
            total += sum(int(f.split(":")[1]) for f in line.split()
                         if f.startswith("bytes_received:"))  # fmt: skip
    return total


def pod_wep(i: int, ip: str) -> dict[str, Any]:
    obj = wep(i, f"node-{i % NODES:03d}")
    obj["spec"]["ipNetworks"] = [f"{ip}/32"]
    obj["spec"]["containerID"] = f"c{i}"
    return obj


def wep_key(obj: dict[str, Any]) -> str:
    return agentnode.key(obj)


class Pods:
    """Pods added and deleted the CNI plugin's way, through one etcd client."""

    def __init__(self, etcd: Backend) -> None:
        self.etcd = etcd
        self.cache = atomic.Cache()

    def add(self, i: int) -> None:
        host = f"node-{i % NODES:03d}"

        def endpoint(ips: list[str]) -> dict[str, str]:
            obj = pod_wep(i, ips[0])
            return {wep_key(obj): json.dumps(obj)}

        atomic.assign(self.etcd, handle_id=f"k8s-pod-network.c{i}", host=host, cache=self.cache,
                      attrs={"node": host, "namespace": "default", "pod": f"pod{i}"},
                      extra=endpoint)  # fmt: skip

    def delete(self, i: int) -> None:
        key = wep_key(wep(i, f"node-{i % NODES:03d}"))
        kv = self.etcd.get(key)
        handle = self.etcd.get(keys.handle_key(f"k8s-pod-network.c{i}"))
        atomic.release(self.etcd, handle, guards={key: kv.mod_revision} if kv else {},
                       cache=self.cache, host=f"node-{i % NODES:03d}")  # fmt: skip


def build(node: agentnode.Node) -> None:
    """What both worlds share: the pool, the policies and the local endpoints."""
    ifaces = [f"calim{i:010d}" for i in range(LOCAL)]
    node.add_dummy_ifaces(ifaces)
    objs = [POOL, *(policy(i) for i in range(POLICIES))]
    objs += [wep(10**6 + i, agentnode.NODENAME, iface) for i, iface in enumerate(ifaces)]
    node.bulk_put(objs)


def add_pods(node: agentnode.Node, n: int) -> dict[int, str]:
    """``n`` pods the CNI's way; their addresses."""

    def add_all() -> dict[int, str]:
        pods = Pods(node.client.backend)
        for i in range(n):
            pods.add(i)
        kvs, _ = node.client.backend.get_prefix(kinds.KINDS["WorkloadEndpoint"].prefix())
        specs = [json.loads(kv.value)["spec"] for kv in kvs]
        return {int(s["pod"][3:]): s["ipNetworks"][0].split("/")[0] for s in specs
                if s["node"] != agentnode.NODENAME}  # fmt: skip

    return node.thread.call(add_all)


def wait_idle(pid: int, quiet: float = 1.0, timeout: float = 120) -> int:
    """Wait until the agent used (almost) no CPU for ``quiet`` s; its run time then (ns)."""
    deadline = time.monotonic() + timeout
    last, since = agent_run_ns(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = agent_run_ns(pid)
        if now - last > 2_000_000:  # its idle loop wakes up now and then: µs, not ms
            since = time.monotonic()
        last = now
        if time.monotonic() - since >= quiet:
            return now
    raise TimeoutError("the agent did not go idle")


def start(node: agentnode.Node) -> dict[str, float]:
    node.start_agent()
    assert node.agent is not None
    ready = node.wait_ready()
    cpu = agent_cpu(node.agent.pid)
    rss = next(int(x.split()[1]) for x in Path(f"/proc/{node.agent.pid}/status").read_text()
               .splitlines() if x.startswith("VmRSS:"))  # fmt: skip
    return {"ready_s": ready, "cpu_s": cpu, "rss_mb": rss / 1024}


def churn(node: agentnode.Node, writes: Callable[[], None], pods: int) -> dict[str, float]:
    """Per pod: the agent's CPU ms and KB read while ``writes`` runs and until it is idle."""
    assert node.agent is not None
    pid = node.agent.pid
    cpu0, read0 = wait_idle(pid), agent_received(node, pid)
    node.thread.call(writes)
    cpu1 = wait_idle(pid)
    read = agent_received(node, pid) - read0
    return {"cpu_ms": (cpu1 - cpu0) / 1e6 / pods, "read_kb": read / 1024 / pods}


def brief(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in d.items())


def cni_way(cni: Pods, ids: range) -> Callable[[], None]:
    def writes() -> None:
        for i in ids:
            cni.add(i)
        for i in ids:
            cni.delete(i)

    return writes


def weps_only(node: agentnode.Node, ids: range) -> Callable[[], None]:
    objs = [pod_wep(i, f"10.68.{i // 256 % 256}.{i % 256}") for i in ids]

    def writes() -> None:  # on the node's thread already: its client directly
        for o in objs:
            node.client.apply(o, validate=False)
        for o in objs:
            node.client.delete("WorkloadEndpoint", o["metadata"]["name"], "default")

    return writes


Samples = dict[str, list[dict[str, float]]]  # "ipam" (measured) / "bare" (baseline) -> reps


def run(args: argparse.Namespace) -> tuple[Samples, Samples]:
    nss = agentnode.Namespaces()
    starts: Samples = {"ipam": [], "bare": []}
    pods: Samples = {"ipam": [], "bare": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pods-") as tmp:
            t0 = time.monotonic()
            full = agentnode.Node(nss, Path(tmp) / "ipam")
            build(full)
            addresses = add_pods(full, args.pods)
            print(f"{args.pods} pods written the CNI's way in {time.monotonic() - t0:.0f} s",
                  flush=True)  # fmt: skip
            bare = agentnode.Node(nss, Path(tmp) / "bare")
            build(bare)
            bare.bulk_put([pod_wep(i, ip) for i, ip in addresses.items()])
            cni = Pods(full.client.backend)
            for rep in range(args.reps):
                starts["bare"].append(start(bare))
                bare.stop_agent()
                starts["ipam"].append(start(full))
                ids = range(args.pods + rep * args.churn, args.pods + (rep + 1) * args.churn)
                pods["ipam"].append(churn(full, cni_way(cni, ids), args.churn))
                pods["bare"].append(churn(full, weps_only(full, ids), args.churn))
                full.stop_agent()
                print(f"rep {rep}: start {brief(starts['ipam'][-1])} (WEPs only "
                      f"{brief(starts['bare'][-1])}); per pod {brief(pods['ipam'][-1])} "
                      f"(WEPs only {brief(pods['bare'][-1])})", flush=True)  # fmt: skip
            full.close()
            bare.close()
    finally:
        nss.cleanup()
    return starts, pods


def record(rec: results.Recorder, args: argparse.Namespace, starts: Samples, pods: Samples
           ) -> None:  # fmt: skip
    for field, unit, what in (("cpu_s", "s", "CPU"), ("ready_s", "s", "wall time"),
                              ("rss_mb", "MB", "RSS at ready")):  # fmt: skip
        rec.figure(
            f"start_{field}", title=f"agent start to ready, {args.pods:,} pods: {what}",
            unit=unit, samples=[s[field] for s in starts["ipam"]],
            baseline=[s[field] for s in starts["bare"]],
            baseline_title="the same endpoints, no IPAM records", better="lower",
            doc="docs/design/agent.md",
        )  # fmt: skip
    for field, unit, what in (("cpu_ms", "ms", "CPU"), ("read_kb", "KB", "bytes read")):
        rec.figure(
            f"pod_{field}", title=f"agent {what} per pod added and deleted, {args.pods:,} pods",
            unit=unit, samples=[p[field] for p in pods["ipam"]],
            baseline=[p[field] for p in pods["bare"]],
            baseline_title="endpoint put and delete only", better="lower",
            doc="docs/design/agent.md",
        )  # fmt: skip
    rec.fact("world", f"{args.pods} pods on {NODES} nodes via IPAM, {LOCAL} local, "
             f"{POLICIES} policies over {GROUPS} label groups; churn {args.churn}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--churn", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rec = results.Recorder("agent_pods")
    record(rec, args, *run(args))
    rec.save()


if __name__ == "__main__":
    main()
