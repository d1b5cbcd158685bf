"""Dataplane test inputs: a dpapi stream covering every chain kind, and a recording runner."""

from __future__ import annotations

from calico.calc.graph import CalcGraph
from calico.dataplane import loop, nft_table, route_table, static_chains
from calico.dpapi import messages as m
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


class NoRoutes(route_table.RouteTable):
    """Records desired routes; no kernel."""

    def apply(self) -> None:
        self._resync = False
        self._applied = dict(self._desired)
        self._dirty_ifaces.clear()


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


def messages() -> list[m.Message]:
    graph = CalcGraph("node1")
    graph.on_in_sync()
    objs = [*policy_cases.base_resources(), HEP, *HOST_POLICIES]
    for case in policy_cases.CASES:
        objs += case.resources
    return states.feed(graph, states.kvs(objs))


def dataplane(runner: RecordingRunner) -> loop.InternalDataplane:
    cfg = loop.DataplaneConfig(
        static=static_chains.StaticConfig(
            default_endpoint_to_host_action="RETURN",
            failsafe_inbound=(("tcp", 22), ("udp", 68), ("tcp", 179)),
            failsafe_outbound=(("udp", 53),),
        )
    )
    return loop.InternalDataplane(nft_table.NftTable(runner), NoRoutes(), cfg)
