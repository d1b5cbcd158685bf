"""``explain`` on a 3-node calico-lab: for every pair of the probe matrix, what the agents explain
is what the probe saw.

The NetworkPolicy matrix's world (namespaces x, y, z; pods a, b, c spread over three nodes) with
a policy mix across tiers: a ``security`` tier (Pass) that only logs, a ``platform`` tier (Deny)
that denies z/c into x and passes the rest, a Kubernetes NetworkPolicy in x (from y only), a
Calico NetworkPolicy in y (no UDP from z, Allow the rest) and a GlobalNetworkPolicy on z/b's
egress (no TCP 80). Once the probes match the rule written from Calico's semantics, every cell
(src != dst, TCP 80 and UDP 81) is explained — egress asked of the source node's agent, ingress
of the destination node's — and compared with the probe. ``calico-lab explain`` itself is run
for a denied and an allowed cell and for bad input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from calico.cli import explain_cmd
from calico_lab import cluster, execute
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, check, expected
from tests.e2e.test_lab_netpol import ALL, manifests, np, ns_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

TARGETS = [(80, "TCP"), (81, "UDP")]


def _tier(name: str, order: int, action: str) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
            "spec": {"order": order, "defaultAction": action}}  # fmt: skip


def _calico(kind: str, name: str, spec: dict[str, Any], ns: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


POLICIES = [
    _tier("security", 50, "Pass"),
    _tier("platform", 100, "Deny"),
    _calico("GlobalNetworkPolicy", "security.log-all",
            {"tier": "security", "selector": "all()", "ingress": [{"action": "Log"}]}),
    _calico("GlobalNetworkPolicy", "platform.guard-x", {
        "tier": "platform", "namespaceSelector": "ns == 'x'",
        "ingress": [{"action": "Deny", "source": {"namespaceSelector": "ns == 'z'",
                                                  "selector": "pod == 'c'"}},
                    {"action": "Pass"}]}),
    np("from-y", "x", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    _calico("NetworkPolicy", "no-udp-from-z", {
        "selector": "all()",
        "ingress": [{"action": "Deny", "protocol": "UDP",
                     "source": {"namespaceSelector": "ns == 'z'"}}, {"action": "Allow"}]}, "y"),
    _calico("GlobalNetworkPolicy", "z-b-no-tcp-80", {
        "selector": "projectcalico.org/namespace == 'z' && pod == 'b'", "types": ["Egress"],
        "egress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [80]}},
                   {"action": "Allow"}]}),
]  # fmt: skip


def allowed(s: str, d: str, port: int, proto: str) -> bool:
    if s == "z/b" and proto == "TCP" and port == 80:
        return False  # z/b's egress
    if ns_of(d) == "x":
        return s != "z/c" and ns_of(s) == "y"  # platform denies z/c; then x's NetworkPolicy
    if ns_of(d) == "y":
        return not (ns_of(s) == "z" and proto == "UDP")
    return True  # z: only the security tier (log, Pass) and the profile


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    root = tmp_path_factory.mktemp("labroot")
    with lab_support.running_lab(root, "why", "--nodes", "3") as handle:
        handle.apply(manifests())
        handle.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": POLICIES}))
        yield handle


def test_explain_equals_the_probe_for_every_pair(lab: LabHandle) -> None:
    want = expected(ALL, TARGETS, allowed)
    check(lab, want, within=60)
    got = lab.matrices(TARGETS)
    assert got == want
    agents = (execute.agents_template(lab.state()),)
    wrong, nodes = [], set()
    with cluster.session(lab.name) as (_, store):
        for (port, proto), matrix in got.items():
            for src, row in matrix.items():
                for dst, probed in row.items():
                    if src == dst:
                        continue  # loopback inside the pod: no policy on the way
                    doc = explain_cmd.explain(store, src, dst, port=port, protocol=proto,
                                              agents=agents)  # fmt: skip
                    nodes.add(doc["egress"]["node"])
                    assert doc["egress"]["agrees"], doc["egress"]
                    assert doc["ingress"]["agrees"], doc["ingress"]
                    if (doc["verdict"] == "allow") != probed:
                        wrong.append(f"{proto}/{port} {src} -> {dst}: probe {probed}, explain "
                                     f"{doc['verdict']}")  # fmt: skip
        assert not wrong, "\n".join(wrong)
        assert nodes == {"node1", "node2", "node3"}  # every node's agent was asked
        # What decided, for a few cells.
        doc = explain_cmd.explain(store, "z/c", "x/a", port=80, protocol="TCP", agents=agents)
        v = doc["ingress"]["verdict"]
        assert (v["tier"], v["policy"], v["rule"]) == ("platform", "platform.guard-x", 0)
        tiers = doc["ingress"]["stages"][0]["tiers"]
        assert [t["tier"] for t in tiers] == ["security", "platform"]
        assert tiers[0]["outcome"] == "end of tier: defaultAction Pass, next tier"
        doc = explain_cmd.explain(store, "x/b", "x/a", port=80, protocol="TCP", agents=agents)
        v = doc["ingress"]["verdict"]
        assert (v["by"], v["tier"]) == ("tier-default", "default")
        doc = explain_cmd.explain(store, "z/b", "y/a", port=80, protocol="TCP", agents=agents)
        v = doc["egress"]["verdict"]
        assert (v["policy"], v["rule"]) == ("z-b-no-tcp-80", 0)


def test_calico_lab_explain(lab: LabHandle) -> None:
    check(lab, expected(ALL, TARGETS, allowed), within=60)
    out = lab.cli("explain", "z/c", "x/a", "--port", "80").stdout
    first, second = out.splitlines()[:2]
    assert first.startswith("z/c -> x/a (TCP ")
    assert first.endswith("port 80): DENIED")
    assert second.startswith("  ingress at x/a: DENIED by tier platform, policy platform.guard-x, "
                             "rule 0: Deny, source {")  # fmt: skip
    out = lab.cli("explain", "y/b", "x/c", "--port", "81", "--protocol", "UDP").stdout
    assert out.splitlines()[0].endswith("port 81): ALLOWED")
    doc = json.loads(lab.cli("explain", "y/b", "x/c", "-p", "80", "-o", "json").stdout)
    assert doc["verdict"] == "allow"
    assert doc["ingress"]["verdict"]["policy"] == "x/knp.default.from-y"
    for args, message in (
        (("x/ghost", "x/a", "-p", "80"), "x/ghost: no pod ghost with a network endpoint"),
        (("192.0.2.7", "x/a", "-p", "80"), "192.0.2.7: IP 192.0.2.7 is in no IP pool"),
        (("x/a", "x/b"), "--port is required for TCP"),
    ):
        proc = lab.cli("explain", *args, check=False)
        assert proc.returncode == 1, proc
        assert proc.stderr.startswith(message), proc.stderr
