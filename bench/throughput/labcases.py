"""The lab side of the throughput bench: a 2-node calico-lab, three pods, iperf3 servers, and
1,000 Calico NetworkPolicies that select the pods.

Pods (namespace ``tput``, responder on TCP 80), two identical groups: ``client`` and ``local`` on
node1, ``remote`` on node2, labelled ``app=tput``, and the same three with a ``u-`` prefix
labelled ``app=free``; iperf3 servers run in ``local`` (same-node path) and ``remote``
(cross-node path) of each group. Policy ``i`` selects the ``app=tput`` pods only and allows TCP
5201 (iperf3) and 10000+i in and out, so once policies are in force the ``tput`` group's port 80
is denied while the ``free`` group's is not: that, plus every policy's chain in the nodes' nft
table, is how the bench knows the policies are programmed before it measures. The ``free`` group
is the no-policy path measured in the same rounds as the policy path.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bench.throughput import iperf
from calico.lib import cmd
from calico_lab import cluster, network, objects, probe, state
from calico_lab.state import LabState, PodState

NAMESPACE = "tput"
ROLES = {"client": "node1", "local": "node1", "remote": "node2"}
GROUPS = {"": "tput", "u-": "free"}  # pod name prefix -> app label (policies select "tput")
TUNNEL_DEV = {"vxlan": "vxlan.calico", "ipip": "tunl0"}


@dataclass
class LabCase:
    mode: str  # direct | vxlan | ipip
    options: dict[str, object]
    name: str = field(default_factory=lambda: f"tput{secrets.token_hex(3)}")
    servers: list[iperf.Server] = field(default_factory=list)

    @property
    def lab(self) -> LabState:
        return state.require(self.name)

    def pod(self, role: str) -> PodState:
        return self.lab.pod(f"{NAMESPACE}/{role}")

    def paths(self, group: str = "") -> dict[str, tuple[str, str]]:
        """placement -> (client namespace, server address) of one pod group."""
        client = self.pod(f"{group}client").netns
        return {
            "same-node": (client, self.pod(f"{group}local").ip),
            "cross-node": (client, self.pod(f"{group}remote").ip),
        }


def manifest() -> str:
    items: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    for prefix, app in GROUPS.items():
        for role, node in ROLES.items():
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{prefix}{role}",
                        "namespace": NAMESPACE,
                        "labels": {"app": app},
                    },
                    "spec": {
                        "nodeName": node,
                        "containers": [{"name": "c", "ports": [{"containerPort": 80}]}],
                    },
                }
            )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def start(mode: str, options: dict[str, object]) -> LabCase:
    case = LabCase(mode, options)
    cluster.up(case.name, len(set(ROLES.values())), options=network.requested(2, **options))  # type: ignore[arg-type]
    with cluster.session(case.name) as (lab, store):
        objects.apply(lab, store, objects.parse(manifest()), lambda _: None)
    for prefix in GROUPS:
        for role in ("local", "remote"):
            case.servers.append(iperf.Server(case.pod(f"{prefix}{role}").netns))
    return case


def stop(case: LabCase) -> None:
    for server in case.servers:
        server.stop()
    cluster.down(case.name)


def _connects(case: LabCase, role: str, group: str = "") -> bool:
    src, dst = f"{NAMESPACE}/{group}client", f"{NAMESPACE}/{group}{role}"
    return probe.probe(case.lab, src, dst, port=80, timeout=0.5)


def _route_dev(node_netns: str, ip: str) -> str:
    out = cmd.run_process(
        ["ip", "-n", node_netns, "-j", "route", "get", ip],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    try:
        return str(json.loads(out)[0].get("dev", ""))
    except (ValueError, IndexError):
        return ""


def path_problem(case: LabCase, *, within: float = 30.0) -> str:
    """ "" when both paths carry traffic (and, for an encapsulating mode, node1 routes the remote
    pod through the tunnel device); otherwise what is missing."""
    dev = TUNNEL_DEV.get(case.mode)
    node1 = case.lab.node("node1").netns
    remote = case.pod("remote").ip
    deadline = time.monotonic() + within
    while True:
        routed = _route_dev(node1, remote)
        ok = (
            (dev is None or routed == dev)
            and _connects(case, "local")
            and _connects(case, "remote")
        )
        if ok:
            return ""
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if dev is not None and routed != dev:
        return (
            f"{dev.split('.')[0].upper()} routes are missing: node1 routes the remote pod "
            f"{remote} via {routed or 'nothing'}, not {dev}"
        )
    return "pods do not connect (see the lab's logs)"


def policy(i: int) -> dict[str, Any]:
    ports = [iperf.PORT, 10000 + i]
    return {
        "apiVersion": objects.CALICO_API,
        "kind": "NetworkPolicy",
        "metadata": {"name": f"tput-{i:04d}", "namespace": NAMESPACE},
        "spec": {
            "selector": "app == 'tput'",
            "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ports}}],
            "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ports}}],
        },
    }


def _policy_chains(node_netns: str) -> int:
    out = cmd.run_process(
        ["ip", "netns", "exec", node_netns, "nft", "list", "chains", "inet"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(1 for line in out.splitlines() if "chain cali-pi-" in line)


def apply_policies(case: LabCase, n: int, *, within: float = 300.0) -> float:
    """Write ``n`` policies; wait until both nodes program them and port 80 is denied. Returns
    the seconds it took."""
    started = time.monotonic()
    docs = [objects.Doc(policy(i), f"policy {i}") for i in range(n)]
    with cluster.session(case.name) as (lab, store):
        objects.apply(lab, store, docs, lambda _: None)
    nodes = [case.lab.node(node).netns for node in sorted(set(ROLES.values()))]
    deadline = started + within
    while not (
        all(_policy_chains(ns) >= n for ns in nodes)
        and not _connects(case, "local")
        and not _connects(case, "remote")
    ):
        if not (_connects(case, "local", "u-") and _connects(case, "remote", "u-")):
            raise RuntimeError("the policies cut off the free pods, which none of them selects")
        if time.monotonic() > deadline:
            counts = {ns: _policy_chains(ns) for ns in nodes}
            raise RuntimeError(f"{n} policies not programmed after {within:.0f}s: {counts}")
        time.sleep(1.0)
    return time.monotonic() - started
