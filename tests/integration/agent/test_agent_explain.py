"""A real agent's control socket: explain agrees with real packets, rule counters survive a
restart and a drift repair, the metrics carry them, the TCP listener, bad questions."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from calico.dataplane import counters, libnft
from calico.lib import control
from tests import tier_world as tw
from tests.integration.agent.harness import Matrix, Node, Probe

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def _socket(node: Node) -> str:
    return str(Path(node.tmp) / "run" / control.SOCKET_NAME)


def _explain(node: Node, src: tw.Workload, dst: tw.Workload, port: int, proto: str,
             *, at: tw.Workload, direction: str) -> dict[str, Any]:  # fmt: skip
    params = {
        "endpoint": {"kind": "WorkloadEndpoint", "name": f"default/node1-k8s-{at.name}-eth0"},
        "direction": direction,
        "packet": {"src": src.ip, "dst": dst.ip, "protocol": proto, "port": port},
    }
    answer: dict[str, Any] = control.call(_socket(node), "explain", params)
    return answer


def _allowed(node: Node, src: tw.Workload, dst: tw.Workload, port: int, proto: str) -> bool:
    out = _explain(node, src, dst, port, proto, at=src, direction="egress")
    into = _explain(node, src, dst, port, proto, at=dst, direction="ingress")
    assert out["agrees"], out
    assert into["agrees"], into
    return bool(out["verdict"]["action"] == "allow" and into["verdict"]["action"] == "allow")


def _clear(node: Node, world: tw.World) -> None:
    for pol in world.policies:
        node.delete(pol.kind, pol.name, tw.NAMESPACE if pol.kind == "NetworkPolicy" else None)
    for name in world.tiers:
        if name not in tw.BUILT_IN:
            node.delete("Tier", name)


def test_explain_agrees_with_real_packets(node: Node) -> None:
    """Random tier worlds on a real agent: once the probes match the reference (the policy is
    programmed), every pair's explanation gives exactly what the probe saw."""
    for w in tw.WORKLOADS:
        node.add_workload(w.name, w.ip, w.labels)
    node.start_agent()
    node.wait_ready()
    failures = []
    for seed in range(4):
        world = tw.random_world(random.Random(seed), missing_tiers=False)
        for obj in world.resources():
            node.apply(obj)
        mx = Matrix(node)
        cells = []
        for src in tw.WORKLOADS:
            for dst in tw.WORKLOADS:
                if src != dst:
                    for port, proto in tw.PORTS:
                        ok = tw.verdict(world, src.name, dst.name, port, proto)
                        mx.expect(src.name, dst.name, proto.lower(), port, ok=ok)
                        cells.append((src, dst, port, proto))
        mx.check(timeout=10)
        seen = mx.run()
        for src, dst, port, proto in cells:
            ok = seen[Probe(src.name, dst.ip, proto.lower(), port)]
            explained = _allowed(node, src, dst, port, proto)
            if explained != ok:
                failures.append(f"seed {seed} {src.name}->{dst.name} {proto}/{port}: probe "
                                f"{ok}, explain {explained}")  # fmt: skip
        _clear(node, world)
    assert not failures, "\n".join(failures)


def _policy(node: Node) -> None:
    node.apply({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "b-in"},
        "spec": {"selector": "app == 'b'", "ingress": [
            {"action": "Log"},
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [8080]}},
            {"action": "Allow"},
        ]},
    })  # fmt: skip


def _counts(node: Node) -> dict[int, tuple[int, int]]:
    answer = control.call(_socket(node), "counters", {"policies": ["b-in"]})
    rows = answer["policies"]["b-in"]["rules"]
    return {r["rule"]: (r["packets"], r["bytes"]) for r in rows if r["direction"] == "ingress"}


def _traffic(node: Node) -> None:
    mx = Matrix(node)
    mx.expect("a", "b", "tcp", 80, ok=True)
    mx.expect("a", "b", "tcp", 8080, ok=False)
    mx.check()


def _full_applies(node: Node) -> list[str]:
    return [ln for ln in node.agent_log.read_text().splitlines() if "applied full" in ln]


def _carried(node: Node) -> int:
    """Rules whose counters the last full replace carried over (from the agent's log line)."""
    line = _full_applies(node)[-1]
    return int(line.split("counters of ")[1].split(" rules")[0])


def test_rule_counters_survive_restart_and_drift_repair(node: Node) -> None:
    for w in tw.WORKLOADS[:2]:
        node.add_workload(w.name, w.ip, w.labels)
    _policy(node)
    node.start_agent(FELIX_NFTABLESREFRESHINTERVAL="1")
    node.wait_ready()
    _traffic(node)
    first = _counts(node)
    assert first[0][0] > 0  # Log: every new flow
    assert first[1][0] > 0  # the denied 8080 SYNs
    assert first[2][0] > 0  # the allowed flow's first packet
    # nfnetlink's rule dump reads exactly what nft's own listing shows
    assert node.thread.call(counters.read_kernel) == counters.read(libnft.NftCommand(node.ns))
    explained = _explain(node, tw.BY_NAME["a"], tw.BY_NAME["b"], 8080, "TCP",
                         at=tw.BY_NAME["b"], direction="ingress")  # fmt: skip
    assert explained["verdict"]["rule"] == 1
    assert explained["verdict"]["packets"] == _counts(node)[1][0]

    node.kill_agent()
    node.start_agent(FELIX_NFTABLESREFRESHINTERVAL="1")
    node.wait_ready()
    carried = _counts(node)
    assert all(carried[i] >= first[i] for i in first), (first, carried)
    assert _carried(node) > 0

    # Drift: a rule removed by hand; the next drift check replaces the table, counters kept.
    replaces = len(_full_applies(node))
    node.nft("flush", "chain", "inet", "calico", "cali-fw-" + node.workloads["a"].iface)
    deadline = time.monotonic() + 10
    while len(_full_applies(node)) == replaces:
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.2)
    assert "drifted" in node.agent_log.read_text()
    assert _carried(node) > 0
    after = _counts(node)
    assert all(after[i] >= carried[i] for i in carried), (carried, after)


def test_rule_metrics_tcp_listener_and_bad_questions(node: Node) -> None:
    for w in tw.WORKLOADS[:2]:
        node.add_workload(w.name, w.ip, w.labels)
    _policy(node)
    node.start_agent(FELIX_CONTROLPORT="9094", FELIX_CONTROLHOST="127.0.0.1")
    node.wait_ready()
    _traffic(node)

    def scrape() -> str:
        with urllib.request.urlopen("http://127.0.0.1:9091/metrics", timeout=5) as r:
            return str(r.read().decode())

    text = node.thread.call(scrape)
    line = next(ln for ln in text.splitlines() if ln.startswith("felix_policy_rule_packets_total{")
                and 'policy="b-in"' in ln and 'rule="1"' in ln)  # fmt: skip
    assert 'tier="default"' in line
    assert 'direction="ingress"' in line
    assert float(line.rsplit(" ", 1)[1]) > 0
    assert 'kind="profile",policy="kns.default"' in text

    # The TCP listener (inside the node's namespace) answers the same methods.
    pong = node.thread.call(lambda: control.call("tcp://127.0.0.1:9094", "ping"))
    assert pong["pid"] == node.agent.pid if node.agent else False
    assert "explain" in node.thread.call(lambda: control.call("tcp://127.0.0.1:9094", "methods"))

    sock = _socket(node)
    with pytest.raises(control.RemoteError, match="programs no WorkloadEndpoint default/ghost"):
        control.call(sock, "explain", {
            "endpoint": {"kind": "WorkloadEndpoint", "name": "default/ghost"},
            "direction": "ingress",
            "packet": {"src": "10.65.0.2", "dst": "10.65.0.3", "port": 80},
        })  # fmt: skip
    with pytest.raises(control.RemoteError, match=r"packet.port: a TCP packet needs a port"):
        control.call(sock, "explain", {
            "endpoint": {"kind": "WorkloadEndpoint", "name": "default/node1-k8s-b-eth0"},
            "direction": "ingress", "packet": {"src": "10.65.0.2", "dst": "10.65.0.3"},
        })  # fmt: skip
    with pytest.raises(control.RemoteError, match=r"packet\.src: 'x' is not an IP address"):
        control.call(sock, "explain", {
            "endpoint": {"kind": "WorkloadEndpoint", "name": "default/node1-k8s-b-eth0"},
            "direction": "ingress", "packet": {"src": "x", "dst": "10.65.0.3", "port": 1},
        })  # fmt: skip


CALICOCTL = Path(sys.executable).with_name("calicoctl")


def _ctl(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "ETCD_ENDPOINTS": node.etcd.endpoint, "NODENAME": "node1",
           "CALICO_RUN_DIR": str(Path(node.tmp) / "run")}  # fmt: skip
    return subprocess.run(["ip", "netns", "exec", node.ns, str(CALICOCTL), *args], env=env,
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip


def test_calicoctl_explain(node: Node) -> None:
    for w in tw.WORKLOADS[:2]:
        node.add_workload(w.name, w.ip, w.labels)
    _policy(node)
    node.start_agent()
    node.wait_ready()
    _traffic(node)
    out = _ctl(node, "explain", "default/a", "default/b", "--port", "8080")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "default/a -> default/b (TCP 10.65.0.2 -> 10.65.0.3 port 8080): DENIED"
    assert lines[1].startswith(
        "  ingress at default/b: DENIED by tier default, policy b-in, rule 1: Deny, protocol tcp, "
        "destination {ports [8080]}  ["
    ), out.stdout
    assert "      policy b-in: rule 1 Deny: decides" in lines
    assert "        rule 0 Log: matched: logged, evaluation goes on" in lines
    assert "    profile kns.default: rule 0 Allow: decides" in lines  # a's egress
    doc = json.loads(_ctl(node, "explain", "10.65.0.2", "default/b", "-p", "80", "-o",
                          "json").stdout)  # fmt: skip
    assert doc["verdict"] == "allow"
    assert doc["ingress"]["verdict"]["rule"] == 2
    assert doc["egress"]["stages"][0]["ruleset"]["agrees"]
    icmp = json.loads(_ctl(node, "explain", "default/a", "default/b", "--protocol", "icmp",
                           "-o", "json").stdout)  # fmt: skip
    assert icmp["packet"]["icmp_type"] == 8
    assert icmp["verdict"] == "allow"

    # Bad input: exit 1, the message names what was not found.
    for args, message in (
        (("default/ghost", "default/b"), "default/ghost: no pod ghost with a network endpoint"),
        (("8.8.8.8", "default/b"), "8.8.8.8: IP 8.8.8.8 is in no IP pool and no endpoint has it"),
        (("default/a", "default/b", "--protocol", "gre"), "--protocol gre: expected one of"),
        (("default/a", "default/b", "--protocol", "udp"), "--port is required for UDP"),
    ):
        bad = _ctl(node, "explain", *args, *(() if "--protocol" in args else ("-p", "80")))
        assert bad.returncode == 1, bad
        assert bad.stderr.startswith(message), bad.stderr
    # A pod on another node whose agent cannot be reached from here.
    far = tw.Workload("far", "10.65.0.9", {"app": "far"}, "calif0000000001")
    remote = tw.wep(far)
    remote["spec"]["node"] = "node9"
    remote["metadata"]["name"] = "node9-k8s-far-eth0"
    node.apply(remote)
    bad = _ctl(node, "explain", "default/a", "default/far", "-p", "80")
    assert bad.returncode == 1
    assert bad.stderr.startswith("node node9: no way to reach its agent from here (this is node "
                                 "node1)"), bad.stderr  # fmt: skip
    bad = _ctl(node, "explain", "default/a", "default/far", "-p", "80", "--agent",
               "node9=/nonexistent/felix-control.sock")  # fmt: skip
    assert bad.returncode == 1
    assert "node node9: no agent answers at /nonexistent/felix-control.sock" in bad.stderr


def test_calicoctl_get_wide_shows_rule_counters_per_node(node: Node) -> None:
    for w in tw.WORKLOADS[:2]:
        node.add_workload(w.name, w.ip, w.labels)
    _policy(node)
    for name in ("node1", "node9"):
        node.apply({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                    "metadata": {"name": name}, "spec": {}})  # fmt: skip
    node.start_agent()
    node.wait_ready()
    _traffic(node)
    out = _ctl(node, "get", "globalnetworkpolicy", "b-in", "-o", "wide")
    assert out.returncode == 0, out.stderr
    rows = [ln.split() for ln in out.stdout.splitlines()]
    assert rows[0] == ["NAME", "TIER", "ORDER", "SELECTOR"]
    at = rows.index(["RULE", "COUNTERS", "(per", "node,", "from", "its", "agent)"])
    assert rows[at + 1] == ["NODE", "POLICY", "DIRECTION", "RULE", "ACTION", "PACKETS", "BYTES"]
    mine = {(r[2], r[3]): r for r in rows[at + 2 :] if r[0] == "node1"}
    assert set(mine) == {("ingress", "0"), ("ingress", "1"), ("ingress", "2")}
    assert mine[("ingress", "1")][4] == "Deny"
    assert int(mine[("ingress", "1")][5]) > 0
    far = [" ".join(r) for r in rows[at + 2 :] if r[0] == "node9"]
    assert far == [
        "node9 - - - - - (agent not reachable from here: run calicoctl on the node or set "
        "CALICO_AGENTS)"
    ]
    plain = _ctl(node, "get", "globalnetworkpolicy", "b-in", "-o", "wide").stdout
    listing = _ctl(node, "get", "globalnetworkpolicy", "-o", "wide").stdout
    assert "RULE COUNTERS" in plain
    assert "RULE COUNTERS" not in listing  # only for policies asked for by name
