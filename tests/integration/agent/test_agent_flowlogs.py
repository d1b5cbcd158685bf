"""Flow logs with the real kernel: nft log twins -> NFLOG -> the agent's reader -> flows.log.

Denied and allowed flows appear with the policy, tier and rule that decided them and both ends
named; the kernel's rate limit holds under a flood (and the flood's verdicts are all drops);
staged policies add their verdict without changing the real one; the file set rotates.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from calico.lib import control, netns
from tests.integration.agent.harness import Matrix, Node

pytestmark = [pytest.mark.netns, pytest.mark.etcd]

FAST = {"FELIX_FLOWLOGSFLUSHINTERVAL": "0.3"}
FLOW_LOGS_OFF = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "FelixConfiguration",
    "metadata": {"name": "default"},
    "spec": {"flowLogsFileEnabled": False},
}
CALICOCTL = str(Path(sys.executable).with_name("calicoctl"))


def gnp(name: str, selector: str, ingress: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ingress": ingress, "types": ["Ingress"], **spec},
    }


def tcp_to(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "destination": {"ports": [port]}}


def with_ends(
    recs: list[dict[str, Any]], src: str, dst: str, port: int, reporter: str = "dst"
) -> list[dict[str, Any]]:
    return [
        r
        for r in recs
        if (r["source_name"], r["dest_name"], r["dest_port"]) == (src, dst, port)
        and r["reporter"] == reporter
    ]


def two_workloads(node: Node) -> None:
    node.add_workload("client", "10.65.0.2", {"app": "client"})
    node.add_workload("server", "10.65.0.3", {"app": "server"})


def test_denied_and_allowed_flows_name_their_rule(node: Node) -> None:
    two_workloads(node)
    node.apply(
        gnp(
            "guard",
            "app == 'server'",
            [
                {"action": "Log"},
                {"action": "Deny", **tcp_to(80)},
                {"action": "Allow", **tcp_to(8080)},
            ],
            order=10,
        )
    )
    node.start_agent(**FAST, FELIX_FLOWLOGSFILEENABLEDFORALLOWED="true")
    node.wait_ready()
    mx = Matrix(node)
    mx.expect("client", "server", "tcp", 80, ok=False)
    mx.expect("client", "server", "tcp", 8080, ok=True)
    mx.expect("client", "server", "tcp", 22, ok=False)  # no rule: the tier's default drop
    mx.check()

    def ready(recs: list[dict[str, Any]]) -> bool:
        return all(with_ends(recs, "client", "server", p) for p in (80, 8080, 22))

    recs = node.wait_flows(ready)
    denied = with_ends(recs, "client", "server", 80)[0]
    assert denied["action"] == "deny"
    assert denied["reporter"] == "dst"
    assert denied["policy"] == {"by": "rule", "tier": "default", "policy": "guard", "rule": 1}
    assert denied["proto"] == "tcp"
    assert (denied["source_ip"], denied["dest_ip"]) == ("10.65.0.2", "10.65.0.3")
    assert denied["source_type"] == denied["dest_type"] == "wep"
    assert denied["source_namespace"] == "default"
    assert denied["dest_labels"]["app"] == "server"
    assert denied["host"] == "node1"
    assert denied["packets"] >= 1
    assert denied["staged"] is None
    tier_default = with_ends(recs, "client", "server", 22)[0]
    assert tier_default["action"] == "deny"
    assert tier_default["policy"] == {"by": "tier-default", "tier": "default"}
    allowed = with_ends(recs, "client", "server", 8080)
    assert allowed[0]["action"] == "allow"
    assert allowed[0]["policy"] == {"by": "rule", "tier": "default", "policy": "guard", "rule": 2}
    # The client's egress: no policy selects it, its profile allowed it (first packet only).
    egress = with_ends(recs, "client", "server", 8080, "src")
    assert egress[0]["policy"] == {"by": "profile", "tier": None, "profile": "kns.default",
                                   "rule": 0}  # fmt: skip
    # One record per flow and interval: the allowed connection's later packets are not logged.
    assert sum(r["packets"] for r in allowed) == len(allowed)


def test_only_denials_by_default(node: Node) -> None:
    two_workloads(node)
    node.apply(gnp("guard", "app == 'server'", [{"action": "Deny", **tcp_to(80)},
                                                {"action": "Allow"}]))  # fmt: skip
    node.start_agent(**FAST)
    node.wait_ready()
    mx = Matrix(node)
    mx.expect("client", "server", "tcp", 80, ok=False)
    mx.expect("client", "server", "tcp", 8080, ok=True)
    mx.check()
    recs = node.wait_flows(lambda rs: bool(with_ends(rs, "client", "server", 80)))
    time.sleep(0.8)  # two more intervals: nothing about the allowed flow turns up
    assert not with_ends(node.flows(), "client", "server", 8080)
    assert 'log prefix "DI:' in node.nft("list", "chain", "inet", "calico", "cali-pi-guard")
    assert recs[0]["policy"]["policy"] == "guard"


def flood(node: Node, src: str, dst_ip: str, port: int, count: int) -> float:
    """``count`` UDP datagrams from ``src``, each from a new source port (a new flow)."""

    def send() -> float:
        start = time.monotonic()
        socks = []
        for i in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x", (dst_ip, port))
            socks.append(s)
            if len(socks) > 200:
                for old in socks:
                    old.close()
                socks = []
            if i % 500 == 0:
                time.sleep(0.001)
        for s in socks:
            s.close()
        return time.monotonic() - start

    return float(netns.call_in(node.workloads[src].ns, send))


def test_rate_limit_holds_under_a_flood(node: Node) -> None:
    two_workloads(node)
    node.apply(gnp("guard", "app == 'server'", [{"action": "Deny", "protocol": "UDP"}]))
    rate = 100
    node.start_agent(**FAST, FELIX_FLOWLOGSRATELIMIT=str(rate))
    node.wait_ready()
    mx = Matrix(node)
    mx.expect("client", "server", "udp", 53, ok=False)
    mx.check()
    time.sleep(1.5)  # the limit's bucket refills after the probes
    before = sum(r["packets"] for r in node.flows())
    secs = flood(node, "client", "10.65.0.3", 53, 5000)
    time.sleep(1.0)
    logged = sum(r["packets"] for r in node.flows()) - before
    assert logged >= rate // 2  # the bucket (refilled) let a burst through
    # At most the burst (= rate) plus rate/s for the flood's duration; 20% slack for timing.
    assert logged <= (rate + rate * (secs + 0.5)) * 1.2, (logged, secs)
    # Every datagram still met its verdict: the drop rule counted them all.
    listing = node.nft("-j", "list", "chain", "inet", "calico", "cali-pi-guard")
    dropped = [e["counter"]["packets"] for o in json.loads(listing)["nftables"]
               for e in o.get("rule", {}).get("expr", []) if "counter" in e]  # fmt: skip
    assert sum(dropped) >= 5000


def test_files_rotate_and_stay_bounded(node: Node) -> None:
    two_workloads(node)
    node.apply(gnp("guard", "app == 'server'", [{"action": "Deny", "protocol": "UDP"}]))
    node.start_agent(
        **FAST,
        FELIX_FLOWLOGSRATELIMIT="20000",
        FELIX_FLOWLOGSFILEMAXFILESIZEMB="1",
        FELIX_FLOWLOGSFILEMAXFILES="2",
    )
    node.wait_ready()
    logdir = node.tmp / "log" / "flowlogs"
    for _ in range(6):  # ~700 bytes a record, a new flow per datagram: > 2 MB in all
        flood(node, "client", "10.65.0.3", 53, 1500)
        time.sleep(0.5)
    time.sleep(1.0)
    names = sorted(p.name for p in logdir.iterdir())
    assert names == ["flows.log", "flows.log.1"], names
    assert all(p.stat().st_size <= (1 << 20) for p in logdir.iterdir())
    assert "flows.log.2" not in names
    assert len(node.flows()) > 1000


def test_staged_policies_add_their_verdict_and_change_nothing(node: Node) -> None:
    two_workloads(node)
    real = [{"action": "Allow", **tcp_to(80)}, {"action": "Deny", **tcp_to(8080)}]
    node.apply(gnp("guard", "app == 'server'", real, order=10))
    # Staged: the replacement of "guard" that flips both verdicts.
    flipped_rules = [{"action": "Deny", **tcp_to(80)}, {"action": "Allow", **tcp_to(8080)}]
    staged = gnp("guard", "app == 'server'", flipped_rules, order=10)
    staged["kind"] = "StagedGlobalNetworkPolicy"
    node.apply(staged)
    node.start_agent(**FAST)
    node.wait_ready()
    mx = Matrix(node)  # the real verdicts, unchanged by the staged policy
    mx.expect("client", "server", "tcp", 80, ok=True)
    mx.expect("client", "server", "tcp", 8080, ok=False)
    mx.check()

    def ready(recs: list[dict[str, Any]]) -> bool:
        return bool(with_ends(recs, "client", "server", 80)) and bool(
            with_ends(recs, "client", "server", 8080)
        )

    recs = node.wait_flows(ready)
    flipped = with_ends(recs, "client", "server", 80)[0]  # allowed now, denied when promoted
    assert flipped["action"] == "allow"
    assert flipped["policy"] == {"by": "tier", "tier": "default"}
    assert flipped["staged"]["action"] == "deny"
    assert flipped["staged"]["point"] == {"by": "rule", "tier": "default",
                                          "policy": "staged:guard", "rule": 0}  # fmt: skip
    assert flipped["staged"]["policies"] == ["staged:guard"]
    opened = with_ends(recs, "client", "server", 8080)[0]
    assert opened["action"] == "deny"
    assert opened["policy"]["policy"] == "guard"
    assert opened["staged"]["action"] == "allow"
    # Removing the staged policy removes the staged walk and its chains.
    node.delete("StagedGlobalNetworkPolicy", "guard")
    deadline = time.monotonic() + 10
    while "cali-swi-" in node.nft("list", "table", "inet", "calico"):
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.2)
    mx.check()


def test_calicoctl_flows_asks_the_agent_and_follows(node: Node) -> None:
    """With a long interval, ``calicoctl flows`` still shows a denial at once (it asks the agent
    to write first), and ``--follow`` streams later ones from the agent's control socket."""
    two_workloads(node)
    node.apply(gnp("guard", "app == 'server'", [{"action": "Deny", **tcp_to(80)},
                                                {"action": "Allow"}]))  # fmt: skip
    node.start_agent(FELIX_FLOWLOGSFLUSHINTERVAL="300s")
    node.wait_ready()
    mx = Matrix(node)
    mx.expect("client", "server", "tcp", 80, ok=False)
    mx.check()
    env = {**os.environ, "CALICO_RUN_DIR": str(node.tmp / "run"), "NODENAME": "node1"}
    proc = subprocess.run([CALICOCTL, "flows", "--action", "deny", "-o", "json"], env=env,
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    recs = [json.loads(line) for line in out.splitlines()]
    assert with_ends(recs, "client", "server", 80), out
    follow = subprocess.Popen([CALICOCTL, "flows", "--follow", "-o", "json"], env=env,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert follow.stdout is not None
        time.sleep(1.0)
        mx = Matrix(node)
        mx.expect("client", "server", "tcp", 80, ok=False)
        mx.check()
        control.call(str(node.tmp / "run" / "felix-control.sock"), "flows-flush", {})
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not with_ends(seen, "client", "server", 80):
            ready, _, _ = select.select([follow.stdout], [], [], 0.5)
            if ready:
                seen.append(json.loads(follow.stdout.readline()))
        assert with_ends(seen, "client", "server", 80), seen
    finally:
        follow.terminate()
        follow.wait(timeout=10)


def test_restart_and_switching_off_sweep_what_flow_logs_made(node: Node) -> None:
    """Flow-log objects (the limit, log twins, the staged walk and its shadow chains) are ours:
    a restarted agent that no longer wants them sweeps them; switched off live, they go too."""
    two_workloads(node)
    node.apply(gnp("guard", "app == 'server'", [{"action": "Deny", **tcp_to(80)},
                                                {"action": "Allow"}]))  # fmt: skip
    staged = gnp("guard", "app == 'server'", [{"action": "Allow"}])
    staged["kind"] = "StagedGlobalNetworkPolicy"
    node.apply(staged)
    node.start_agent(**FAST)
    node.wait_ready()
    table = node.nft("list", "table", "inet", "calico")
    assert "limit cali-flowlog" in table
    assert "cali-swi-" in table and "cali-spi-" in table  # noqa: PT018
    node.kill_agent()
    node.delete("StagedGlobalNetworkPolicy", "guard")
    node.apply(FLOW_LOGS_OFF)
    node.start_agent()
    node.wait_ready()
    table = node.nft("list", "table", "inet", "calico")
    for made in ("limit cali-flowlog", "log prefix", "cali-swi-", "cali-spi-", "cali-sti-"):
        assert made not in table, made
    # On again (live), then off again (live): the delta path adds and removes them.
    node.delete("FelixConfiguration", "default")
    deadline = time.monotonic() + 10
    while "log prefix" not in node.nft("list", "table", "inet", "calico"):
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.2)
    node.apply(FLOW_LOGS_OFF)
    deadline = time.monotonic() + 10
    while "limit cali-flowlog" in node.nft("list", "table", "inet", "calico"):
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.2)
    assert "log prefix" not in node.nft("list", "table", "inet", "calico")
    mx = Matrix(node)
    mx.expect("client", "server", "tcp", 80, ok=False)
    mx.expect("client", "server", "tcp", 8080, ok=True)
    mx.check()
    assert node.agent is not None
    assert node.agent.poll() is None, node.log_tail()
