"""Agent memory by cluster size: RSS and Python heap after a forced GC, 0 to 50k endpoints.

    .venv/bin/python -m bench.agent_memory [--sizes 0,1000,10000,50000] [--reps 3]

For each size N: a fresh node namespace with etcd holding N remote WorkloadEndpoints (on another
node, so cluster-wide state only: IP set members and the selector index), 10 local endpoints (on
dummy veths), 100 NetworkPolicies (each selecting one of 100 label groups, allowing from the next).
The agent is started ``--reps`` times over it with its shipped defaults, through
``bench/agent_memory/wrapper.py`` (``calico.agent.main.main()`` plus a SIGUSR1 memory report, see
there); after /readiness and a 1 s settle, SIGUSR1 forces a full GC and reports RSS, the gc-walked
Python heap and where it goes. The baseline is the same agent with no remote endpoints (N = 0),
measured in the same run. Goal: RSS <= 150 MB at 50k endpoints.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import agentnode, results

WRAPPER = Path(__file__).with_name("wrapper.py")
POLICIES, GROUPS, LOCAL = 100, 100, 10
GOAL_MB, GOAL_AT = 150.0, 50000


def wep(i: int, node: str, iface: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node}-k8s-pod{i}-eth0",
            "namespace": "default",
            "labels": {
                "group": f"g{i % GROUPS}",
                "projectcalico.org/namespace": "default",
                "projectcalico.org/orchestrator": "k8s",
            },
        },
        "spec": {
            "node": node,
            "orchestrator": "k8s",
            "pod": f"pod{i}",
            "endpoint": "eth0",
            "interfaceName": iface,
            "ipNetworks": [f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}/32"],
            "profiles": ["kns.default"],
        },
    }


def policy(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"p{i}", "namespace": "default"},
        "spec": {
            "order": 100 + i,
            "selector": f"group == 'g{i % GROUPS}'",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": f"group == 'g{(i + 1) % GROUPS}'"},
                    "destination": {"ports": [80, 443]},
                }
            ],
        },
    }


def measure(node: agentnode.Node, report: Path) -> dict[str, Any]:
    report.unlink(missing_ok=True)
    node.start_agent(
        {"BENCH_MEMORY_REPORT": str(report)}, argv=[sys.executable, "-I", str(WRAPPER)]
    )
    ready = node.wait_ready()
    time.sleep(1.0)
    assert node.agent is not None
    node.agent.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while not report.exists():
        if time.monotonic() > deadline or node.agent.poll() is not None:
            raise RuntimeError("no memory report:\n" + node.log_tail())
        time.sleep(0.2)
    out: dict[str, Any] = json.loads(report.read_text())
    out["ready_s"] = ready
    node.stop_agent()
    return out


def run_size(nss: agentnode.Namespaces, tmp: Path, n: int, reps: int) -> list[dict[str, Any]]:
    node = agentnode.Node(nss, tmp / f"n{n}")
    try:
        ifaces = [f"calim{i:010d}" for i in range(LOCAL)]
        node.add_dummy_ifaces(ifaces)
        objs = [policy(i) for i in range(POLICIES)]
        objs += [wep(n + i, agentnode.NODENAME, iface) for i, iface in enumerate(ifaces)]
        objs += [wep(i, "node2") for i in range(n)]
        node.bulk_put(objs)
        return [measure(node, tmp / f"n{n}" / "memory.json") for _ in range(reps)]
    finally:
        node.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,1000,10000,50000")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rec = results.Recorder("agent_memory")
    rec.fact("world", f"N remote endpoints + {LOCAL} local, {POLICIES} policies")
    nss = agentnode.Namespaces()
    runs: dict[int, list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
            for n in sizes:
                runs[n] = run_size(nss, Path(tmp), n, args.reps)
                last = runs[n][-1]
                print(f"N={n}: rss {[round(r['rss_mb'], 1) for r in runs[n]]} MB, heap "
                      f"{[round(r['heap_mb'], 1) for r in runs[n]]} MB, ready "
                      f"{[round(r['ready_s'], 2) for r in runs[n]]} s", flush=True)  # fmt: skip
                for part, mb in last["parts_mb"].items():
                    print(f"    {part:<42} {mb:8.1f} MB")
                print(f"    RSS after malloc_trim: {last['rss_trimmed_mb']:.1f} MB")
                print("    biggest types: " + ", ".join(
                    f"{t} {mb:.1f}" for t, mb in last["types_mb"].items()))  # fmt: skip
    finally:
        nss.cleanup()
    base = runs.get(0)
    for n, reps in runs.items():
        rss = [r["rss_mb"] for r in reps]
        heap = [r["heap_mb"] for r in reps]
        top = n == max(runs)
        rec.figure(
            f"rss_{n}", title=f"agent RSS after GC, {n} endpoints", unit="MB", samples=rss,
            baseline=[r["rss_mb"] for r in base] if base and n else None,
            baseline_title="no remote endpoints",
            readme=f"agent RSS after GC, {n:,} endpoints cluster-wide" if top else None,
            doc="docs/design/agent.md",
        )  # fmt: skip
        rec.figure(
            f"heap_{n}", title=f"agent Python heap after GC, {n} endpoints", unit="MB",
            samples=heap, baseline=[r["heap_mb"] for r in base] if base and n else None,
            baseline_title="no remote endpoints",
        )  # fmt: skip
        rec.figure(f"ready_{n}", title=f"agent start to ready, {n} endpoints", unit="s",
                   samples=[r["ready_s"] for r in reps])  # fmt: skip
        rec.fact(f"parts_mb_{n}", reps[-1]["parts_mb"])
        if base and n:
            per = (statistics.median(rss) - statistics.median([r["rss_mb"] for r in base])) / n
            per_heap = (
                statistics.median(heap) - statistics.median([r["heap_mb"] for r in base])
            ) / n
            rec.fact(f"per_endpoint_kb_{n}", {"rss": per * 1024, "heap": per_heap * 1024})
            print(f"N={n}: +{per * 1024:.2f} KB RSS, +{per_heap * 1024:.2f} KB heap per endpoint")
    if GOAL_AT in runs:
        got = statistics.median([r["rss_mb"] for r in runs[GOAL_AT]])
        verdict = "met" if got <= GOAL_MB else "NOT met"
        print(f"goal RSS <= {GOAL_MB:.0f} MB at {GOAL_AT:,} endpoints: {verdict} ({got:.1f} MB)")
        rec.fact("goal", {"mb": GOAL_MB, "at": GOAL_AT, "median_mb": got, "met": got <= GOAL_MB})
    rec.save()


if __name__ == "__main__":
    main()
