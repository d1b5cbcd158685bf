"""Policy latency: from a policy write in etcd to the packet verdict changing, and agent memory.

    .venv/bin/python -m bench.policy_latency [--sizes 10,100,1000] [--reps 10] [--memory 10000]

For each (local endpoints L, policies P): a fresh node namespace with etcd and calico-felix, two
real workloads (a, b) and L-2 dummy endpoints (dummy ``cali*`` links), P policies (policy i
selects group ``i % G`` and allows from group ``i+1 % G``, G = min(L, P), so endpoint->policy
links total max(L, P)). A UDP prober in ``a`` sends one packet to ``b`` every 2 ms from a fresh
socket (a fresh conntrack flow). Each repetition writes a NetworkPolicy denying a -> b and times
until the first packet sent after the write is dropped, then deletes it and times until the first
one gets through. Baselines in the same run: the smallest size, and a full recompute (a fresh
calculation graph over the whole snapshot, plus the agent's first full nft load), i.e. what a
level-triggered agent would pay per change. Memory: agent RSS with 10,000 remote endpoints.
Runs only inside namespaces it creates (``calbench-<hex>-N``), deleted by name at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.agent.harness import NODENAME, Node, ip_batch, sh

from calico.calc.graph import CalcGraph
from calico.model import kinds

PROBER = Path(__file__).with_name("udp_prober.py")
NETNS: list[str] = []


def make_netns() -> str:
    # Not "calt-": pytest's session-start sweep removes those, even from a running bench.
    name = f"calbench-{secrets.token_hex(3)}-{len(NETNS)}"
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    NETNS.append(name)
    return name


def cleanup() -> None:
    for ns in NETNS:
        for pid in sh("ip", "netns", "pids", ns, check=False).split():
            sh("kill", "-9", pid, check=False)
        sh("ip", "netns", "del", ns, check=False)


def chunks(seq: range, n: int) -> list[range]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def dummy_wep(i: int, group: int, node: str = NODENAME, *, iface: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node}-k8s-dummy{i}-eth0",
            "namespace": "default",
            "labels": {"group": f"g{group}", "projectcalico.org/namespace": "default"},
        },
        "spec": {
            "node": node,
            "orchestrator": "k8s",
            "pod": f"dummy{i}",
            "endpoint": "eth0",
            "interfaceName": f"calid{i:010d}" if iface else "",
            "ipNetworks": [f"10.{66 + i // 65536}.{(i // 256) % 256}.{i % 256}/32"],
            "profiles": ["kns.default"],
        },
    }


def dummy_policy(i: int, groups: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"dummy-{i}", "namespace": "default"},
        "spec": {
            "order": 100 + i,
            "selector": f"group == 'g{i % groups}'",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": f"group == 'g{(i + 1) % groups}'"},
                    "destination": {"ports": [80, 443]},
                }
            ],
        },
    }


DENY = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "NetworkPolicy",
    "metadata": {"name": "bench-deny", "namespace": "default"},
    "spec": {
        "order": 1,
        "selector": "app == 'b'",
        "ingress": [{"action": "Deny", "source": {"selector": "app == 'a'"}}, {"action": "Allow"}],
    },
}


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return kinds.KINDS[obj["kind"]].key(meta["name"], meta.get("namespace"))


def bulk_put(node: Node, objs: list[dict[str, Any]]) -> None:
    etcd = node.client.etcd
    node.thread.call(lambda: [etcd.put(key(o), json.dumps(o)) for o in objs])


class Samples:
    """Reads the prober's ``<t> <ok>`` lines on a thread."""

    def __init__(self, ns: str, ip: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PROBER), ip, "53"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.rows: list[tuple[float, bool]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, ok = line.split()
            self.rows.append((float(t), ok == "1"))

    def first_after(self, t0: float, want: bool, timeout: float = 20.0) -> float:
        deadline = time.monotonic() + timeout
        start = 0
        while time.monotonic() < deadline:
            rows = self.rows
            for i in range(start, len(rows)):
                t, ok = rows[i]
                if t > t0 and ok == want:
                    return t - t0
            start = max(0, len(rows) - 1)
            time.sleep(0.01)
        raise TimeoutError(f"verdict did not become {want} within {timeout}s")

    def close(self) -> None:
        self.proc.kill()


def get(node: Node, path: str, port: int = 9099) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except OSError as exc:
            return getattr(exc, "code", 0), ""

    return node.thread.call(fetch)


def wait_ready(node: Node, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if get(node, "/readiness")[0] == 200:
            return time.monotonic() - start
        if node.agent is not None and node.agent.poll() is not None:
            raise RuntimeError("agent exited:\n" + node.log_tail())
        time.sleep(0.05)
    raise TimeoutError("agent not ready:\n" + node.log_tail())


def agent_rss_mb(node: Node) -> float:
    assert node.agent is not None
    status = Path(f"/proc/{node.agent.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def full_recompute_ms(objs: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    graph = CalcGraph(NODENAME)
    graph.on_in_sync()
    for o in objs:
        graph.on_update(key(o), o)
    graph.flush()
    return (time.perf_counter() - start) * 1000


def first_full_apply_ms(node: Node) -> float:
    m = re.search(r"applied full dataplane update in ([\d.]+) ms", node.agent_log.read_text())
    return float(m.group(1)) if m else float("nan")


def delta_applies_ms(node: Node) -> list[tuple[float, float]]:
    """(whole apply, nft part) per delta apply, from the agent's debug log."""
    found = re.findall(
        r"applied delta dataplane update in ([\d.]+) ms \(nft ([\d.]+) ms",
        node.agent_log.read_text(),
    )
    return [(float(a), float(b)) for a, b in found]


def calc_ms(node: Node) -> list[float]:
    return [
        float(x)
        for x in re.findall(r"calc graph: \d+ updates in ([\d.]+) ms", node.agent_log.read_text())
    ]


def run_size(tmp: Path, local: int, policies: int, reps: int) -> dict[str, Any]:
    node = Node(make_netns, tmp / f"{local}x{policies}", 2379)
    try:
        node.add_workload("a", "10.65.0.2", {"app": "a"})
        b = node.add_workload("b", "10.65.0.3", {"app": "b"})
        groups = max(1, min(local, policies))
        n_dummy = max(0, local - 2)
        for chunk in chunks(range(n_dummy), 500):
            ip_batch(
                node.ns,
                [
                    c
                    for i in chunk
                    for c in (
                        f"link add calid{i:010d} type veth peer name bpeer{i}",
                        f"link set calid{i:010d} up",
                    )
                ],
            )
        objs = [dummy_wep(i, i % groups) for i in range(n_dummy)]
        objs += [dummy_policy(i, groups) for i in range(policies)]
        bulk_put(node, objs)
        node.start_agent(FELIX_LOGSEVERITYSCREEN="DEBUG", FELIX_PROMETHEUSMETRICSENABLED="false")
        ready_s = wait_ready(node)
        samples = Samples(node.workloads["a"].ns, b.ip)
        samples.first_after(time.monotonic(), True)
        deny, allow = [], []
        applies_before = len(delta_applies_ms(node))
        calcs_before = len(calc_ms(node))
        for _ in range(reps):
            t0 = time.monotonic()
            node.apply(DENY)
            deny.append(samples.first_after(t0, False) * 1000)
            time.sleep(0.05)
            t0 = time.monotonic()
            node.delete("NetworkPolicy", "bench-deny", "default")
            allow.append(samples.first_after(t0, True) * 1000)
            time.sleep(0.05)
        samples.close()
        rss = agent_rss_mb(node)
        everything = [*objs, *(w.wep() for w in node.workloads.values())]
        return {
            "local": local,
            "policies": policies,
            "ready_s": ready_s,
            "deny_ms": deny,
            "allow_ms": allow,
            "delta_apply_ms": [a for a, _ in delta_applies_ms(node)[applies_before:]],
            "delta_nft_ms": [n for _, n in delta_applies_ms(node)[applies_before:]],
            "calc_ms": calc_ms(node)[calcs_before:],
            "full_apply_ms": first_full_apply_ms(node),
            "full_recompute_ms": full_recompute_ms(everything),
            "rss_mb": rss,
        }
    finally:
        node.close()


def run_memory(tmp: Path, remote: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in (0, remote):
        node = Node(make_netns, tmp / f"mem{n}", 2379)
        try:
            objs = [dummy_wep(i, i % 100, node="node2", iface=False) for i in range(n)]
            objs += [dummy_policy(i, 100) for i in range(100)]
            objs += [
                {**dummy_wep(n + i, i), "metadata": {**dummy_wep(n + i, i)["metadata"]}}
                for i in range(10)
            ]
            bulk_put(node, objs)
            for chunk in chunks(range(n, n + 10), 500):
                ip_batch(
                    node.ns,
                    [
                        c
                        for i in chunk
                        for c in (
                            f"link add calid{i:010d} type veth peer name bpeer{i}",
                            f"link set calid{i:010d} up",
                        )
                    ],
                )
            node.start_agent(FELIX_PROMETHEUSMETRICSENABLED="false")
            ready = wait_ready(node)
            time.sleep(0.5)
            out[f"rss_mb_{n}"] = agent_rss_mb(node)
            out[f"ready_s_{n}"] = ready
        finally:
            node.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--memory", type=int, default=10000)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
            for local in sizes:
                for policies in sizes:
                    r = run_size(Path(tmp), local, policies, args.reps)
                    results.append(r)
                    both = r["deny_ms"] + r["allow_ms"]
                    apply_ = statistics.median(r["delta_apply_ms"] or [0])
                    nft = statistics.median(r["delta_nft_ms"] or [0])
                    print(
                        f"L={local:>5} P={policies:>5}  verdict change median "
                        f"{statistics.median(both):6.1f} ms p90 {pct(both, 0.9):6.1f} ms"
                        " | per change: "
                        f"calc {statistics.median(r['calc_ms'] or [0]):5.2f} ms, dataplane python "
                        f"{apply_ - nft:5.2f} ms, nft {nft:6.1f} ms | full: nft load "
                        f"{r['full_apply_ms']:7.1f} ms, recompute {r['full_recompute_ms']:7.1f} ms"
                        f" | startup {r['ready_s']:4.2f} s rss {r['rss_mb']:5.1f} MB",
                        flush=True,
                    )
            mem = run_memory(Path(tmp), args.memory) if args.memory else {}
    finally:
        cleanup()
    base = statistics.median(results[0]["deny_ms"] + results[0]["allow_ms"])
    print("\nratios (median verdict change / smallest size's):")
    for r in results:
        med = statistics.median(r["deny_ms"] + r["allow_ms"])
        full = r["full_recompute_ms"] + r["full_apply_ms"]
        print(
            f"  L={r['local']:>5} P={r['policies']:>5}: x{med / base:5.2f}   "
            f"(a full recompute + reload would cost {full:8.1f} ms = x{full / med:5.2f} of it)"
        )
    if mem:
        print(
            f"\nmemory: agent RSS {mem['rss_mb_0']:.1f} MB with 0 remote endpoints, "
            f"{mem[f'rss_mb_{args.memory}']:.1f} MB with {args.memory} "
            f"(+{(mem[f'rss_mb_{args.memory}'] - mem['rss_mb_0']) * 1024 / args.memory:.1f} KB per "
            f"endpoint); startup to ready {mem[f'ready_s_{args.memory}']:.2f} s"
        )


if __name__ == "__main__":
    main()
