"""Tiers: policy write -> verdict with 10 tiers x 100 policies against 1 tier x 1,000 policies (same
run, alternated), and the rules a packet traverses with and without tiers that do not apply to it.

    .venv/bin/python -m bench.tiers [--local 200] [--policies 1000] [--tiers 10] [--reps 10]
                                    [--rounds 3]

Latency, as ``bench.policy_latency`` measures it (its node, prober, echo and dummy world, the agent
with its shipped defaults): L-2 dummy endpoints and two workloads a, b; P dummy policies (policy i
selects group ``i % G`` and allows from group ``i+1 % G``, G = min(L, P)), either all in ``default``
(the baseline) or spread over T tiers of P/T (policy i in tier ``t<i // (P/T)>``; tiers ordered
``100 + 10 k``, defaultAction Pass so every tier is walked). Each repetition writes a policy denying
a -> b (baseline: in ``default``; tiered: in the middle tier ``t<T/2>``) and times until the
packets after the write are dropped, then deletes it and times until they pass. Each round runs
both layouts on fresh nodes, the baseline first; ``--rounds`` rounds.

Per-packet cost (pure, no kernel): the calculation graph and the dataplane's managers render the
policy part of the table (``nft_trace.render``) for an endpoint b allowed by one policy, with 0 and
with 20 tiers whose policies select only another endpoint a, and with 1 and 10 tiers that select b
and Pass; ``nft_trace`` walks a new TCP flow a -> b through the chains and counts the rules met.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import agentnode, results
from bench.policy_latency.__main__ import DENY, HERE, Samples, dummy_policy, dummy_wep
from bench.results import percentile
from calico.calc.graph import CalcGraph
from calico.dataplane import nft_trace
from calico.lib import cmd


def tier(name: str, order: float, action: str = "Pass") -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
            "spec": {"order": order, "defaultAction": action}}  # fmt: skip


def in_tier(pol: dict[str, Any], name: str) -> dict[str, Any]:
    meta, spec = dict(pol["metadata"]), dict(pol["spec"])
    meta["name"] = f"{name}.{meta['name']}"
    spec["tier"] = name
    return {**pol, "metadata": meta, "spec": spec}


def changes(node: agentnode.Node, probe: Samples, deny: dict[str, Any], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.monotonic()
        node.apply(deny)
        out.append(probe.first_after(t0, False) * 1000)
        time.sleep(0.05)
        t0 = time.monotonic()
        node.delete("NetworkPolicy", deny["metadata"]["name"], "default")
        out.append(probe.first_after(t0, True) * 1000)
        time.sleep(0.05)
    return out


def run_layout(nss: agentnode.Namespaces, tmp: Path, args: argparse.Namespace, tiers: int
               ) -> dict[str, Any]:  # fmt: skip
    node = agentnode.Node(nss, tmp / f"{tiers}-{time.monotonic_ns()}")
    echo: subprocess.Popen[bytes] | None = None
    probe: Samples | None = None
    try:
        a = node.add_workload("a", "10.65.0.2", {"app": "a"})
        b = node.add_workload("b", "10.65.0.3", {"app": "b"})
        echo = cmd.start(["ip", "netns", "exec", b.ns, sys.executable, "-I",
                                 str(HERE / "udp_echo.py"), "53"])  # fmt: skip
        groups = max(1, min(args.local, args.policies))
        n_dummy = max(0, args.local - 2)
        node.add_dummy_ifaces([f"calid{i:010d}" for i in range(n_dummy)])
        objs: list[dict[str, Any]] = [dummy_wep(i, i % groups) for i in range(n_dummy)]
        per_tier = args.policies // tiers
        pols = [dummy_policy(i, groups) for i in range(args.policies)]
        if tiers > 1:
            objs += [tier(f"t{k}", 100 + 10 * k) for k in range(tiers)]
            pols = [in_tier(p, f"t{i // per_tier}") for i, p in enumerate(pols)]
        node.bulk_put(objs + pols)
        node.start_agent()
        node.wait_ready()
        probe = Samples(a.ns, b.ip)
        probe.first_after(time.monotonic(), True)
        deny = in_tier(DENY, f"t{tiers // 2}") if tiers > 1 else DENY
        verdicts = changes(node, probe, deny, args.reps)
        listing = agentnode.sh("ip", "netns", "exec", agentnode.ours(node.ns),
                               "nft", "list", "table", "inet", "calico")  # fmt: skip
        return {"verdict_ms": verdicts, "chains": listing.count("\tchain ")}
    finally:
        if probe is not None:
            probe.close()
        if echo is not None:
            echo.kill()
            echo.wait()
        node.close()


# ---- per-packet cost --------------------------------------------------------------------------


def _wep(name: str, ip: str) -> dict[str, Any]:
    return agentnode.Workload(name, "", f"cali{name}0000000001", ip, {"app": name}).wep()


def _gnp(name: str, tier_name: str, app: str, action: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": f"app == '{app}'", "ingress": [{"action": action}]}
    if tier_name != "default":
        spec["tier"] = tier_name
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def packet_cost(not_applying: int, passing: int = 0) -> int:
    """Rules a new flow a -> b meets: b allowed in ``default``, ``not_applying`` tiers with a
    policy for a only, ``passing`` tiers with a policy for b that Passes."""
    objs = [agentnode.ALLOW_ALL_PROFILE, _wep("a", "10.65.0.2"), _wep("b", "10.65.0.3"),
            _gnp("allow-b", "default", "b", "Allow")]  # fmt: skip
    for k in range(not_applying):
        objs += [tier(f"o{k}", k, "Deny"), _gnp(f"o{k}.only-a", f"o{k}", "a", "Allow")]
    for k in range(passing):
        objs += [tier(f"p{k}", k, "Deny"), _gnp(f"p{k}.pass-b", f"p{k}", "b", "Pass")]
    graph = CalcGraph(agentnode.NODENAME)
    graph.on_in_sync()
    for obj in objs:
        graph.on_update(agentnode.key(obj), obj)
    table = nft_trace.render(graph.flush())
    res = nft_trace.Interpreter(table.chains(), table.sets()).run(
        "cali-tw-calib0000000001", nft_trace.Packet("10.65.0.2", "10.65.0.3", "tcp", 80)
    )
    if res.verdict == "drop":
        raise AssertionError("the measured packet is dropped")
    return res.rules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--local", type=int, default=200)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--tiers", type=int, default=10)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rec = results.Recorder("tiers")
    costs = {f"not_applying_{n}": packet_cost(n) for n in (0, 20)}
    costs |= {f"passing_{n}": packet_cost(0, n) for n in (1, 10)}
    rec.fact("packet_rules", costs)
    print(f"rules a new flow meets: 0 / 20 tiers that do not apply: {costs['not_applying_0']} / "
          f"{costs['not_applying_20']}; 1 / 10 tiers that apply and Pass: {costs['passing_1']} / "
          f"{costs['passing_10']}")  # fmt: skip
    runs: dict[int, list[dict[str, Any]]] = {1: [], args.tiers: []}
    nss = agentnode.Namespaces()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tiers-") as tmp:
            for _ in range(args.rounds):
                for t in (1, args.tiers):
                    r = run_layout(nss, Path(tmp), args, t)
                    runs[t].append(r)
                    v = r["verdict_ms"]
                    print(f"{t:>2} tier(s) x {args.policies // t:>4} policies: verdict median "
                          f"{statistics.median(v):6.1f} ms, p90 {percentile(v, 0.9):6.1f} ms; "
                          f"table {r['chains']} chains", flush=True)  # fmt: skip
    finally:
        nss.cleanup()
    base = [x for r in runs[1] for x in r["verdict_ms"]]
    tiered = [x for r in runs[args.tiers] for x in r["verdict_ms"]]
    rec.fact("round_medians", {str(t): [statistics.median(r["verdict_ms"]) for r in rs]
                               for t, rs in runs.items()})  # fmt: skip
    rec.fact("table_chains", {str(t): rs[0]["chains"] for t, rs in runs.items()})
    rec.figure(
        f"verdict_{args.tiers}x{args.policies // args.tiers}",
        title=f"write -> verdict, {args.tiers} tiers x {args.policies // args.tiers} policies "
        f"({args.local} local endpoints)",
        unit="ms", samples=tiered, baseline=base,
        baseline_title=f"1 tier x {args.policies} policies, same run",
        readme=f"policy write -> verdict, {args.tiers} tiers x {args.policies // args.tiers} "
        f"policies (goal: <= 1.1x one tier of {args.policies})",
        doc="docs/design/tiers.md",
    )  # fmt: skip
    rec.save()


if __name__ == "__main__":
    main()
