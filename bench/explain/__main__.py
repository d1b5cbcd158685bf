"""explain: how long the agent takes to explain a packet that meets 1,000 policies, against one that
meets one policy (same agent, same run, calls alternated).

    .venv/bin/python -m bench.explain [--local 200] [--policies 1000] [--reps 40]

One node (``bench.agentnode``: its own etcd, the agent as shipped) with L local endpoints: three
workloads a, b, c and L-3 dummy endpoints. P NetworkPolicies select every endpoint labelled
``role == 'many'`` (a, b and the dummies), each allowing TCP from a group no workload is in; the
last one (in order) also allows from ``app == 'a'``. So ingress at b for a -> b TCP/80 walks all P
policies before the last one's second rule allows it (with the counter read of that rule). c has
one policy of its own (allow from a): ingress at c for a -> c is the one-policy baseline.

Measured: the round trip of the agent's ``explain`` control method (connect, request, the walk on
the agent's loop, the check against the rendered chains, the rule's counters, the JSON answer),
from this process over the Unix socket; calicoctl makes two such calls (egress, ingress) plus its
datastore reads. Facts: one ``calicoctl explain a b`` end to end (a process start included), the
size of the answer, and the rule-level walk alone (``nft_trace`` over the same rendered policy
chains, in-process) for the same packet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import agentnode, results
from calico.calc.graph import CalcGraph
from calico.dataplane import counters, nft_trace
from calico.lib import cmd, control

CALICOCTL = Path(sys.executable).with_name("calicoctl")


def many_policy(i: int, total: int) -> dict[str, Any]:
    ingress: list[dict[str, Any]] = [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": f"group == 'g{i}'"},
         "destination": {"ports": [80, 443]}},
    ]  # fmt: skip
    if i == total - 1:
        ingress.append({"action": "Allow", "source": {"selector": "app == 'a'"}})
    spec = {"order": 100 + i, "selector": "role == 'many'", "ingress": ingress}
    meta = {"name": f"many-{i:04d}", "namespace": "default"}
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": meta,
            "spec": spec}  # fmt: skip


ONE_POLICY = {
    "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
    "metadata": {"name": "one", "namespace": "default"},
    "spec": {"selector": "app == 'c'", "ingress": [{"action": "Allow",
                                                    "source": {"selector": "app == 'a'"}}]},
}  # fmt: skip


def dummy_wep(i: int) -> dict[str, Any]:
    wl = agentnode.Workload(f"dummy{i}", "", f"calid{i:010d}", f"10.66.{i // 250}.{i % 250 + 1}",
                            {"role": "many"})  # fmt: skip
    return wl.wep()


def params(at: str, dst_ip: str) -> dict[str, Any]:
    pkt = {"src": "10.65.0.2", "dst": dst_ip, "protocol": "TCP", "port": 80}
    return {"endpoint": {"kind": "WorkloadEndpoint", "name": f"default/node1-k8s-{at}-eth0"},
            "direction": "ingress", "packet": pkt}  # fmt: skip


def timed_call(sock: str, p: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    answer: dict[str, Any] = control.call(sock, "explain", p)
    return (time.perf_counter() - t0) * 1000, answer


def rule_walk_ms(objs: list[dict[str, Any]], reps: int = 20) -> float:
    graph = CalcGraph(agentnode.NODENAME)
    graph.on_in_sync()
    for obj in objs:
        graph.on_update(agentnode.key(obj), obj)
    table = nft_trace.render(graph.flush())
    interp = nft_trace.Interpreter(table.chains(), table.sets())
    pkt = nft_trace.Packet("10.65.0.2", "10.65.0.3", "tcp", 80)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        res = interp.run("cali-tw-" + agentnode_iface("b"), pkt)
        times.append((time.perf_counter() - t0) * 1000)
    assert res.verdict != "drop"
    return statistics.median(times)


def agentnode_iface(name: str) -> str:
    import hashlib

    return "cali" + hashlib.sha1(f"default.{name}".encode()).hexdigest()[:11]


def cli_once(node: agentnode.Node, run_dir: Path) -> float:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCD_ENDPOINTS": node.etcd.endpoint,
           "NODENAME": agentnode.NODENAME, "CALICO_RUN_DIR": str(run_dir)}  # fmt: skip
    t0 = time.perf_counter()
    argv = ["ip", "netns", "exec", agentnode.ours(node.ns), str(CALICOCTL), "explain",
            "default/a", "default/b", "--port", "80"]  # fmt: skip
    out = cmd.run_process(argv, env=env, capture_output=True, text=True, check=False)
    secs = (time.perf_counter() - t0) * 1000
    if out.returncode != 0 or "ALLOWED" not in out.stdout.splitlines()[0]:
        raise RuntimeError(f"calicoctl explain failed: {out.stdout[:500]} {out.stderr}")
    return secs


def counter_costs(rec: results.Recorder, node: agentnode.Node, run_dir: Path) -> None:
    """What carrying the rule counters costs: reading them (whole table, one chain) over
    nfnetlink in the node's namespace, and the first full apply after an agent restart (which
    reads the old table's counters and writes them into the new one)."""

    def timed(chain: str | None) -> float:
        t0 = time.perf_counter()
        rules = counters.kernel_rules(chain)
        if not rules:
            raise RuntimeError(f"no counted rules read from {chain or 'the table'}")
        return (time.perf_counter() - t0) * 1000

    table = [node.thread.call(timed, None) for _ in range(5)]
    chain = [node.thread.call(timed, "cali-pi-default/many-0999") for _ in range(20)]
    n_rules = len(node.thread.call(counters.kernel_rules, None))
    rec.fact("counter_read_table_ms", {"median": round(statistics.median(table), 1),
                                       "rules": n_rules})  # fmt: skip
    rec.fact("counter_read_chain_ms", round(statistics.median(chain), 2))
    node.stop_agent()
    node.start_agent({"CALICO_RUN_DIR": str(run_dir)})
    again = node.wait_ready()
    full = [ln for ln in node.log().splitlines() if "applied full" in ln]
    rec.fact("restart_ready_s", round(again, 2))
    rec.fact("restart_full_apply", full[-1].split("calico.dataplane.loop: ")[-1])
    print(
        f"counters: whole table ({n_rules} rules) {statistics.median(table):.0f} ms, one chain "
        f"{statistics.median(chain):.2f} ms; after a restart: {full[-1].split(': ')[-1]}"
    )


def _populate(node: agentnode.Node, args: argparse.Namespace) -> None:
    """Workloads a, b, c, the dummy endpoints and the policies, in the store."""
    for name, ip in (("a", "10.65.0.2"), ("b", "10.65.0.3"), ("c", "10.65.0.4")):
        labels = {"app": name, **({"role": "many"} if name != "c" else {})}
        node.add_workload(name, ip, labels)
    n_dummy = max(0, args.local - 3)
    node.add_dummy_ifaces([f"calid{i:010d}" for i in range(n_dummy)])
    objs = [dummy_wep(i) for i in range(n_dummy)]
    objs += [many_policy(i, args.policies) for i in range(args.policies)]
    node.bulk_put([*objs, ONE_POLICY])


def _measure(
    rec: results.Recorder, sock: str, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """Round trips of a question meeting every policy and of one meeting a single policy,
    checked for the expected answers."""
    many, one, inside = [], [], []
    answer: dict[str, Any] = {}
    for i in range(args.reps + 3):
        t_many, answer = timed_call(sock, params("b", "10.65.0.3"))
        t_one, base = timed_call(sock, params("c", "10.65.0.4"))
        if i >= 3:  # the first calls warm the agent's and this process's caches
            many.append(t_many)
            one.append(t_one)
            inside.append(answer["took_ms"])
    v = answer["verdict"]
    looked = len(answer["stages"][0]["tiers"][0]["policies"])
    if v.get("policy") != f"default/many-{args.policies - 1:04d}" or looked != args.policies:
        raise RuntimeError(f"unexpected explanation: {v} after {looked} policies")
    if not (answer["agrees"] and base["verdict"]["action"] == "allow"):
        raise RuntimeError("explain disagrees with the ruleset, or c is not allowed")
    rec.fact("answer_bytes", len(json.dumps(answer)))
    rec.fact("agent_walk_ms_median", round(statistics.median(inside), 2))
    print(f"inside the agent (walk, ruleset check, counters): median "
          f"{statistics.median(inside):.1f} ms", flush=True)  # fmt: skip
    rec.fact("policies_walked", looked)
    return many, one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--local", type=int, default=200)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    rec = results.Recorder("explain")
    nss = agentnode.Namespaces()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-explain-") as tmp:
            run_dir = Path(tmp) / "run"
            rec.setting("CALICO_RUN_DIR", str(run_dir), "where the agent's control socket is: "
                        "calico-node always sets it; the default /var/run/calico is shared by "
                        "every agent a bench starts on this host")  # fmt: skip
            node = agentnode.Node(nss, Path(tmp) / "node")
            try:
                _populate(node, args)
                node.start_agent({"CALICO_RUN_DIR": str(run_dir)})
                ready = node.wait_ready()
                print(f"agent ready in {ready:.2f} s ({args.local} endpoints, {args.policies} "
                      "policies)", flush=True)  # fmt: skip
                sock = str(run_dir / control.SOCKET_NAME)
                many, one = _measure(rec, sock, args)
                cli = [cli_once(node, run_dir) for _ in range(3)]
                rec.fact("calicoctl_explain_ms", [round(x, 1) for x in cli])
                rec.fact("agent_ready_s", round(ready, 2))
                counter_costs(rec, node, run_dir)
            finally:
                node.close()
            rec.fact("nft_trace_walk_ms", round(rule_walk_ms(_world(args)), 2))
    finally:
        nss.cleanup()
    cli_ms = statistics.median(rec.section["facts"]["calicoctl_explain_ms"])
    print(f"calicoctl explain (process start, datastore reads, two calls): {cli_ms:.0f} ms")
    rec.figure(
        f"explain_{args.policies}",
        title=f"explain round trip, a packet meeting {args.policies} policies "
        f"({args.local} local endpoints)",
        unit="ms", samples=many, baseline=one,
        baseline_title="the same agent, a packet meeting 1 policy",
        readme=f"explain, one direction through {args.policies} policies (goal: < 50 ms)",
        doc="docs/design/agent.md",
    )  # fmt: skip
    rec.save()


def _world(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same policies and the workloads a and b, for the in-process rule walk."""
    objs: list[dict[str, Any]] = [agentnode.ALLOW_ALL_PROFILE]
    for name, ip in (("a", "10.65.0.2"), ("b", "10.65.0.3")):
        objs.append(agentnode.Workload(name, "", agentnode_iface(name), ip,
                                       {"app": name, "role": "many"}).wep())  # fmt: skip
    return objs + [many_policy(i, args.policies) for i in range(args.policies)]


if __name__ == "__main__":
    main()
