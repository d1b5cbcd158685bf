"""Table-driven NetworkPolicy -> Calico tests, one case per feature of the Kubernetes API reference.

Each case: a NetworkPolicy spec (networking.k8s.io/v1) in namespace ``ns1`` and the Calico spec
libcalico-go's converter writes for it. Every selector produced must parse with calico.selector.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from calico import selector
from calico.k8s import conversion, names
from calico.model import validation

ORCH = "projectcalico.org/orchestrator == 'k8s'"
ALLOW_ALL_DST: dict[str, Any] = {}


def np(spec: dict[str, Any], name: str = "pol", ns: str = "ns1") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "uid": "u1", "resourceVersion": "7"},
        "spec": spec,
    }


def rule(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"action": "Allow"}
    if "protocol" in kw:
        out["protocol"] = kw.pop("protocol")
    out["source"] = kw.pop("source", {})
    out["destination"] = kw.pop("destination", {})
    assert not kw
    return out


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "empty podSelector selects all pods; no rules = deny ingress",
        {"podSelector": {}},
        {"selector": ORCH, "types": ["Ingress"]},
    ),
    (
        "matchLabels sorted by key",
        {"podSelector": {"matchLabels": {"tier": "db", "app": "web"}}},
        {"selector": f"{ORCH} && app == 'web' && tier == 'db'", "types": ["Ingress"]},
    ),
    (
        "matchExpressions In / NotIn / Exists / DoesNotExist",
        {
            "podSelector": {
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "tier", "operator": "NotIn", "values": ["cache"]},
                    {"key": "example.com/owner", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ]
            }
        },
        {
            "selector": f"{ORCH} && env in {{ 'prod', 'dev' }} && tier not in {{ 'cache' }}"
            " && has(example.com/owner) && ! has(legacy)",
            "types": ["Ingress"],
        },
    ),
    (
        "policyTypes defaults to Ingress+Egress when egress rules exist",
        {"podSelector": {}, "egress": [{}]},
        {"selector": ORCH, "types": ["Ingress", "Egress"], "egress": [rule()]},
    ),
    (
        "empty egress list does not imply Egress (Kubernetes defaulting: len != 0)",
        {"podSelector": {}, "egress": []},
        {"selector": ORCH, "types": ["Ingress"]},
    ),
    (
        "policyTypes Egress only, no rules = deny all egress",
        {"podSelector": {}, "policyTypes": ["Egress"]},
        {"selector": ORCH, "types": ["Egress"]},
    ),
    (
        "policyTypes order normalised",
        {"podSelector": {}, "policyTypes": ["Egress", "Ingress"], "ingress": [{}]},
        {"selector": ORCH, "types": ["Ingress", "Egress"], "ingress": [rule()]},
    ),
    (
        "empty ingress rule {} allows all sources, all ports",
        {"podSelector": {}, "ingress": [{}]},
        {"selector": ORCH, "types": ["Ingress"], "ingress": [rule()]},
    ),
    (
        "from podSelector: pods in the policy's namespace",
        {
            "podSelector": {},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "fe"}}}]}],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(source={"selector": f"{ORCH} && role == 'fe'"})],
        },
    ),
    (
        "from namespaceSelector: all pods in matching namespaces",
        {
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(source={"selector": ORCH, "namespaceSelector": "team == 'ops'"})],
        },
    ),
    (
        "from empty namespaceSelector: all namespaces",
        {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]},
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(source={"selector": ORCH, "namespaceSelector": "all()"})],
        },
    ),
    (
        "from namespaceSelector AND podSelector in one peer",
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ns2"}
                            },
                            "podSelector": {"matchLabels": {"app": "db"}},
                        }
                    ]
                }
            ],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [
                rule(
                    source={
                        "selector": f"{ORCH} && app == 'db'",
                        "namespaceSelector": "kubernetes.io/metadata.name == 'ns2'",
                    }
                )
            ],
        },
    ),
    (
        "two peers = two rules (OR)",
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"a": "1"}}},
                        {"podSelector": {"matchLabels": {"b": "2"}}},
                    ]
                }
            ],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [
                rule(source={"selector": f"{ORCH} && a == '1'"}),
                rule(source={"selector": f"{ORCH} && b == '2'"}),
            ],
        },
    ),
    (
        "ipBlock with except -> nets + notNets (normalised)",
        {
            "podSelector": {},
            "ingress": [
                {"from": [{"ipBlock": {"cidr": "172.17.1.9/16", "except": ["172.17.1.0/24"]}}]}
            ],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(source={"nets": ["172.17.0.0/16"], "notNets": ["172.17.1.0/24"]})],
        },
    ),
    (
        "IPv6 ipBlock",
        {
            "podSelector": {},
            "egress": [{"to": [{"ipBlock": {"cidr": "fd00::/64"}}]}],
            "policyTypes": ["Egress"],
        },
        {
            "selector": ORCH,
            "types": ["Egress"],
            "egress": [rule(destination={"nets": ["fd00::/64"]})],
        },
    ),
    (
        "port without protocol defaults to TCP",
        {"podSelector": {}, "ingress": [{"ports": [{"port": 6379}]}]},
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(protocol="TCP", destination={"ports": [6379]})],
        },
    ),
    (
        "protocol without port = all ports of that protocol",
        {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]},
        {"selector": ORCH, "types": ["Ingress"], "ingress": [rule(protocol="UDP")]},
    ),
    (
        "ports of one protocol merged into one rule, ranges coalesced; protocols sorted",
        {
            "podSelector": {},
            "ingress": [
                {
                    "ports": [
                        {"protocol": "UDP", "port": 53},
                        {"port": 81},
                        {"port": 80},
                        {"port": 443},
                    ]
                }
            ],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [
                rule(protocol="TCP", destination={"ports": ["80:81", 443]}),
                rule(protocol="UDP", destination={"ports": [53]}),
            ],
        },
    ),
    (
        "named port",
        {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]},
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(protocol="TCP", destination={"ports": ["http"]})],
        },
    ),
    (
        "endPort range",
        {
            "podSelector": {},
            "egress": [{"ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]}],
            "policyTypes": ["Egress"],
        },
        {
            "selector": ORCH,
            "types": ["Egress"],
            "egress": [rule(protocol="TCP", destination={"ports": ["32000:32768"]})],
        },
    ),
    (
        "SCTP",
        {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 9000}]}]},
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [rule(protocol="SCTP", destination={"ports": [9000]})],
        },
    ),
    (
        "ports x peers: one rule per (protocol, peer)",
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"a": "1"}}},
                        {"ipBlock": {"cidr": "10.0.0.0/8"}},
                    ],
                    "ports": [{"port": 80}, {"protocol": "UDP", "port": 53}],
                }
            ],
        },
        {
            "selector": ORCH,
            "types": ["Ingress"],
            "ingress": [
                rule(
                    protocol="TCP",
                    source={"selector": f"{ORCH} && a == '1'"},
                    destination={"ports": [80]},
                ),
                rule(protocol="TCP", source={"nets": ["10.0.0.0/8"]}, destination={"ports": [80]}),
                rule(
                    protocol="UDP",
                    source={"selector": f"{ORCH} && a == '1'"},
                    destination={"ports": [53]},
                ),
                rule(protocol="UDP", source={"nets": ["10.0.0.0/8"]}, destination={"ports": [53]}),
            ],
        },
    ),
    (
        "egress to peer: selector on the destination",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 5432}]}
            ],
        },
        {
            "selector": f"{ORCH} && app == 'web'",
            "types": ["Egress"],
            "egress": [
                rule(
                    protocol="TCP",
                    destination={"ports": [5432], "selector": f"{ORCH} && app == 'db'"},
                )
            ],
        },
    ),
]


@pytest.mark.parametrize(("spec", "want"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_network_policy_to_calico(spec: dict[str, Any], want: dict[str, Any]) -> None:
    got = conversion.network_policy_to_calico(np(spec))
    assert got["apiVersion"] == "projectcalico.org/v3"
    assert got["kind"] == "NetworkPolicy"
    assert got["metadata"] == {"name": "knp.default.pol", "namespace": "ns1"}
    assert got["spec"] == {"order": 1000, **want}
    for sel in _selectors(got["spec"]):
        selector.parse(sel)  # raises on bad syntax
    # The datastore's validator accepts it and does not change it (no write loops on compare).
    assert validation.validate(copy.deepcopy(got)) == got


def _selectors(spec: dict[str, Any]) -> list[str]:
    out = [spec["selector"]]
    for r in spec.get("ingress", []) + spec.get("egress", []):
        for side in ("source", "destination"):
            out += [r[side][k] for k in ("selector", "namespaceSelector") if k in r[side]]
    return out


def test_selector_semantics_match_kubernetes() -> None:
    """The produced selector selects exactly the pods the LabelSelector does."""
    spec = CASES[2][1]
    sel = selector.parse(conversion.network_policy_to_calico(np(spec))["spec"]["selector"])
    base = {"projectcalico.org/orchestrator": "k8s", "example.com/owner": "x"}
    assert sel.evaluate({**base, "env": "prod"})
    assert sel.evaluate({**base, "env": "dev", "tier": "web"})
    assert not sel.evaluate({**base, "env": "qa"})
    assert not sel.evaluate({**base, "env": "prod", "tier": "cache"})
    assert not sel.evaluate({**base, "env": "prod", "legacy": ""})
    assert not sel.evaluate({"env": "prod", "projectcalico.org/orchestrator": "k8s"})
    assert not sel.evaluate({**base, "env": "prod", "projectcalico.org/orchestrator": "cni"})


BAD_RULES = [
    (
        "unknown operator",
        {
            "from": [
                {
                    "podSelector": {
                        "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
                    }
                }
            ]
        },
        "unsupported operator 'Gt'",
    ),
    (
        "In without values",
        {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]},
        "needs at least one value",
    ),
    (
        "Exists with values",
        {
            "from": [
                {
                    "podSelector": {
                        "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                    }
                }
            ]
        },
        "must be empty",
    ),
    (
        "label value with a quote",
        {"from": [{"podSelector": {"matchLabels": {"a": "x' || all()"}}}]},
        "label value",
    ),
    ("bad label key", {"from": [{"podSelector": {"matchLabels": {"-a": "x"}}}]}, "label key '-a'"),
    (
        "ipBlock and selector",
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]},
        "ipBlock cannot be combined",
    ),
    ("empty peer", {"from": [{}]}, "needs podSelector, namespaceSelector or ipBlock"),
    ("bad cidr", {"from": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}, "invalid CIDR '10.0.0.300/8'"),
    (
        "except outside cidr",
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]},
        "not strictly inside",
    ),
    ("protocol ICMP", {"ports": [{"protocol": "ICMP"}]}, "unsupported protocol 'ICMP'"),
    ("port 0", {"ports": [{"port": 0}]}, "out of range"),
    ("endPort below port", {"ports": [{"port": 90, "endPort": 80}]}, "endPort"),
    ("endPort with named port", {"ports": [{"port": "http", "endPort": 90}]}, "named port"),
    ("bad port name", {"ports": [{"port": "Http_1"}]}, "invalid port name"),
    ("unknown peer field", {"from": [{"serviceAccountSelector": {}}]}, "unsupported field"),
    ("unknown rule field", {"from": [], "action": "Deny"}, "unsupported field(s) ['action']"),
]


@pytest.mark.parametrize(
    ("bad", "message"), [(b[1], b[2]) for b in BAD_RULES], ids=[b[0] for b in BAD_RULES]
)
def test_bad_rule_is_reported_and_dropped(bad: dict[str, Any], message: str) -> None:
    good = {"from": [{"podSelector": {"matchLabels": {"ok": "yes"}}}]}
    policy = np({"podSelector": {}, "ingress": [bad, good]})
    with pytest.raises(conversion.ConversionError, match=r"spec\.ingress\[0\]") as exc:
        conversion.network_policy_to_calico(policy)
    assert message in str(exc.value)
    assert "NetworkPolicy ns1/pol" in str(exc.value)
    lenient = conversion.convert_network_policy(policy)
    assert len(lenient.problems) == 1
    # Fail closed: the bad rule is gone, the good one stays, Ingress is still enforced.
    assert lenient.policy["spec"]["types"] == ["Ingress"]
    assert lenient.policy["spec"]["ingress"] == [
        rule(source={"selector": f"{ORCH} && ok == 'yes'"})
    ]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (np({"podSelector": {"matchLabels": {"a": "b c"}}}), "spec.podSelector.matchLabels"),
        (np({"podSelector": {}, "policyTypes": ["Forward"]}), "policyTypes"),
        (np({"podSelector": {}, "denyAll": True}), "unsupported field(s) ['denyAll']"),
        ({"metadata": {"name": "x"}, "spec": {}}, "metadata.namespace is required"),
        ({"spec": {}}, "metadata is required"),
    ],
)
def test_policy_level_errors_raise(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(conversion.ConversionError) as exc:
        conversion.convert_network_policy(policy)
    assert message in str(exc.value)


def test_namespace_to_profile() -> None:
    ns = {
        "metadata": {
            "name": "team-a",
            "labels": {"env": "prod", "kubernetes.io/metadata.name": "team-a"},
        }
    }
    assert conversion.namespace_to_profile(ns) == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": "kns.team-a"},
        "spec": {
            "ingress": [{"action": "Allow", "source": {}, "destination": {}}],
            "egress": [{"action": "Allow", "source": {}, "destination": {}}],
            "labelsToApply": {
                "pcns.env": "prod",
                "pcns.kubernetes.io/metadata.name": "team-a",
                "pcns.projectcalico.org/name": "team-a",
            },
        },
    }


def test_namespace_selector_matches_profile_labels_with_prefix() -> None:
    """Calico evaluates namespaceSelector against the pcns.-prefixed labels kns.<ns> applies."""
    policy = conversion.network_policy_to_calico(
        np(
            {
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}],
            }
        )
    )
    ns_sel = policy["spec"]["ingress"][0]["source"]["namespaceSelector"]
    applied = conversion.namespace_to_profile(
        {"metadata": {"name": "a", "labels": {"env": "prod"}}}
    )
    prefixed = selector.parse(" && ".join(f"pcns.{t}" for t in ns_sel.split(" && ")))
    assert prefixed.evaluate(applied["spec"]["labelsToApply"])


def test_service_account_to_profile() -> None:
    sa = {"metadata": {"name": "builder", "namespace": "ci", "labels": {"role": "build"}}}
    assert conversion.service_account_to_profile(sa) == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": "ksa.ci.builder"},
        "spec": {"labelsToApply": {"pcsa.role": "build", "pcsa.projectcalico.org/name": "builder"}},
    }


def test_pod_to_workload_labels() -> None:
    pod = {
        "metadata": {
            "name": "web-1",
            "namespace": "ns1",
            "labels": {"app": "web", "projectcalico.org/namespace": "spoof"},
        },
        "spec": {"serviceAccountName": "sa1", "nodeName": "n1"},
    }
    assert conversion.pod_to_workload_labels(pod) == {
        "app": "web",
        "projectcalico.org/namespace": "ns1",
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/serviceaccount": "sa1",
    }
    bare = {"metadata": {"name": "p", "namespace": "ns2"}, "spec": {}}
    assert conversion.pod_to_workload_labels(bare) == {
        "projectcalico.org/namespace": "ns2",
        "projectcalico.org/orchestrator": "k8s",
    }


def test_bad_labels_raise() -> None:
    with pytest.raises(conversion.ConversionError, match=r"Namespace x: metadata\.labels"):
        conversion.namespace_to_profile({"metadata": {"name": "x", "labels": {"a": "b/c"}}})
    with pytest.raises(conversion.ConversionError, match=r"Pod ns/p"):
        conversion.pod_to_workload_labels(
            {"metadata": {"name": "p", "namespace": "ns", "labels": {"": "x"}}}
        )


def test_names_round_trip() -> None:
    assert names.policy_name_to_k8s(names.policy_name("a.b")) == "a.b"
    assert names.policy_name_to_k8s("my-policy") is None
    assert names.profile_name_to_namespace("kns.default") == "default"
    assert names.profile_name_to_namespace("ksa.ns.sa") is None
    assert names.profile_name_to_service_account("ksa.ns.sa.with.dots") == ("ns", "sa.with.dots")
    assert names.profile_name_to_service_account("kns.x") is None
    assert names.workload_endpoint_name("node1", "web-7d9f") == "node1-k8s-web--7d9f-eth0"
