"""Policy tiers and the cluster-scoped Kubernetes policies on a 3-node calico-lab, by matrix.

The NetworkPolicy matrix's world (namespaces x, y, z labelled ``ns``; pods a, b, c labelled
``pod``, spread over three nodes). Each scenario applies Calico tiers and policies and/or
Kubernetes NetworkPolicies, AdminNetworkPolicies and a BaselineAdminNetworkPolicy through
``calico-lab apply``, states as a rule which probes must connect, compares the whole matrix, and
deletes what it applied. Rules are written from Calico's tier semantics (Pass goes to the next
tier; a tier whose policies select the pod and match nothing applies its defaultAction) and from
the network-policy-api's (ANP before NetworkPolicy, BANP only for what no NetworkPolicy decided).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, Rule, check, expected
from tests.e2e.test_lab_netpol import ALL, manifests, np, ns_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TARGETS = [(80, "TCP"), (81, "UDP")]
ANP_API = "policy.networking.k8s.io/v1alpha1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    root = tmp_path_factory.mktemp("labroot")
    with lab_support.running_lab(root, "tier", "--nodes", "3") as handle:
        handle.apply(manifests())
        yield handle


def ns_sel(name: str) -> dict[str, Any]:
    return {"matchLabels": {"ns": name}}


def tier(name: str, order: int, action: str) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
            "spec": {"order": order, "defaultAction": action}}  # fmt: skip


def gnp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def anp(name: str, priority: int, subject_ns: str, ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": ANP_API, "kind": "AdminNetworkPolicy", "metadata": {"name": name},
            "spec": {"priority": priority, "subject": {"namespaces": ns_sel(subject_ns)},
                     "ingress": ingress}}  # fmt: skip


def from_ns(action: str, name: str) -> dict[str, Any]:
    return {"name": f"{action.lower()}-from-{name}", "action": action,
            "from": [{"namespaces": ns_sel(name)}]}  # fmt: skip


ALLOW_FROM = {
    n: np(
        f"from-{n}",
        "x",
        {
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": n}}}]}],
        },
    )
    for n in ("y", "z")
}
X_POD_A = "projectcalico.org/namespace == 'x' && pod == 'a'"
ONLY_Y_B = [{"action": "Allow", "source": {"namespaceSelector": "ns == 'y'",
                                            "selector": "pod == 'b'"}}]  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    id: str
    objects: tuple[dict[str, Any], ...]
    rule: Rule


SCENARIOS = [
    # platform denies z -> x and passes the rest to the application tier, where x allows y and
    # (in vain) z: the NetworkPolicy cannot re-open what the platform tier denied.
    Scenario(
        "pass-hands-the-rest-to-the-application-tier",
        (
            tier("platform", 100, "Deny"),
            gnp(
                "platform.guard-x",
                {
                    "tier": "platform",
                    "namespaceSelector": "ns == 'x'",
                    "ingress": [
                        {"action": "Deny", "source": {"namespaceSelector": "ns == 'z'"}},
                        {"action": "Pass"},
                    ],
                },
            ),
            ALLOW_FROM["y"],
            ALLOW_FROM["z"],
        ),
        lambda s, d, p, t: ns_of(d) != "x" or ns_of(s) == "y",
    ),
    # A tier whose policy selects x/a and matches only y/b: defaultAction Deny drops the rest.
    Scenario(
        "tier-default-deny",
        (
            tier("platform", 100, "Deny"),
            gnp(
                "platform.a-from-y-b",
                {"tier": "platform", "selector": X_POD_A, "ingress": ONLY_Y_B},
            ),
        ),
        lambda s, d, p, t: d != "x/a" or s == "y/b",
    ),
    # The same with defaultAction Pass: the rest goes on to x's NetworkPolicy (from y only).
    Scenario(
        "tier-default-pass",
        (
            tier("platform", 100, "Pass"),
            gnp(
                "platform.a-from-y-b",
                {"tier": "platform", "selector": X_POD_A, "ingress": ONLY_Y_B},
            ),
            ALLOW_FROM["y"],
        ),
        lambda s, d, p, t: ns_of(d) != "x" or ns_of(s) == "y",
    ),
    # ANP over NetworkPolicy: y is denied although x's NetworkPolicy allows it; z/c is allowed
    # although x is isolated by it; everything else follows the NetworkPolicy.
    Scenario(
        "admin-network-policy-over-network-policy",
        (
            anp(
                "x-guard",
                10,
                "x",
                [
                    from_ns("Deny", "y"),
                    {
                        "name": "allow-z-c",
                        "action": "Allow",
                        "from": [
                            {
                                "pods": {
                                    "namespaceSelector": ns_sel("z"),
                                    "podSelector": {"matchLabels": {"pod": "c"}},
                                }
                            }
                        ],
                    },
                ],
            ),
            ALLOW_FROM["y"],
        ),
        lambda s, d, p, t: ns_of(d) != "x" or s == "z/c",
    ),
    # BANP under NetworkPolicy: everything denied at the baseline, except where a
    # NetworkPolicy decides first (x allows all) or an ANP allows (z from x); y's ANP Pass
    # hands x -> y to the NetworkPolicies, none selects y, so the baseline denies it.
    Scenario(
        "baseline-admin-network-policy-under-network-policy",
        (
            {
                "apiVersion": ANP_API,
                "kind": "BaselineAdminNetworkPolicy",
                "metadata": {"name": "default"},
                "spec": {
                    "subject": {"namespaces": {}},
                    "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                },
            },
            np("allow-all", "x", {"podSelector": {}, "ingress": [{}]}),
            anp("z-from-x", 20, "z", [from_ns("Allow", "x")]),
            anp("y-pass-x", 30, "y", [from_ns("Pass", "x")]),
        ),
        lambda s, d, p, t: ns_of(d) == "x" or (ns_of(d) == "z" and ns_of(s) == "x"),
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_tier_matrix(lab: LabHandle, scenario: Scenario) -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(scenario.objects)})
    lab.apply(text)
    try:
        check(lab, expected(ALL, TARGETS, scenario.rule))
    finally:
        lab.delete(text)
    check(lab, expected(ALL, TARGETS, lambda s, d, p, t: True))  # all gone: all connect


def test_bad_input_changes_nothing(lab: LabHandle) -> None:
    """A policy in a missing tier, a name without its tier prefix, a bad tier order, two ANPs
    with one priority: each refused with the field and value named, nothing written."""
    before = lab.state().policies
    cases = [
        (gnp("ghost.p", {"tier": "ghost"}), "spec.tier: tier 'ghost' does not exist"),
        (tier("platform", -1, "Deny"), "spec.order: must be a number >= 0, got -1"),
        (gnp("p", {"tier": "kube-admin"}), "Incorrectly formatted policy name p"),
    ]
    for obj, message in cases:
        proc = lab.cli("apply", "-f", "-", input=json.dumps(obj), check=False)
        assert proc.returncode != 0
        assert message in proc.stderr, proc.stderr
    same = [anp("one", 7, "x", [from_ns("Deny", "y")]), anp("two", 7, "y", [from_ns("Deny", "x")])]
    two = json.dumps({"apiVersion": "v1", "kind": "List", "items": same})
    proc = lab.cli("apply", "-f", "-", input=two, check=False)
    assert proc.returncode != 0
    assert "spec.priority: 7 is already the priority of two" in proc.stderr
    assert lab.state().policies == before
    out = lab.cli("exec", "node1", "--", "calicoctl", "get", "gnp").stdout
    assert out.split() == ["NAME"]  # nothing half-applied
