"""A real agent's control socket: explain agrees with real packets, rule counters survive a
restart and a drift repair, the metrics carry them, the TCP listener, bad questions."""

from __future__ import annotations

import random
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
