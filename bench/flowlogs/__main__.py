"""Flow logs: what they cost. Pod-to-pod throughput with flow logs on vs off, and the agent's CPU
and memory while it logs a 10,000 new flows a second denied flood.

    .venv/bin/python -m bench.flowlogs [--part all|throughput|flood] [--runs 3] [--seconds 3]
                                       [--rate 10000] [--flood-seconds 60] [--window 10]

Throughput: a 2-node calico-lab (``bench.throughput``'s pods and iperf3 servers, ``--vxlan
Never``), 20 Calico NetworkPolicies selecting the measured pods, each with a Deny rule (so deny
log twins sit in the chains the connections walk) and an Allow for iperf3. Flow logs are on as
shipped (denials logged); the baseline is the same lab with FelixConfiguration
``flowLogsFileEnabled: false`` (the agents then program no log rule), measured in the same rounds,
alternately (the toggle waits until both nodes' tables have, or lack, the log rules).

Flood: the agent bench node (``bench.agentnode``: the agent as shipped) with a client and a server
workload and a GlobalNetworkPolicy denying UDP into the server. ``flood.py`` in the client sends
``--rate`` datagrams a second, each from a new source port (a new flow, a new denial), for
``--flood-seconds``; the agent's CPU (utime + stime) and RSS are read from /proc every
``--window`` seconds. Baseline: the same flood with ``flowLogsFileEnabled: false``, same run,
first; each flood starts a fresh agent.
The kernel's limit (FlowLogsRateLimit, 1000 messages/s as shipped) is what bounds the agent's
work; the records written and the packets they count are recorded as facts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import agentnode, results
from calico.lib import cmd, jsonlines

HERE = Path(__file__).parent
OFF = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
       "metadata": {"name": "default"}, "spec": {"flowLogsFileEnabled": False}}  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")
DOC = "docs/design/agent.md"


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.flowlogs", description=__doc__)
    ap.add_argument("--part", choices=["all", "throughput", "flood"], default="all")
    ap.add_argument("--runs", type=int, default=3, help="throughput rounds (each: on and off)")
    ap.add_argument("--seconds", type=float, default=3.0, help="iperf3 -t per sample")
    ap.add_argument("--rate", type=int, default=10_000, help="new denied flows a second")
    ap.add_argument("--flood-seconds", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=10.0, help="CPU/RSS sampling window")
    return ap.parse_args()


# ---- flood --------------------------------------------------------------------------------------


def _proc(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, RSS in MB) of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss


def _nft_log_rules(ns: str) -> int:
    argv = ["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "calico"]
    out: str = cmd.run_process(argv, capture_output=True, text=True, check=False).stdout
    return out.count("log prefix")


def _wait_log_rules(nss: list[str], present: bool, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while any((_nft_log_rules(ns) > 0) != present for ns in nss):
        if time.monotonic() > deadline:
            raise RuntimeError(f"log rules {'never appeared' if present else 'stayed'} in {nss}")
        time.sleep(0.2)


def _flood_once(node: agentnode.Node, args: argparse.Namespace, *, on: bool) -> dict[str, Any]:
    """A fresh agent (its RSS owes nothing to an earlier flood), then the flood."""
    node.stop_agent()
    if on:
        node.delete("FelixConfiguration", "default")
    else:
        node.apply(OFF)
    node.start_agent()
    node.wait_ready()
    _wait_log_rules([node.ns], on)
    time.sleep(2.0)  # settled: no apply in flight
    assert node.agent is not None
    pid = node.agent.pid
    flows_log = node.tmp / "log" / "flowlogs" / "flows.log"
    before = sum(1 for _ in jsonlines.read(flows_log))
    client, server = node.workloads["client"], node.workloads["server"]
    flood = cmd.start(
        ["ip", "netns", "exec", client.ns, sys.executable, "-I", str(HERE / "flood.py"),
         client.ip, server.ip, "53", str(args.rate), str(args.flood_seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    cpu, rss = [], []
    last_cpu, _ = _proc(pid)
    last_t = time.monotonic()
    while flood.poll() is None:
        time.sleep(args.window)
        now_cpu, now_rss = _proc(pid)
        now_t = time.monotonic()
        if flood.poll() is None or now_t - last_t > args.window / 2:
            cpu.append((now_cpu - last_cpu) / (now_t - last_t) * 100)
            rss.append(now_rss)
        last_cpu, last_t = now_cpu, now_t
    sent = json.loads(flood.communicate()[0])
    time.sleep(20.0 if on else 1.0)  # the last interval (15 s as shipped) is written
    recs = list(jsonlines.read(flows_log))[before:]
    return {
        "cpu": cpu,
        "rss": rss,
        "sent": sent["sent"],
        "flood_seconds": sent["seconds"],
        "records": len(recs),
        "packets_logged": sum(int(r.get("packets") or 0) for r in recs),
    }


def flood(rec: results.Recorder, args: argparse.Namespace) -> None:
    nss = agentnode.Namespaces()
    with tempfile.TemporaryDirectory(prefix="bench-flowlogs-") as tmp:
        node = agentnode.Node(nss, Path(tmp) / "flood")
        try:
            node.add_workload("client", "10.65.0.2", {"app": "client"})
            node.add_workload("server", "10.65.0.3", {"app": "server"})
            node.apply({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                        "metadata": {"name": "deny-udp-in"},
                        "spec": {"selector": "app == 'server'",
                                 "ingress": [{"action": "Deny", "protocol": "UDP"}]}})  # fmt: skip
            off = _flood_once(node, args, on=False)
            on = _flood_once(node, args, on=True)
        finally:
            node.close()
            nss.cleanup()
    rate = on["sent"] / on["flood_seconds"]
    print(f"  flood: {rate:.0f} flows/s sent; on: {on['records']} records, "
          f"{on['packets_logged']} packets logged; RSS {on['rss']}", flush=True)  # fmt: skip
    rec.setting("flowLogsFileEnabled", "false", "the baseline only: the same flood, no flow logs")
    rec.fact("flood_rate_achieved_per_s", round(rate))
    rec.fact("flood_records_written", on["records"])
    rec.fact("flood_packets_logged_per_s", round(on["packets_logged"] / on["flood_seconds"]))
    rec.fact("flood_rss_growth_mb", round(on["rss"][-1] - on["rss"][0], 2))
    rec.fact("flood_rss_mb_by_window", [round(x, 1) for x in on["rss"]])
    rec.figure(
        "flood_cpu",
        title=f"agent CPU, {args.rate:,} new denied flows/s, flow logs on",
        unit="% of a core",
        samples=on["cpu"],
        baseline=off["cpu"],
        baseline_title="the same flood, flow logs off",
        readme="agent CPU under a 10k flows/s denied flood, flow logs on",
        doc=DOC,
    )
    rec.figure(
        "flood_rss",
        title=f"agent RSS, {args.rate:,} new denied flows/s, flow logs on",
        unit="MB",
        samples=on["rss"],
        baseline=off["rss"],
        baseline_title="the same flood, flow logs off",
        doc=DOC,
    )


# ---- throughput ---------------------------------------------------------------------------------


def _policy(i: int) -> dict[str, Any]:
    from bench.throughput import iperf, labcases

    return {
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": f"fl-{i:02d}", "namespace": labcases.NAMESPACE},
        "spec": {"selector": "app == 'tput'", "types": ["Ingress", "Egress"],
                 "ingress": [{"action": "Deny", "protocol": "TCP",
                              "destination": {"ports": [20000 + i]}},
                             {"action": "Allow", "protocol": "TCP",
                              "destination": {"ports": [iperf.PORT]}}],
                 "egress": [{"action": "Allow"}]},
    }  # fmt: skip


def throughput(rec: results.Recorder, args: argparse.Namespace) -> None:
    from bench.throughput import iperf, labcases
    from calico_lab import cluster

    root = tempfile.mkdtemp(prefix="flbench")
    os.environ["CALICO_LAB_ROOT"] = root
    case = labcases.start("direct", {"vxlan": "Never"})
    samples: dict[tuple[str, bool], list[float]] = {}
    try:
        problem = labcases.path_problem(case)
        if problem:
            raise RuntimeError(problem)
        with cluster.session(case.name) as (_, store):
            for i in range(20):
                store.apply(_policy(i))
        nodes = [case.lab.node(n).netns for n in ("node1", "node2")]
        for r in range(args.runs):
            for on in (True, False) if r % 2 == 0 else (False, True):
                with cluster.session(case.name) as (_, store):
                    if on:
                        store.delete("FelixConfiguration", "default")
                    else:
                        store.apply(OFF)
                _wait_log_rules(nodes, on)
                for place, (client, ip) in case.paths().items():
                    gbps = iperf.measure(client, ip, seconds=args.seconds, streams=1)
                    samples.setdefault((place, on), []).append(gbps)
            print(f"    round {r + 1}/{args.runs} done", flush=True)
    finally:
        labcases.stop(case)
    for place in ("same-node", "cross-node"):
        rec.figure(
            f"tput_{place.replace('-', '_')}",
            title=f"pod-to-pod TCP, {place}, flow logs on (denials logged), 20 policies",
            unit="Gbit/s",
            samples=samples[(place, True)],
            baseline=samples[(place, False)],
            baseline_title="the same lab, flow logs off",
            better="higher",
            readme=f"pod-to-pod TCP {place}, flow logs on vs off" if place == "same-node" else None,
            doc=DOC,
        )


def main() -> None:
    args = _args()
    rec = results.Recorder("flowlogs")
    rec.fact("loadavg_start", list(os.getloadavg()))
    if args.part in ("all", "throughput"):
        print("== throughput: flow logs on vs off (2-node lab, iperf3)", flush=True)
        throughput(rec, args)
    if args.part in ("all", "flood"):
        print(f"== flood: {args.rate} new denied flows/s for {args.flood_seconds:.0f}s", flush=True)
        flood(rec, args)
    rec.fact("loadavg_end", list(os.getloadavg()))
    rec.save()


if __name__ == "__main__":
    main()
