"""Policy cases from Calico's documented semantics, shared by the calc tests (model verdicts from
the graph's output) and the agent's traffic tests (real packets through nft).

Topology: namespace ``default`` holds workloads ``a`` (app=a) and ``b`` (app=b, named port
http=TCP/8080); namespace ``other`` (labels team=blue) holds ``c`` (app=c). ``ext`` is an address
outside the cluster (10.99.0.1). Each expectation is (src, dst, proto, port, allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKLOADS = {
    # name: (namespace, ip, labels, ports)
    "a": ("default", "10.65.0.2", {"app": "a"}, []),
    "b": (
        "default",
        "10.65.0.3",
        {"app": "b"},
        [{"name": "http", "protocol": "TCP", "port": 8080}],
    ),
    "c": ("other", "10.65.0.4", {"app": "c"}, []),
}
NAMESPACE_LABELS = {
    "default": {"kubernetes.io/metadata.name": "default"},
    "other": {"kubernetes.io/metadata.name": "other", "team": "blue"},
}
# Workloads running as a non-default service account: name -> (account, its labels).
SERVICE_ACCOUNTS = {"b": ("web", {"role": "web"})}
EXT_IP = "10.99.0.1"

Expect = tuple[str, str, str, int, bool]


def np(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def gnp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


@dataclass(frozen=True)
class Case:
    name: str
    resources: list[dict[str, Any]]
    expect: list[Expect] = field(default_factory=list)


ALLOW = {"action": "Allow"}
DENY = {"action": "Deny"}

CASES = [
    Case(
        "no-policy-profile-allows",
        [],
        [
            ("a", "b", "tcp", 80, True),
            ("b", "a", "udp", 53, True),
            ("a", "c", "icmp", 0, True),
            ("c", "b", "tcp", 8080, True),
            ("a", "ext", "tcp", 80, True),
        ],
    ),
    Case(
        "ingress-allow-one-port-default-deny",
        [
            np(
                "b-8080",
                {
                    "selector": "app == 'b'",
                    "ingress": [
                        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}
                    ],
                },
            )
        ],
        [
            ("a", "b", "tcp", 80, False),
            ("a", "b", "tcp", 8080, True),
            ("a", "b", "udp", 53, False),
            ("a", "b", "icmp", 0, False),
            ("b", "a", "tcp", 80, True),
        ],
    ),
    Case(
        "lower-order-first-deny-wins",
        [
            np(
                "deny-a",
                {
                    "order": 10,
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Deny", "source": {"selector": "app == 'a'"}}],
                },
            ),
            gnp(
                "allow-all",
                {"order": 20, "selector": "all()", "ingress": [ALLOW], "egress": [ALLOW]},
            ),
        ],
        [("a", "b", "tcp", 80, False), ("c", "b", "tcp", 80, True), ("b", "a", "tcp", 80, True)],
    ),
    Case(
        "lower-order-first-allow-wins",
        [
            np("deny-a", {"order": 100, "selector": "app == 'b'", "ingress": [DENY]}),
            np(
                "allow-a",
                {
                    "order": 50,
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Allow", "source": {"selector": "app == 'a'"}}],
                },
            ),
        ],
        [("a", "b", "tcp", 80, True), ("c", "b", "tcp", 80, False)],
    ),
    Case(
        "same-order-name-breaks-tie",
        [
            np(
                "aaa-deny",
                {
                    "order": 100,
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Deny", "protocol": "TCP"}],
                },
            ),
            np("bbb-allow", {"order": 100, "selector": "app == 'b'", "ingress": [ALLOW]}),
        ],
        [("a", "b", "tcp", 80, False), ("a", "b", "udp", 53, True)],
    ),
    Case(
        "deny-rule-before-allow-rule",
        [
            np(
                "b",
                {
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Deny", "source": {"selector": "app == 'a'"}}, ALLOW],
                },
            )
        ],
        [("a", "b", "tcp", 80, False), ("c", "b", "tcp", 80, True)],
    ),
    Case(
        "pass-goes-to-profiles",
        [
            np(
                "pass-a",
                {
                    "order": 1,
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Pass", "source": {"selector": "app == 'a'"}}],
                },
            ),
            np("deny-rest", {"order": 2, "selector": "app == 'b'", "ingress": [DENY]}),
        ],
        [("a", "b", "tcp", 80, True), ("c", "b", "tcp", 80, False)],
    ),
    Case(
        "log-then-allow",
        [np("log", {"selector": "app == 'b'", "ingress": [{"action": "Log"}, ALLOW]})],
        [("a", "b", "tcp", 80, True)],
    ),
    Case(
        "not-nets",
        [
            np(
                "not-a",
                {
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Allow", "source": {"notNets": ["10.65.0.2/32"]}}],
                },
            )
        ],
        [("a", "b", "tcp", 80, False), ("c", "b", "tcp", 80, True)],
    ),
    Case(
        "named-port",
        [
            np(
                "http",
                {
                    "selector": "app == 'b'",
                    "ingress": [
                        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}
                    ],
                },
            )
        ],
        [("a", "b", "tcp", 8080, True), ("a", "b", "tcp", 80, False)],
    ),
    Case(
        "namespace-selector",
        [
            np(
                "from-blue",
                {
                    "selector": "app == 'b'",
                    "ingress": [
                        {"action": "Allow", "source": {"namespaceSelector": "team == 'blue'"}}
                    ],
                },
            )
        ],
        [("c", "b", "tcp", 80, True), ("a", "b", "tcp", 80, False)],
    ),
    Case(
        "rule-selector-stays-in-policy-namespace",
        [
            np(
                "from-c",
                {
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Allow", "source": {"selector": "app == 'c'"}}],
                },
            )
        ],
        [("c", "b", "tcp", 80, False), ("a", "b", "tcp", 80, False)],
    ),
    Case(
        "policy-selects-only-its-namespace",
        [np("deny-all", {"selector": "all()", "ingress": [DENY]})],
        [("a", "b", "tcp", 80, False), ("a", "c", "tcp", 80, True), ("c", "a", "tcp", 80, False)],
    ),
    Case(
        "egress-only-policy",
        [
            np(
                "a-egress",
                {
                    "selector": "app == 'a'",
                    "types": ["Egress"],
                    "egress": [{"action": "Allow", "destination": {"selector": "app == 'b'"}}],
                },
            )
        ],
        [
            ("a", "b", "tcp", 80, True),
            ("a", "c", "tcp", 80, False),
            ("a", "ext", "tcp", 80, False),
            ("b", "a", "tcp", 80, True),
        ],
    ),
    Case(
        "egress-deny-nets",
        [
            np(
                "no-ext",
                {
                    "selector": "app == 'a'",
                    "egress": [
                        {"action": "Deny", "destination": {"nets": ["10.99.0.0/24"]}},
                        ALLOW,
                    ],
                },
            )
        ],
        [("a", "ext", "tcp", 80, False), ("a", "b", "tcp", 80, True)],
    ),
    Case(
        "icmp-type",
        [
            np(
                "ping-only",
                {
                    "selector": "app == 'b'",
                    "ingress": [{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}],
                },
            )
        ],
        [("a", "b", "icmp", 0, True), ("a", "b", "tcp", 80, False)],
    ),
    Case(
        "global-policy-not-selector-and-udp",
        [
            gnp(
                "gnp",
                {
                    "selector": "projectcalico.org/namespace == 'default'",
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "UDP",
                            "source": {"notSelector": "app == 'a'"},
                        }
                    ],
                },
            )
        ],
        [
            ("a", "b", "udp", 53, False),
            ("c", "b", "udp", 53, True),
            ("c", "b", "tcp", 80, False),
            ("b", "c", "tcp", 80, True),
        ],
    ),
    Case(
        "port-range-and-not-ports",
        [
            np(
                "range",
                {
                    "selector": "app == 'b'",
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "destination": {"ports": ["1:9000"], "notPorts": [80]},
                        }
                    ],
                },
            )
        ],
        [("a", "b", "tcp", 8080, True), ("a", "b", "tcp", 80, False)],
    ),
    Case(
        # A policy's serviceAccountSelector narrows the endpoints it applies to (to b, whose
        # account carries role=web); a and c are not selected and stay open.
        "policy-service-account-selector",
        [
            gnp(
                "deny-into-web-accounts",
                {"selector": "all()", "serviceAccountSelector": "role == 'web'", "ingress": [DENY]},
            )
        ],
        [
            ("a", "b", "tcp", 80, False),
            ("c", "b", "tcp", 8080, False),
            ("b", "a", "tcp", 80, True),
            ("a", "c", "tcp", 80, True),
        ],
    ),
]


def workload_endpoint(name: str, node: str = "node1") -> dict[str, Any]:
    namespace, ip, labels, ports = WORKLOADS[name]
    iface = "cali" + name.rjust(11, "0")
    account = SERVICE_ACCOUNTS.get(name, ("default", {}))[0]
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node}-k8s-{name}-eth0",
            "namespace": namespace,
            "labels": {
                **labels,
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": account,
            },
        },
        "spec": {
            "node": node,
            "orchestrator": "k8s",
            "pod": name,
            "endpoint": "eth0",
            "interfaceName": iface,
            "ipNetworks": [f"{ip}/32"],
            "profiles": [f"kns.{namespace}", f"ksa.{namespace}.{account}"],
            "ports": ports,
        },
    }


def namespace_profile(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"kns.{namespace}"},
        "spec": {
            "ingress": [ALLOW],
            "egress": [ALLOW],
            "labelsToApply": {f"pcns.{k}": v for k, v in NAMESPACE_LABELS[namespace].items()},
        },
    }


def service_account_profile(namespace: str, account: str, labels: dict[str, str]) -> dict[str, Any]:
    """As the controllers write it: no rules, the account's labels under ``pcsa.``."""
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"ksa.{namespace}.{account}"},
        "spec": {"labelsToApply": {f"pcsa.{k}": v for k, v in labels.items()}},
    }


def base_resources() -> list[dict[str, Any]]:
    accounts: dict[tuple[str, str], dict[str, str]] = {
        (WORKLOADS[w][0], "default"): {} for w in WORKLOADS
    }
    for w, (account, labels) in SERVICE_ACCOUNTS.items():
        accounts[(WORKLOADS[w][0], account)] = labels
    return (
        [namespace_profile(ns) for ns in NAMESPACE_LABELS]
        + [service_account_profile(ns, sa, labels) for (ns, sa), labels in sorted(accounts.items())]
        + [workload_endpoint(name) for name in WORKLOADS]
    )


def ip_of(name: str) -> str:
    return EXT_IP if name == "ext" else WORKLOADS[name][1]
