"""Policy latency: from a policy write in etcd to the packet verdict changing, agent as shipped.

    .venv/bin/python -m bench.policy_latency [--sizes 10,100,1000] [--reps 25]
        [--check-sizes 10x1000,1000x1000] [--breakdown-reps 5]

For each (local endpoints L, policies P): a fresh node namespace (``bench.agentnode``) with etcd
and ``calico-felix`` started with its shipped defaults (nothing but ETCD_ENDPOINTS and NODENAME),
two real workloads (a, b; b echoes UDP) and L-2 dummy endpoints on veths, P policies (policy i
selects group ``i % G`` and allows from group ``i+1 % G``, G = min(L, P), so endpoint->policy
links total max(L, P)). A UDP prober in ``a`` sends one packet to ``b`` every 2 ms from a fresh
socket (a fresh conntrack flow). Each repetition writes a NetworkPolicy denying a -> b and times
until the first packet sent after the write that starts a run of 3 dropped ones, then deletes it
and times until the first of 3 that get through (a single lost echo is not a verdict). Passes,
each said in the output:

1. default: the agent as shipped, so the live full-recompute check is on at its default interval
   (600 s): write -> verdict median, p90, p99 over 2 x ``--reps`` changes;
2. breakdown (NON-DEFAULT: FelixConfiguration ``logSeverityScreen: Debug``, set live on the same
   agent): per change, calc / dataplane Python / nft delta times from the agent's debug log;
3. two more agent starts over the same world: the full nft load each start logs;
4. check (sizes in ``--check-sizes``; NON-DEFAULT ``FELIX_CALCCHECKINTERVAL=0.5``): the same
   changes with the check every 0.5 s, p50 and p99 against pass 1, and the checks' own cost.

Baselines in the same run: a full recompute (a fresh calculation graph over the whole snapshot, in
this process, 3 repetitions) plus the agent's full nft load (3 starts), paired: what a level-
triggered agent would pay per change; and the smallest size. Namespaces ``calbench-<hex>-N``,
deleted by name at the end.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import agentnode, results, verdicts
from bench.results import percentile
from calico.calc.graph import CalcGraph
from calico.lib import cmd

HERE = Path(__file__).parent
CHECK_INTERVAL = "0.5"


def dummy_wep(i: int, group: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{agentnode.NODENAME}-k8s-dummy{i}-eth0",
            "namespace": "default",
            "labels": {"group": f"g{group}", "projectcalico.org/namespace": "default"},
        },
        "spec": {
            "node": agentnode.NODENAME,
            "orchestrator": "k8s",
            "pod": f"dummy{i}",
            "endpoint": "eth0",
            "interfaceName": f"calid{i:010d}",
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
DEBUG = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "FelixConfiguration",
    "metadata": {"name": "default"},
    "spec": {"logSeverityScreen": "Debug"},
}


class Samples:
    """The prober's ``<t> <ok>`` lines, read on a thread."""

    def __init__(self, ns: str, ip: str) -> None:
        argv = ["ip", "netns", "exec", agentnode.ours(ns), sys.executable, "-I",
                str(HERE / "udp_prober.py"), ip, "53"]  # fmt: skip
        self.proc = cmd.start(argv, stdout=subprocess.PIPE, text=True)
        self.rows: list[tuple[float, bool]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, ok = line.split()
            self.rows.append((float(t), ok == "1"))

    def first_after(self, t0: float, want: bool, timeout: float = 20.0, run: int = 3) -> float:
        """Seconds from ``t0`` to the first packet sent after it that starts a run of ``run``
        packets with the wanted verdict (one lost or late echo on a busy machine is not a
        verdict change)."""
        return verdicts.first_run_after(lambda: self.rows, t0, want, timeout=timeout, run=run)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def changes(node: agentnode.Node, probe: Samples, reps: int) -> list[float]:
    """``reps`` x (deny a -> b, then allow again): ms from each write to the new verdict."""
    out = []
    for _ in range(reps):
        t0 = time.monotonic()
        node.apply(DENY)
        out.append(probe.first_after(t0, False) * 1000)
        time.sleep(0.05)
        t0 = time.monotonic()
        node.delete("NetworkPolicy", "bench-deny", "default")
        out.append(probe.first_after(t0, True) * 1000)
        time.sleep(0.05)
    return out


def floats(pattern: str, text: str) -> list[float]:
    return [float(x) for x in re.findall(pattern, text)]


def full_recompute_ms(objs: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    graph = CalcGraph(agentnode.NODENAME)
    graph.on_in_sync()
    for o in objs:
        graph.on_update(agentnode.key(o), o)
    graph.flush()
    return (time.perf_counter() - start) * 1000


def rss_mb(node: agentnode.Node) -> float:
    assert node.agent is not None
    status = Path(f"/proc/{node.agent.pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+)", status)
    return int(m.group(1)) / 1024 if m else float("nan")


def restart(node: agentnode.Node, env: dict[str, str] | None = None) -> float:
    node.stop_agent()
    node.start_agent(env)
    return node.wait_ready()


def run_size(
    nss: agentnode.Namespaces, tmp: Path, local: int, policies: int, args: argparse.Namespace
) -> dict[str, Any]:
    node = agentnode.Node(nss, tmp / f"{local}x{policies}")
    procs: list[subprocess.Popen[bytes]] = []
    probe: Samples | None = None
    try:
        a = node.add_workload("a", "10.65.0.2", {"app": "a"})
        b = node.add_workload("b", "10.65.0.3", {"app": "b"})
        procs.append(cmd.start(["ip", "netns", "exec", b.ns, sys.executable, "-I",
                                       str(HERE / "udp_echo.py"), "53"]))  # fmt: skip
        groups = max(1, min(local, policies))
        n_dummy = max(0, local - 2)
        node.add_dummy_ifaces([f"calid{i:010d}" for i in range(n_dummy)])
        objs = [dummy_wep(i, i % groups) for i in range(n_dummy)]
        objs += [dummy_policy(i, groups) for i in range(policies)]
        node.bulk_put(objs)
        r: dict[str, Any] = {"local": local, "policies": policies}
        node.start_agent()
        r["ready_s"] = [node.wait_ready()]
        probe = Samples(a.ns, b.ip)
        probe.first_after(time.monotonic(), True)
        r["verdict_ms"] = changes(node, probe, args.reps)
        r["rss_mb"] = rss_mb(node)
        # 2. breakdown: debug logging switched on live (a non-default)
        node.apply(DEBUG)
        time.sleep(0.5)
        mark = len(node.log())
        changes(node, probe, args.breakdown_reps)
        log = node.log()[mark:]
        r["calc_ms"] = floats(r"calc graph: \d+ updates in ([\d.]+) ms", log)
        applies = re.findall(
            r"applied delta dataplane update in ([\d.]+) ms \(nft ([\d.]+) ms", log
        )
        r["apply_ms"] = [float(x) for x, _ in applies]
        r["nft_ms"] = [float(y) for _, y in applies]
        node.delete("FelixConfiguration", "default")
        # 3. full loads: two more starts over the same world
        r["ready_s"] += [restart(node) for _ in range(2)]
        r["full_load_ms"] = floats(r"applied full dataplane update in ([\d.]+) ms", node.log())
        # 4. the live check, aggressive
        if f"{local}x{policies}" in args.check_sizes.split(","):
            mark = len(node.log())
            restart(node, {"FELIX_CALCCHECKINTERVAL": CHECK_INTERVAL})
            time.sleep(1.0)
            r["check_verdict_ms"] = changes(node, probe, args.reps)
            r["check_ms"] = floats(r"full-recompute check agrees \(([\d.]+) ms", node.log()[mark:])
        everything = [*objs, *(w.wep() for w in node.workloads.values())]
        everything.append(agentnode.ALLOW_ALL_PROFILE)
        r["full_recompute_ms"] = [full_recompute_ms(everything) for _ in range(3)]
        return r
    finally:
        if probe is not None:
            probe.close()
        for p in procs:
            p.kill()
            p.wait()
        node.close()


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(rec: results.Recorder, rs: list[dict[str, Any]]) -> None:
    smallest, largest = rs[0], rs[-1]
    for r in rs:
        size = f"{r['local']}x{r['policies']}"
        what = f"{r['local']:,} local endpoints x {r['policies']:,} policies"
        loads = r["full_load_ms"][:3]
        full = [c + f for c, f in zip(sorted(r["full_recompute_ms"]), loads, strict=True)]
        rec.figure(
            f"verdict_{size}", title=f"write -> verdict, {what}", unit="ms",
            samples=r["verdict_ms"], baseline=full,
            baseline_title="full recompute + nft reload",
            readme=f"policy write in etcd -> packet verdict, {what}"
            if r in (smallest, largest) else None,
            doc="docs/design/agent.md",
        )  # fmt: skip
        if "check_verdict_ms" in r:
            rec.figure(
                f"check_verdict_{size}", unit="ms",
                title=f"write -> verdict, {what}, live check every {CHECK_INTERVAL} s",
                samples=r["check_verdict_ms"], baseline=r["verdict_ms"],
                baseline_title="check at its default interval (600 s)",
                readme=f"the same, {what}, with the live full-recompute check every "
                f"{CHECK_INTERVAL} s" if r is largest else None,
                doc="docs/design/agent.md",
            )  # fmt: skip
            rec.fact(f"checks_{size}", {"count": len(r["check_ms"]), "ms": r["check_ms"]})
        rec.fact(
            f"breakdown_{size}",
            {"calc_ms": med(r["calc_ms"]), "dataplane_python_ms": med(r["apply_ms"])
             - med(r["nft_ms"]), "nft_ms": med(r["nft_ms"]), "full_load_ms": r["full_load_ms"],
             "full_recompute_ms": r["full_recompute_ms"], "ready_s": r["ready_s"],
             "rss_mb": r["rss_mb"]},
        )  # fmt: skip
    base = med(smallest["verdict_ms"])
    print(f"\n{'L x P':>12} {'verdict p50/p90/p99 ms':>24} {'x smallest':>10} {'calc':>6} "
          f"{'dp py':>6} {'nft':>6} {'full recompute + load':>22} {'rss MB':>7} "
          f"{'ready s':>8}")  # fmt: skip
    for r in rs:
        v = r["verdict_ms"]
        total = med(r["full_recompute_ms"]) + med(r["full_load_ms"])
        print(
            f"{r['local']:>5} x {r['policies']:<5} {med(v):7.1f} / {percentile(v, 0.9):6.1f} / "
            f"{percentile(v, 0.99):6.1f} {med(v) / base:10.2f} {med(r['calc_ms']):6.2f} "
            f"{med(r['apply_ms']) - med(r['nft_ms']):6.2f} {med(r['nft_ms']):6.1f} "
            f"{total:12.1f} (x{total / med(v):6.1f}) {r['rss_mb']:7.1f} {med(r['ready_s']):8.2f}"
        )
        if "check_verdict_ms" in r:
            c = r["check_verdict_ms"]
            print(
                f"{'':>13}with the check every {CHECK_INTERVAL} s: p50 {med(c):.1f} ms, p99 "
                f"{percentile(c, 0.99):.1f} ms ({len(r['check_ms'])} checks, "
                f"{med(r['check_ms']):.1f} ms each, off the loop)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--breakdown-reps", type=int, default=5)
    ap.add_argument("--check-sizes", default="10x1000,1000x1000")
    args = ap.parse_args()
    rec = results.Recorder("policy_latency")
    rec.setting("FelixConfiguration default logSeverityScreen", "Debug",
                "breakdown pass only: per-phase times come from the debug log")  # fmt: skip
    rec.setting("FELIX_CALCCHECKINTERVAL", CHECK_INTERVAL,
                f"check pass only, at sizes {args.check_sizes}")  # fmt: skip
    sizes = [int(x) for x in args.sizes.split(",")]
    nss = agentnode.Namespaces()
    rs = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
            for local in sizes:
                for policies in sizes:
                    r = run_size(nss, Path(tmp), local, policies, args)
                    v = r["verdict_ms"]
                    print(f"L={local:>5} P={policies:>5}: verdict median {med(v):.1f} ms, p99 "
                          f"{percentile(v, 0.99):.1f} ms", flush=True)  # fmt: skip
                    rs.append(r)
    finally:
        nss.cleanup()
    report(rec, rs)
    rec.save()


if __name__ == "__main__":
    main()
