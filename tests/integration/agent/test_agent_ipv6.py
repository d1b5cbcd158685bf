"""IPv6 through the same chains: v6 routes, v6 selector sets, ICMPv6, and a policy whose meaning
differs by family (notNets given for IPv6 only)."""

from __future__ import annotations

import pytest

from tests.integration.agent.harness import Matrix, Node, sh

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_agent_ipv6(node: Node) -> None:
    node.add_workload("a", "10.65.0.2", {"app": "a"}, ip6="fd65::2")
    node.add_workload("b", "10.65.0.3", {"app": "b"}, ip6="fd65::3")
    node.add_workload("c", "10.65.0.4", {"app": "c"}, ip6="fd65::4")
    node.start_agent()
    mx = Matrix(node)
    for proto, port in (("tcp", 80), ("udp", 53), ("icmp", 0)):
        mx.expect("a", "b", proto, port, ok=True, v6=True)
        mx.expect("c", "b", proto, port, ok=True, v6=True)
    mx.check()
    assert "fd65::2 dev" in sh("ip", "-n", node.ns, "-6", "route", "show", "proto", "80")

    node.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "b", "namespace": "default"},
            "spec": {
                "selector": "app == 'b'",
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'a'"}},
                    {"action": "Allow", "protocol": "ICMPv6"},
                    {"action": "Allow", "protocol": "UDP", "source": {"notNets": ["fd65::2/128"]}},
                ],
            },
        }
    )
    mx = Matrix(node)
    mx.expect("a", "b", "tcp", 80, ok=True, v6=True)
    mx.expect("c", "b", "tcp", 80, ok=False, v6=True)
    mx.expect("c", "b", "icmp", ok=True, v6=True)
    mx.expect("a", "b", "udp", 53, ok=False, v6=True)  # notNets excludes a's v6 address...
    mx.expect("a", "b", "udp", 53, ok=True)  # ...but not its v4 one
    mx.expect("c", "b", "udp", 53, ok=True, v6=True)
    mx.expect("a", "b", "icmp", ok=False)  # ICMPv6 rule does not allow v4 ICMP
    mx.check()
