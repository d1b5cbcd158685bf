"""Dataplane test inputs: a dpapi stream covering every chain kind, and a recording runner."""

from __future__ import annotations

from typing import Any

from calico.calc.graph import CalcGraph
from calico.dataplane import links, loop, neighbors, nft_table, route_table, static_chains
from calico.dpapi import messages as m
from calico.ipam import keys as ipam_keys
from tests.unit.calc import policy_cases, states


class RecordingRunner:
    """Stands in for libnftables: records scripts; can be told to fail once."""

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.fail_next = False

    def run(self, script: str, *, json: bool = False) -> str:
        if self.fail_next:
            self.fail_next = False
            from calico.dataplane.libnft import NftError

            raise NftError("injected failure")
        self.scripts.append(script)
        return ""


class FakeIP:
    """Stands in for ip/bridge: records every command; reads answer from ``reads`` (else [])."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.reads: dict[str, str] = {}

    def run(self, argv: list[str], *, input: str | None = None) -> str:
        self.calls.append((list(argv), input))
        return self.reads.get(" ".join(argv), "[]" if "-j" in argv else "")

    def batches(self, tool: str = "ip") -> list[str]:
        return [i or "" for a, i in self.calls if a[0] == tool and "-batch" in a]


class NoRoutes(route_table.RouteTable):
    """Records desired routes; no kernel."""

    def apply(self) -> None:
        self._resync = False
        self._applied = {i: dict(r) for i, r in self._desired.items()}
        self._dirty.clear()


HEP = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "HostEndpoint",
    "metadata": {"name": "node1-eth0", "labels": {"role": "host"}},
    "spec": {"node": "node1", "interfaceName": "eth0", "expectedIPs": ["10.99.0.11"]},
}
HOST_POLICIES = [
    policy_cases.gnp(
        "host-normal",
        {
            "selector": "role == 'host'",
            "order": 10,
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}],
            "egress": [{"action": "Allow"}],
        },
    ),
    policy_cases.gnp(
        "host-fwd",
        {
            "selector": "role == 'host'",
            "applyOnForward": True,
            "ingress": [{"action": "Deny", "source": {"nets": ["10.0.0.0/8", "fd00::/8"]}}],
        },
    ),
    policy_cases.gnp(
        "host-prednat",
        {
            "selector": "role == 'host'",
            "preDNAT": True,
            "applyOnForward": True,
            "ingress": [{"action": "Deny"}],
        },
    ),
    policy_cases.gnp(
        "host-untracked",
        {
            "selector": "role == 'host'",
            "doNotTrack": True,
            "applyOnForward": True,
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
        },
    ),
]


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def node(name: str, addr: str, tunnel: str, mac: str) -> dict[str, Any]:
    spec = {"bgp": {"ipv4Address": addr}, "ipv4VXLANTunnelAddr": tunnel, "vxlanTunnelMACAddr": mac}
    return resource("Node", name, spec)


# Two nodes on different subnets, a VXLAN CrossSubnet pool with natOutgoing, an IPv6 pool, and a
# block of node2's: the network half of the table (masquerade, tunnel filter, a VXLAN route).
NETWORK = [
    resource(
        "IPPool",
        "pool4",
        {"cidr": "10.65.0.0/16", "natOutgoing": True, "vxlanMode": "CrossSubnet"},
    ),
    resource("IPPool", "pool6", {"cidr": "fd00:65::/48", "natOutgoing": True}),
    resource("IPPool", "off", {"cidr": "10.66.0.0/16", "disabled": True}),
    node("node1", "10.99.0.11/24", "10.65.0.128", "66:ca:11:00:00:01"),
    node("node2", "10.99.1.12/24", "10.65.1.0", "66:ca:11:00:00:02"),
]
BLOCK = (
    ipam_keys.block_prefix(4) + "10.65.1.0-26",
    {"cidr": "10.65.1.0/26", "affinity": "host:node2"},
)


def messages() -> list[m.Message]:
    graph = CalcGraph("node1")
    graph.on_in_sync()
    objs = [*policy_cases.base_resources(), HEP, *HOST_POLICIES, *NETWORK]
    for case in policy_cases.CASES:
        objs += case.resources
    return states.feed(graph, [*states.kvs(objs), BLOCK])


def dataplane(runner: RecordingRunner, ip: FakeIP | None = None) -> loop.InternalDataplane:
    cfg = loop.DataplaneConfig(
        static=static_chains.StaticConfig(
            default_endpoint_to_host_action="RETURN",
            failsafe_inbound=(("tcp", 22), ("udp", 68), ("tcp", 179)),
            failsafe_outbound=(("udp", 53),),
        )
    )
    ip = ip or FakeIP()
    return loop.InternalDataplane(
        nft_table.NftTable(runner),
        NoRoutes(runner=ip),
        cfg,
        hostname="node1",
        links_=links.Links(runner=ip),
        neighbors_=neighbors.Neighbors(runner=ip),
    )
