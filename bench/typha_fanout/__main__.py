"""Typha fan-out: what N agents cost the datastore with and without Typha, and how long a policy
change takes to reach all N through it.

    .venv/bin/python -m bench.typha_fanout [--agents 10,100,500] [--changes 30]
        [--endpoints 500] [--policies 100]

For each N and each mode, a fresh etcd (127.0.0.1, its own data directory) holding the same world
(``--endpoints`` WorkloadEndpoints, ``--policies`` GlobalNetworkPolicies, a profile per 50
endpoints), then N simulated agents in this process, each the agent's real sync stack minus the
dataplane (:mod:`bench.typha_fanout.fleet`):

* **direct** (the baseline): N :class:`calico.datastore.syncer.Syncer`, each with its own etcd
  client, on the agent's prefixes, as N agents without Typha do;
* **typha**: one ``calico-typha`` process started with its shipped defaults (only its listen
  address and health port set, on 127.0.0.1), N :class:`TyphaSyncer` clients of it.

Measured from etcd's own metrics (``/metrics``): watchers open (``etcd_debugging_mvcc_watcher_
total``, read at three moments of the change phase), bytes etcd sent to clients
(``etcd_network_client_grpc_sent_bytes_total``: what its gRPC server sends, the HTTP gateway our
clients speak to included) while the N agents synced, and per policy change. Then ``--changes``
times: one GlobalNetworkPolicy is updated and the time from the write to the moment the last of
the N agents has it is one sample ("reach all N"), with each agent's own arrival time kept for
per-agent p50/p99. Goal: constant in N with Typha; p99 to reach all 500 under 1 s.

All N agents share this process (one interpreter, two cores shared with etcd and Typha), so the
reach-all time includes the N clients taking turns for the GIL: pessimistic against N agents on
N hosts. Nothing runs in a network namespace: etcd and Typha listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.results import percentile
from bench.typha_fanout.fleet import Fleet, TyphaProcess, etcd_metrics
from calico.datastore.etcd import EtcdClient, op_put
from calico.datastore.etcd_server import EtcdServer

PREFIX = "/calico/resources/v3/projectcalico.org/"
MARK = PREFIX + "globalnetworkpolicies/bench-mark"
DOC = "docs/design/typha.md"
TXN_OPS = 128


def world(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(0, args.endpoints, 50):
        name = f"kns.ns{i // 50}"
        out[PREFIX + f"profiles/{name}"] = json.dumps(
            {"kind": "Profile", "metadata": {"name": name},
             "spec": {"labelsToApply": {"ns": f"ns{i // 50}"},
                      "ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}
        )  # fmt: skip
    for i in range(args.endpoints):
        node, ns = f"node{i % 50}", f"ns{i // 50}"
        name = f"{node}-k8s-pod{i}-eth0"
        out[PREFIX + f"workloadendpoints/{ns}/{name}"] = json.dumps(
            {"kind": "WorkloadEndpoint",
             "metadata": {"name": name, "namespace": ns,
                          "labels": {"app": f"app{i % 20}", "projectcalico.org/namespace": ns}},
             "spec": {"node": node, "orchestrator": "k8s", "pod": f"pod{i}", "endpoint": "eth0",
                      "interfaceName": f"cali{i:011x}", "ipNetworks": [address(i)],
                      "profiles": [f"kns.{ns}"]}}
        )  # fmt: skip
    for i in range(args.policies):
        out[PREFIX + f"globalnetworkpolicies/p{i}"] = policy(f"p{i}", i)
    return out


def address(i: int) -> str:
    return f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}/32"


def policy(name: str, order: int) -> str:
    return json.dumps(
        {"kind": "GlobalNetworkPolicy", "metadata": {"name": name},
         "spec": {"order": order, "selector": f"app == 'app{order % 20}'",
                  "ingress": [{"action": "Allow", "protocol": "TCP",
                               "source": {"selector": f"app == 'app{(order + 1) % 20}'"},
                               "destination": {"ports": [80 + order % 10]}}],
                  "types": ["Ingress"]}}
    )  # fmt: skip


def seed(etcd: EtcdClient, kvs: dict[str, str]) -> None:
    items = list(kvs.items())
    for i in range(0, len(items), TXN_OPS):
        etcd.txn([], [op_put(k, v) for k, v in items[i : i + TXN_OPS]])


def one_run(n: int, mode: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """A fresh etcd and world, N agents in ``mode``; what etcd sent and how fast changes spread."""
    data = tmp / f"etcd-{mode}-{n}"
    server = EtcdServer.on_free_ports(data)
    server.start()
    typha: TyphaProcess | None = None
    fleet: Fleet | None = None
    try:
        etcd = EtcdClient(server.endpoint)
        seed(etcd, world(args))
        etcd.put(MARK, policy("bench-mark", 0))
        m0 = etcd_metrics(server.endpoint)
        t0 = time.monotonic()
        if mode == "typha":
            typha = TyphaProcess(server.endpoint, tmp / f"typha-{n}.log").start()
        fleet = Fleet(n, MARK, typha=typha.addr if typha else None, etcd=server.endpoint)
        fleet.wait_in_sync(timeout=120 + n * 0.5)
        sync_s = time.monotonic() - t0
        m1 = etcd_metrics(server.endpoint)
        watchers: list[float] = []
        reach_all: list[float] = []
        per_agent: list[float] = []
        per_change: list[float] = []
        for k in range(args.changes):
            before = etcd_metrics(server.endpoint)
            start = time.monotonic()
            rev = etcd.put(MARK, policy("bench-mark", k + 1))
            arrivals = fleet.wait_arrivals(rev, timeout=60)
            reach_all.append(max(arrivals) - start)
            per_agent += [a - start for a in arrivals]
            time.sleep(0.3)  # let the stragglers' acknowledgements and pings settle
            after = etcd_metrics(server.endpoint)
            per_change.append(after["sent"] - before["sent"])
            if k in (0, args.changes // 2, args.changes - 1):
                watchers.append(after["watchers"])
        out = {
            "sync_s": sync_s,
            "sync_bytes": m1["sent"] - m0["sent"],
            "watchers": watchers,
            "bytes_per_change": per_change,
            "reach_all_ms": [x * 1000 for x in reach_all],
            "per_agent_ms": [x * 1000 for x in per_agent],
            "typha_cpu_s": typha.cpu_seconds() if typha else None,
        }
        return out
    finally:
        if fleet is not None:
            fleet.stop()
        if typha is not None:
            typha.stop()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def summary(run: dict[str, Any]) -> str:
    pa = run["per_agent_ms"]
    return (
        f"sync {run['sync_s']:.1f}s, {run['sync_bytes'] / 1e6:.2f} MB from etcd; "
        f"watchers {run['watchers'][0]:.0f}; "
        f"per change {statistics.median(run['bytes_per_change']) / 1e3:.1f} kB from etcd, "
        f"reach all p50 {statistics.median(run['reach_all_ms']):.0f} ms "
        f"p99 {percentile(run['reach_all_ms'], 0.99):.0f} ms; "
        f"per agent p50 {statistics.median(pa):.0f} ms p99 {percentile(pa, 0.99):.0f} ms"
    )


def record(rec: results.Recorder, runs: dict[tuple[int, str], dict[str, Any]], top: int) -> None:
    facts: dict[str, Any] = {}
    for (n, mode), run in sorted(runs.items()):
        pa = run["per_agent_ms"]
        facts.setdefault(str(n), {})[mode] = {
            "sync_s": round(run["sync_s"], 2),
            "sync_bytes_from_etcd": run["sync_bytes"],
            "watchers_open": run["watchers"][0],
            "bytes_per_change_median": statistics.median(run["bytes_per_change"]),
            "reach_all_ms_p50": round(statistics.median(run["reach_all_ms"]), 1),
            "reach_all_ms_p99": round(percentile(run["reach_all_ms"], 0.99), 1),
            "per_agent_ms_p50": round(statistics.median(pa), 1),
            "per_agent_ms_p99": round(percentile(pa, 0.99), 1),
            "typha_cpu_s": run["typha_cpu_s"],
        }
    rec.fact("by_agents", facts)
    for (n, mode), run in sorted(runs.items()):
        if mode != "typha" or (n, "direct") not in runs:
            continue
        base = runs[(n, "direct")]
        shown = n == top
        rec.figure(
            f"etcd_bytes_per_change_{n}",
            title=f"bytes etcd sends per policy change, {n} agents through Typha",
            unit="kB",
            samples=[b / 1e3 for b in run["bytes_per_change"]],
            baseline=[b / 1e3 for b in base["bytes_per_change"]],
            baseline_title=f"{n} agents watching etcd directly",
            readme=f"etcd bytes sent per policy change, {n} agents via Typha" if shown else None,
            doc=DOC,
        )
        rec.figure(
            f"etcd_watchers_{n}",
            title=f"watches open on etcd, {n} agents through Typha",
            unit="watches",
            samples=run["watchers"],
            baseline=base["watchers"],
            baseline_title=f"{n} agents watching etcd directly",
            readme=f"watches open on etcd, {n} agents via Typha" if shown else None,
            doc=DOC,
        )
        rec.figure(
            f"reach_all_{n}",
            title=f"policy change to all {n} agents through Typha",
            unit="ms",
            samples=run["reach_all_ms"],
            baseline=base["reach_all_ms"],
            baseline_title=f"{n} agents watching etcd directly",
            readme=f"policy change reaches all {n} agents via Typha" if shown else None,
            doc=DOC,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="10,100,500")
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--endpoints", type=int, default=500)
    ap.add_argument("--policies", type=int, default=100)
    args = ap.parse_args()
    # at the end of each run N stopping clients each log a lost connection: not news
    logging.getLogger("calico").setLevel(logging.ERROR)
    sizes = [int(x) for x in args.agents.split(",")]
    rec = results.Recorder("typha_fanout")
    rec.fact(
        "world",
        f"{args.endpoints} WorkloadEndpoints, {args.policies} GlobalNetworkPolicies, "
        f"{(args.endpoints + 49) // 50} profiles; {args.changes} policy changes per run",
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-typha-"))
    runs: dict[tuple[int, str], dict[str, Any]] = {}
    try:
        for n in sizes:
            for mode in ("direct", "typha"):
                runs[(n, mode)] = run = one_run(n, mode, args, tmp)
                print(f"[typha_fanout] {n:4d} agents {mode:6s}: {summary(run)}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record(rec, runs, max(sizes))
    rec.save()


if __name__ == "__main__":
    main()
