"""Restart: kill the agent under traffic; an established flow keeps flowing; change the datastore
while it is down; start it again: the change is enforced and what no longer belongs is gone."""

from __future__ import annotations

import time

import pytest

from tests.integration.agent.harness import Matrix, Node, sh

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_agent_restart_adopts_then_reconciles(node: Node) -> None:
    a = node.add_workload("a", "10.65.0.2", {"app": "a"})
    b = node.add_workload("b", "10.65.0.3", {"app": "b"})
    gone = node.add_workload("gone", "10.65.0.9", {"app": "gone"})
    node.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "old-policy", "namespace": "default"},
            "spec": {"selector": "app == 'b'", "ingress": [{"action": "Allow"}]},
        }
    )
    node.start_agent()
    node.wait_ready()
    mx = Matrix(node)
    mx.expect("a", "b", ok=True)
    mx.expect("a", "gone", ok=True)
    mx.check()
    assert "cali-pi-default/old-policy" in node.nft("list", "table", "inet", "calico")
    assert a.prober is not None
    assert a.prober.ask(f"hold {b.ip} 80")

    node.kill_agent()
    assert a.prober.ask("held"), "established flow broken by the agent's death"
    # While the agent is down: new deny policy for b, the old policy and a workload deleted.
    node.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "new-policy", "namespace": "default"},
            "spec": {"selector": "app == 'b'", "ingress": [{"action": "Deny"}]},
        }
    )
    node.delete("NetworkPolicy", "old-policy", "default")
    node.delete("WorkloadEndpoint", gone.wep()["metadata"]["name"], "default")
    # The old table keeps enforcing: still open (nothing changed in the kernel yet).
    time.sleep(0.5)
    mx2 = Matrix(node)
    mx2.expect("a", "b", ok=True)
    mx2.check(timeout=2)

    node.start_agent()
    deadline = time.monotonic() + 10
    while f"{gone.ip} dev" in node_routes(node):  # the agent sweeps the stale proto-80 route
        assert time.monotonic() < deadline, node_routes(node) + node.log_tail()
        time.sleep(0.1)
    # Keep "gone" routable (a route the agent does not own), so only the policy can stop it.
    sh("ip", "-n", node.ns, "route", "add", f"{gone.ip}/32", "dev", gone.iface, "scope", "link")
    mx3 = Matrix(node)
    mx3.expect("a", "b", ok=False)
    mx3.expect("b", "a", ok=True)
    mx3.expect("a", "gone", ok=False)  # unknown cali interface now: dropped (fail closed)
    mx3.check()
    assert a.prober.ask("held"), "established flow broken by the restart"
    table = node.nft("list", "table", "inet", "calico")
    assert "cali-pi-default/old-policy" not in table
    assert "cali-pi-default/new-policy" in table
    assert f"cali-tw-{gone.iface}" not in table
    routes = node_routes(node)
    assert f"{a.ip} dev {a.iface}" in routes, routes


def node_routes(node: Node) -> str:
    return sh("ip", "-n", node.ns, "route", "show", "proto", "80")
