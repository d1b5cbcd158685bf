"""AdminNetworkPolicy / BaselineAdminNetworkPolicy -> Calico, case by case (the API's fields from
the network-policy-api v1alpha1 types; the Calico shape as Calico's own conversion writes it)."""

from __future__ import annotations

from typing import Any

import pytest

from calico import selector
from calico.k8s import admin_policy as ap
from calico.k8s.conversion import ConversionError
from calico.model import validation

ORCH = "projectcalico.org/orchestrator == 'k8s'"


def anp(spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {"apiVersion": ap.GROUP_VERSION, "kind": ap.ANP, "metadata": {"name": name},
            "spec": {"priority": 10, "subject": {"namespaces": {}}, **spec}}  # fmt: skip


def rules(spec: dict[str, Any], direction: str = "ingress") -> list[dict[str, Any]]:
    result = ap.convert_admin_network_policy(anp(spec))
    assert not result.problems, result.problems
    return list(result.policy["spec"].get(direction, []))


def test_names_tier_order_subject() -> None:
    out = ap.convert_admin_network_policy(
        anp({"priority": 42, "subject": {"namespaces": {"matchLabels": {"team": "a"}}}})
    ).policy
    assert out["metadata"] == {"name": "kanp.kube-admin.p"}
    spec = out["spec"]
    assert (spec["tier"], spec["order"]) == ("kube-admin", 42)
    assert (spec["selector"], spec["namespaceSelector"]) == (ORCH, "team == 'a'")
    pods = ap.convert_admin_network_policy(
        anp({"subject": {"pods": {"namespaceSelector": {}, "podSelector": {
            "matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}}}})
    ).policy["spec"]  # fmt: skip
    assert pods["selector"] == f"{ORCH} && app in {{ 'web', 'db' }}"
    assert pods["namespaceSelector"] == "all()"
    banp = ap.convert_baseline_admin_network_policy(
        {"metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {}}}}
    ).policy
    assert banp["metadata"]["name"] == "kbanp.kube-baseline.default"
    assert (banp["spec"]["tier"], banp["spec"]["order"]) == ("kube-baseline", 1000)
    # Selectors parse as Calico selectors.
    for spec in (out["spec"], pods, banp["spec"]):
        selector.parse(spec["selector"])
        selector.parse(spec["namespaceSelector"])


def test_peers_ports_actions_and_rule_names() -> None:
    got = rules({"ingress": [{
        "name": "web in", "action": "Pass",
        "from": [{"namespaces": {"matchLabels": {"ns": "y"}}},
                 {"pods": {"namespaceSelector": {"matchLabels": {"ns": "z"}},
                           "podSelector": {"matchLabels": {"app": "db"}}}}],
        "ports": [{"portNumber": {"protocol": "UDP", "port": 53}},
                  {"portNumber": {"port": 80}}, {"portRange": {"start": 81, "end": 90}}],
    }]})  # fmt: skip
    meta = {"annotations": {"name": "web in"}}
    y = {"namespaceSelector": "ns == 'y'"}
    z = {"namespaceSelector": "ns == 'z'", "selector": f"{ORCH} && app == 'db'"}
    # One rule per (protocol, peer), protocols sorted, ports merged (Calico's shape).
    assert got == [
        {"action": "Pass", "metadata": meta, "protocol": "TCP", "source": y,
         "destination": {"ports": ["80:90"]}},
        {"action": "Pass", "metadata": meta, "protocol": "TCP", "source": z,
         "destination": {"ports": ["80:90"]}},
        {"action": "Pass", "metadata": meta, "protocol": "UDP", "source": y,
         "destination": {"ports": [53]}},
        {"action": "Pass", "metadata": meta, "protocol": "UDP", "source": z,
         "destination": {"ports": [53]}},
    ]  # fmt: skip
    egress = rules(
        {"egress": [{"action": "Allow", "to": [{"networks": ["10.1.2.3/16", "fd00::/8"]}]}]},
        "egress",
    )
    assert egress == [
        {"action": "Allow", "source": {}, "destination": {"nets": ["10.1.0.0/16", "fd00::/8"]}}
    ]


def test_named_port_matches_whatever_its_protocol() -> None:
    got = rules({"ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                              "ports": [{"namedPort": "dns"}]}]})  # fmt: skip
    assert [(r["protocol"], r["destination"]["ports"]) for r in got] == [
        ("SCTP", ["dns"]),
        ("TCP", ["dns"]),
        ("UDP", ["dns"]),
    ]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            {"action": "Deny", "to": [{"nodes": {}}]},
            "spec.egress[0].to[0].nodes: peer type 'nodes'",
        ),
        ({"action": "Pass", "to": [{"domainNames": ["a.example"]}]}, "to[0].domainNames"),
        ({"action": "Deny", "to": [{}]}, "spec.egress[0].to[0]: exactly one peer field"),
        ({"action": "Deny", "to": [{"namespaces": {}, "pods": {}}]}, "exactly one peer field"),
        ({"action": "Deny", "to": [{"networks": ["10.0.0.0/33"]}]}, "invalid CIDR '10.0.0.0/33'"),
        (
            {
                "action": "Deny",
                "to": [{"networks": ["10.0.0.0/8"]}],
                "ports": [{"namedPort": "http"}],
            },
            "named port cannot be used with networks",
        ),
        (
            {
                "action": "Pass",
                "to": [{"namespaces": {}}],
                "ports": [{"portRange": {"start": 90, "end": 80}}],
            },
            "is not a range",
        ),
        ({"action": "Log", "to": [{"namespaces": {}}]}, "action: 'Log' is not one of"),
    ],
)
def test_unconvertible_rules_fail_closed(rule: dict[str, Any], problem: str) -> None:
    """Deny/Pass (and unknown actions): replaced by deny-all; Allow: dropped; always reported."""
    keep = {"action": "Allow", "to": [{"namespaces": {}}]}
    result = ap.convert_admin_network_policy(anp({"egress": [rule, keep]}))
    assert len(result.problems) == 1
    assert problem in str(result.problems[0])
    assert "AdminNetworkPolicy p: spec.egress[0]" in str(result.problems[0])
    egress = result.policy["spec"]["egress"]
    assert egress[0] == {"action": "Deny"}
    assert egress[1] == {
        "action": "Allow",
        "source": {},
        "destination": {"namespaceSelector": "all()"},
    }
    if rule["action"] != "Log":  # the same rule as an Allow: dropped (it matches nothing)
        allow = ap.convert_admin_network_policy(anp({"egress": [{**rule, "action": "Allow"}]}))
        assert "dropped" in str(allow.problems[0])
        assert "egress" not in allow.policy["spec"]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (anp({"priority": 1001}), "spec.priority: 1001 is not an integer 0-1000"),
        (anp({"priority": "high"}), "spec.priority: 'high' is not an integer 0-1000"),
        (anp({"subject": {}}), "spec.subject: exactly one of namespaces or pods"),
        (anp({"subject": {"namespaces": {}, "pods": {}}}), "exactly one of namespaces or pods"),
        (anp({"tier": "Admin"}), "spec: unsupported field(s) ['tier']"),
        (
            {"metadata": {"name": "x"}, "spec": {"subject": {"namespaces": {}}}},
            "BaselineAdminNetworkPolicy x: metadata.name: must be 'default'",
        ),
    ],
)
def test_policy_level_problems_raise(obj: dict[str, Any], message: str) -> None:
    convert = (
        ap.convert_admin_network_policy
        if obj.get("kind") == ap.ANP
        else ap.convert_baseline_admin_network_policy
    )
    with pytest.raises(ConversionError) as info:
        convert(obj)
    assert message in str(info.value)


def test_banp_actions_are_allow_and_deny_only() -> None:
    banp = {"metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {}},
            "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}}  # fmt: skip
    result = ap.convert_baseline_admin_network_policy(banp)
    assert "'Pass' is not one of Allow, Deny" in str(result.problems[0])
    assert result.policy["spec"]["ingress"] == [{"action": "Deny"}]


def test_priority_conflicts() -> None:
    anps = [anp({"priority": 5}, "b"), anp({"priority": 5}, "a"), anp({"priority": 6}, "c")]
    assert ap.priority_conflicts(anps) == {"a": ["b"], "b": ["a"]}


def test_output_validates_to_itself() -> None:
    """What the controller writes is what the datastore stores (no write loops)."""
    for spec in (
        {},
        {
            "ingress": [
                {
                    "action": "Deny",
                    "from": [{"pods": {"namespaceSelector": {}, "podSelector": {}}}],
                    "ports": [{"namedPort": "x"}],
                }
            ]
        },
        {"egress": [{"action": "Pass", "to": [{"networks": ["10.0.0.0/8"]}]}]},
    ):
        policy = ap.convert_admin_network_policy(anp(spec)).policy
        assert validation.validate(policy)["spec"] == policy["spec"]
