"""Host endpoints: default deny with failsafe ports, normal / applyOnForward / preDNAT /
doNotTrack policies, and DefaultEndpointToHostAction from FelixConfiguration (live)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.agent.harness import NODE_IP, NODENAME, Matrix, Node

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def gnp(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": "role == 'host'", **spec},
    }


def felix_config(action: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": {"defaultEndpointToHostAction": action},
    }


def test_agent_host_endpoint(node: Node) -> None:
    node.add_workload("a", "10.65.0.2", {"app": "a"})
    node.apply(felix_config("Accept"))
    node.start_agent(FELIX_DEFAULTENDPOINTTOHOSTACTION=None)
    mx = Matrix(node)
    mx.expect("a", "host", "tcp", 8080, ok=True)
    mx.expect("ext", "host", "tcp", 8080, ok=True)  # no host endpoint yet: not policed
    mx.check()

    node.apply(felix_config("Drop"))  # live config change
    mx.expect("a", "host", "tcp", 8080, ok=False)
    mx.check()

    node.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "HostEndpoint",
            "metadata": {"name": f"{NODENAME}-eth0", "labels": {"role": "host"}},
            "spec": {"node": NODENAME, "interfaceName": "eth0", "expectedIPs": [NODE_IP]},
        }
    )
    mx = Matrix(node)
    mx.expect("ext", "host", "tcp", 8080, ok=False)  # default deny
    mx.expect("ext", "host", "tcp", 22, ok=True)  # failsafe inbound
    mx.expect("host", "ext", "tcp", 80, ok=False)
    mx.expect("host", "ext", "udp", 53, ok=True)  # failsafe outbound
    mx.expect("ext", "a", "tcp", 80, ok=True)  # forwarded: no applyOnForward policy -> allowed
    mx.check()

    node.apply(
        gnp(
            "allow-8080",
            order=100,
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}],
        )
    )
    node.apply(
        gnp(
            "fwd-deny",
            order=10,
            applyOnForward=True,
            ingress=[{"action": "Deny", "destination": {"nets": ["10.65.0.0/16"]}}],
        )
    )
    mx.expect("ext", "host", "tcp", 8080, ok=True)
    mx.expect("ext", "a", "tcp", 80, ok=False)
    mx.check()

    node.apply(
        gnp(
            "prednat-deny",
            preDNAT=True,
            applyOnForward=True,
            ingress=[
                {
                    "action": "Deny",
                    "protocol": "TCP",
                    "source": {"nets": ["10.99.0.1/32"]},
                    "destination": {"ports": [8080]},
                }
            ],
        )
    )
    mx.expect("ext", "host", "tcp", 8080, ok=False)
    mx.check()

    node.apply(
        gnp(
            "untracked-80",
            doNotTrack=True,
            applyOnForward=True,
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
            egress=[{"action": "Allow", "protocol": "TCP", "source": {"ports": [80]}}],
        )
    )
    mx.expect("ext", "host", "tcp", 80, ok=True)  # allowed untracked, not by normal policy
    mx.check()
