"""Flow logs and staged policies on a 2-node calico-lab: ``calico-lab flows`` after a denied
probe names both pods and what denied it; a StagedNetworkPolicy changes no verdict, its impact
(read from the flows) is the allowed path it would close, and promoting it closes that path.

Pods: ``shop/web`` on node1, ``shop/db`` on node2, ``dev/tester`` on node1, each serving TCP 80.
A Kubernetes NetworkPolicy lets only ``shop`` into ``shop/db``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, check

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

TARGETS = [(80, "TCP")]
PODS = ["shop/web", "shop/db", "dev/tester"]


def _manifests() -> str:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}}
        for ns in ("shop", "dev")
    ]
    for key, node in (("shop/web", "node1"), ("shop/db", "node2"), ("dev/tester", "node1")):
        ns, name = key.split("/")
        container = {"name": "c", "ports": [{"containerPort": 80}]}
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
                     "spec": {"nodeName": node, "containers": [container]}})  # fmt: skip
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "db-from-shop", "namespace": "shop"},
                 "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                          "ingress": [{"from": [{"podSelector": {}}]}]}})  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


STAGED = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "StagedNetworkPolicy",
    "metadata": {"name": "db-no-web", "namespace": "shop"},
    "spec": {
        "order": 10,
        "selector": "app == 'db'",
        "ingress": [{"action": "Deny", "source": {"selector": "app == 'web'"}}],
    },
}


def allowed(src: str, dst: str, port: int, proto: str, *, promoted: bool = False) -> bool:
    if dst == "shop/db":
        return src.startswith("shop/") and not (promoted and src == "shop/web")
    return True


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    root = tmp_path_factory.mktemp("labroot")
    with lab_support.running_lab(root, "flows", "--nodes", "2") as handle:
        handle.apply(_manifests())
        yield handle


def _records(lab: LabHandle, *args: str) -> list[dict[str, Any]]:
    out = lab.cli("flows", "-o", "json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def _between(recs: list[dict[str, Any]], src: str, dst: str) -> list[dict[str, Any]]:
    def key(rec: dict[str, Any], side: str) -> str:
        return f"{rec[f'{side}_namespace']}/{rec[f'{side}_name']}"

    return [r for r in recs if key(r, "source") == src and key(r, "dest") == dst]


def test_flows_after_a_denied_probe(lab: LabHandle) -> None:
    check(lab, lab_support.expected(PODS, TARGETS, allowed), within=60)
    recs = _between(_records(lab), "dev/tester", "shop/db")
    assert recs, "no flow record of the denied probe"
    denied = recs[0]
    assert denied["action"] == "deny"
    assert denied["reporter"] == "dst"
    assert denied["host"] == "node2"  # the destination's node logged its ingress
    assert denied["policy"] == {"by": "tier-default", "tier": "default"}
    assert (denied["dest_port"], denied["proto"]) == (80, "tcp")
    assert denied["source_labels"]["app"] == "tester"
    assert denied["dest_type"] == "wep"
    # Only node2 logged it; only denials are logged by default.
    assert _between(_records(lab, "--node", "node2"), "dev/tester", "shop/db")
    assert not _between(_records(lab, "--node", "node1"), "dev/tester", "shop/db")
    assert not _records(lab, "--action", "allow")
    table = lab.cli("flows", "--action", "deny").stdout
    assert table.splitlines()[0].split()[:4] == ["TIME", "NODE", "REPORTER", "ACTION"]
    assert "dev/tester" in table
    assert "default: end of tier (default deny)" in table
    proc = lab.cli("flows", "--node", "node9", check=False)
    assert proc.returncode == 1
    assert "node9" in proc.stderr


def test_staged_policy_impact_then_promote(lab: LabHandle) -> None:
    lab.apply(json.dumps(STAGED))
    want = lab_support.expected(PODS, TARGETS, allowed)
    check(lab, want, within=60)  # staged: nothing changed
    for _ in range(3):  # the path it would close is used (and logged, with its staged verdict)
        assert lab.matrices(TARGETS) == want
    recs = _between(_records(lab), "shop/web", "shop/db")
    flipped = [r for r in recs if r["staged"] and r["staged"]["action"] == "deny"]
    assert flipped, recs
    assert flipped[0]["action"] == "allow"
    assert flipped[0]["staged"]["point"]["policy"] == "shop/staged:db-no-web"
    flows = lab.cli("flows", "-o", "json").stdout
    impact = lab.cli("exec", "node1", "--", "calicoctl", "policy", "impact", "db-no-web", "-n",
                     "shop", "--flows", "-", "-o", "json", input=flows).stdout  # fmt: skip
    report = json.loads(impact)
    assert report["allowed_to_denied"]["flows"] >= 1
    ends = {(e["source"], e["dest"]) for e in report["allowed_to_denied"]["endpoints"]}
    assert ends == {("shop/web", "shop/db")}
    assert report["denied_to_allowed"]["flows"] == 0
    out = lab.cli("exec", "node1", "--", "calicoctl", "policy", "promote", "db-no-web", "-n",
                  "shop").stdout  # fmt: skip
    assert "created NetworkPolicy(shop/db-no-web)" in out
    check(
        lab,
        lab_support.expected(PODS, TARGETS, lambda s, d, p, t: allowed(s, d, p, t, promoted=True)),
        within=60,
    )
    gone = lab.cli("exec", "node1", "--", "calicoctl", "get", "snp", "-n", "shop").stdout
    assert "db-no-web" not in gone
