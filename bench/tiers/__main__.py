"""Tiers: policy write -> verdict with 10 tiers x 100 policies against 1 tier x 1,000 policies (same
run, same machine, alternated), and the rules a packet traverses with and without tiers that do
not apply to its endpoint.

    .venv/bin/python -m bench.tiers [--local 200] [--policies 1000] [--tiers 10] [--reps 10]
                                    [--rounds 2]

Latency (as ``bench.policy_latency``, whose node, prober and dummy endpoints it reuses): a fresh
node namespace with etcd and calico-felix (shipped defaults), two real workloads a and b and
L-2 dummy endpoints; P dummy policies (policy i selects group ``i % G`` and allows from group
``i+1 % G``, G = min(L, P)), all in ``default`` (the baseline) or spread over T tiers of P/T
(policy i in tier ``i // (P/T)``, tiers ordered, defaultAction Pass so every tier is walked). Each
repetition writes a policy denying a -> b (in the baseline: ``default``; tiered: the middle tier)
and times until the first packet after the write is dropped, then deletes it and times until one
passes. The two layouts are run alternately ``--rounds`` times; ratios are of medians.

Per-packet cost (pure, no kernel): the real graph and managers render the table for an endpoint
selected by one policy, with 0 and with 20 tiers whose policies select other endpoints only;
``tests/nft_interp.py`` walks a packet through the rendered chains and counts the rules it meets.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.agent.harness import Node, ip_batch

from bench.policy_latency.__main__ import (
    DENY,
    Samples,
    bulk_put,
    chunks,
    cleanup,
    delta_applies_ms,
    dummy_policy,
    dummy_wep,
    make_netns,
    pct,
    wait_ready,
)


def tier(name: str, order: int) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
            "spec": {"order": order, "defaultAction": "Pass"}}  # fmt: skip


def tiered(i: int, groups: int, per_tier: int) -> dict[str, Any]:
    pol = dummy_policy(i, groups)
    name = f"t{i // per_tier}"
    pol["metadata"]["name"] = f"{name}.{pol['metadata']['name']}"
    pol["spec"]["tier"] = name
    return pol


def deny_in(tier_name: str | None) -> dict[str, Any]:
    if tier_name is None:
        return DENY
    return {**DENY, "metadata": {**DENY["metadata"], "name": f"{tier_name}.bench-deny"},
            "spec": {**DENY["spec"], "tier": tier_name}}  # fmt: skip


def run_layout(tmp: Path, local: int, policies: int, tiers: int, reps: int) -> dict[str, Any]:
    node = Node(make_netns, tmp / f"t{tiers}-{time.monotonic_ns()}", 2379)
    try:
        node.add_workload("a", "10.65.0.2", {"app": "a"})
        b = node.add_workload("b", "10.65.0.3", {"app": "b"})
        groups = max(1, min(local, policies))
        n_dummy = max(0, local - 2)
        for chunk in chunks(range(n_dummy), 500):
            ip_batch(node.ns, [c for i in chunk for c in (
                f"link add calid{i:010d} type veth peer name bpeer{i}",
                f"link set calid{i:010d} up")])  # fmt: skip
        per_tier = policies // tiers
        objs: list[dict[str, Any]] = [dummy_wep(i, i % groups) for i in range(n_dummy)]
        if tiers > 1:
            objs += [tier(f"t{k}", 100 + 10 * k) for k in range(tiers)]
            objs += [tiered(i, groups, per_tier) for i in range(policies)]
        else:
            objs += [dummy_policy(i, groups) for i in range(policies)]
        bulk_put(node, objs)
        node.start_agent(FELIX_LOGSEVERITYSCREEN="DEBUG", FELIX_PROMETHEUSMETRICSENABLED="false")
        wait_ready(node)
        samples = Samples(node.workloads["a"].ns, b.ip)
        samples.first_after(time.monotonic(), True)
        deny = deny_in(f"t{tiers // 2}" if tiers > 1 else None)
        before = len(delta_applies_ms(node))
        out: list[float] = []
        for _ in range(reps):
            t0 = time.monotonic()
            node.apply(deny)
            out.append(samples.first_after(t0, False) * 1000)
            time.sleep(0.05)
            t0 = time.monotonic()
            node.delete("NetworkPolicy", deny["metadata"]["name"], "default")
            out.append(samples.first_after(t0, True) * 1000)
            time.sleep(0.05)
        samples.close()
        nft = [n for _, n in delta_applies_ms(node)[before:]]
        listing = node.nft("list", "table", "inet", "calico")
        rules = sum(1 for ln in listing.splitlines() if ln.startswith("\t\t") and "chain" not in ln)
        chains = listing.count("\tchain ")
        return {"verdict_ms": out, "nft_ms": nft, "table_rules": rules, "table_chains": chains}
    finally:
        node.close()


def packet_cost(other_tiers: int, passing: int = 0) -> int:
    """Rules a packet to ``b`` meets when ``other_tiers`` tiers select only ``a`` and
    ``passing`` tiers select ``b`` and pass it on, before the default tier allows it."""
    from tests import tier_world as tw
    from tests.nft_interp import Interpreter, Packet
    from tests.unit.calc.test_tier_evaluation import _graph
    from tests.unit.dataplane import dp_fixtures

    pols = [tw.Policy(f"t{k}.only-a", f"t{k}", 1, "app == 'a'", [tw.Rule("Allow")], [], None)
            for k in range(other_tiers)]  # fmt: skip
    pols += [tw.Policy(f"p{k}.pass", f"p{k}", 1, "app == 'b'", [tw.Rule("Pass")], [], None)
             for k in range(passing)]  # fmt: skip
    pols.append(tw.Policy("allow-b", "default", 1, "app == 'b'", [tw.Rule("Allow")], [], None))
    tiers = {f"t{k}": (float(k), "Deny") for k in range(other_tiers)}
    tiers |= {f"p{k}": (float(k), "Deny") for k in range(passing)}
    world = tw.World(tiers, pols)
    _, _, msgs = _graph(world)
    dp = dp_fixtures.dataplane(dp_fixtures.RecordingRunner())
    for msg in msgs:
        dp.on_update(msg)
    dp.complete_deferred_work()
    a, b = tw.BY_NAME["a"], tw.BY_NAME["b"]
    res = Interpreter(dp.table.chains(), dp.table.sets()).run(
        f"cali-tw-{b.iface}", Packet(a.ip, b.ip, "tcp", 80)
    )
    return res.rules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--local", type=int, default=200)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--tiers", type=int, default=10)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    for n in (0, 20):
        print(f"per-packet rules to an endpoint with {n:>2} tiers that do not apply to it: "
              f"{packet_cost(n)}")  # fmt: skip
    for n in (1, 10):
        print(f"per-packet rules when {n:>2} tier(s) that apply pass it before the allow: "
              f"{packet_cost(0, n)}")  # fmt: skip
    results: dict[int, list[dict[str, Any]]] = {1: [], args.tiers: []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tiers-") as tmp:
            for _ in range(args.rounds):
                for t in (1, args.tiers):
                    r = run_layout(Path(tmp), args.local, args.policies, t, args.reps)
                    results[t].append(r)
                    v = r["verdict_ms"]
                    print(f"{t:>2} tier(s) x {args.policies // t:>4} policies: verdict median "
                          f"{statistics.median(v):6.1f} ms p90 {pct(v, 0.9):6.1f} ms | nft per "
                          f"change {statistics.median(r['nft_ms'] or [0]):6.1f} ms | table "
                          f"{r['table_chains']} chains, {r['table_rules']} rules",
                          flush=True)  # fmt: skip
    finally:
        cleanup()
    med = {
        t: statistics.median([x for r in rs for x in r["verdict_ms"]]) for t, rs in results.items()
    }
    spread = {t: [statistics.median(r["verdict_ms"]) for r in rs] for t, rs in results.items()}
    print(f"\nverdict change median: 1 tier {med[1]:.1f} ms (round medians {spread[1]}), "
          f"{args.tiers} tiers {med[args.tiers]:.1f} ms (round medians {spread[args.tiers]}); "
          f"ratio x{med[args.tiers] / med[1]:.2f} (goal <= 1.10)")  # fmt: skip


if __name__ == "__main__":
    main()
