"""The convergence oracle: Calico state recomputed from scratch from the fake API server's objects.

``expected(fake)`` converts every Kubernetes object with the pure conversions (a full recompute, the
kube-router baseline); ``actual(datastore)`` reads what the controller owns from etcd. A converged
controller makes the two equal, and leaves everything it does not own exactly as it was.
"""

from __future__ import annotations

from typing import Any

from calico.datastore.client import Client
from calico.k8s import admin_policy, conversion, names
from calico.model import validation
from tests.fakekube import FakeKube

State = dict[str, dict[str, Any]]


def expected(fake: FakeKube, weps: dict[str, tuple[str, str]]) -> State:
    """``weps``: WorkloadEndpoint "ns/name" -> (namespace, pod) for the endpoints the CNI made."""
    policies = {}
    for np in fake.list("networkpolicies"):
        try:
            p = conversion.convert_network_policy(np).policy
        except conversion.ConversionError:
            continue
        policies[f"{p['metadata']['namespace']}/{p['metadata']['name']}"] = p["spec"]
    profiles = {}
    for ns in fake.list("namespaces"):
        p = conversion.namespace_to_profile(ns)
        profiles[p["metadata"]["name"]] = p["spec"]
    for sa in fake.list("serviceaccounts"):
        p = conversion.service_account_to_profile(sa)
        profiles[p["metadata"]["name"]] = p["spec"]
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in fake.list("pods")}
    labels = {}
    for wep, ident in weps.items():
        if ident in pods:
            labels[wep] = conversion.pod_to_workload_labels(pods[ident])
    global_policies = {}
    for plural, convert in (
        ("adminnetworkpolicies", admin_policy.convert_admin_network_policy),
        ("baselineadminnetworkpolicies", admin_policy.convert_baseline_admin_network_policy),
    ):
        for obj in fake.list(plural):
            try:
                p = validation.validate(convert(obj).policy)
            except conversion.ConversionError:
                continue
            global_policies[p["metadata"]["name"]] = p["spec"]
    return {
        "policies": policies,
        "profiles": profiles,
        "wep_labels": labels,
        "global_policies": global_policies,
    }


def actual(ds: Client, weps: dict[str, tuple[str, str]], *, policy_ns: str | None = None) -> State:
    policies = {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["spec"]
        for p in ds.list("NetworkPolicy", policy_ns)
        if names.policy_name_to_k8s(p["metadata"]["name"])
    }
    profiles = {
        p["metadata"]["name"]: p["spec"]
        for p in ds.list("Profile")
        if p["metadata"]["name"].startswith(("kns.", "ksa."))
    }
    labels = {}
    for w in ds.list("WorkloadEndpoint"):
        key = f"{w['metadata']['namespace']}/{w['metadata']['name']}"
        if key in weps:
            labels[key] = w["metadata"].get("labels") or {}
    global_policies = {
        p["metadata"]["name"]: p["spec"]
        for p in ds.list("GlobalNetworkPolicy")
        if names.global_policy_source(p["metadata"]["name"])
    }
    return {
        "policies": policies,
        "profiles": profiles,
        "wep_labels": labels,
        "global_policies": global_policies,
    }


def make_wep(ds: Client, ns: str, pod: str, node: str = "node1") -> tuple[str, tuple[str, str]]:
    """Create the WorkloadEndpoint the CNI plugin would have made (with stale labels)."""
    name = names.workload_endpoint_name(node, pod)
    ds.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": ns, "labels": {"stale": "yes"}},
            "spec": {
                "orchestrator": "k8s",
                "node": node,
                "pod": pod,
                "endpoint": "eth0",
                "interfaceName": "cali0123456789a",
                "profiles": [f"kns.{ns}"],
            },
        },
        validate=False,
    )
    return f"{ns}/{name}", (ns, pod)


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def pod(ns: str, name: str, sa: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": "node1", "serviceAccountName": sa},
    }


def policy(ns: str, name: str, port: int = 80, **match: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": match},
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                    "ports": [{"port": port}],
                }
            ],
        },
    }


def anp(name: str, priority: int, *, subject_ns: str, deny_from_ns: str) -> dict[str, Any]:
    """An AdminNetworkPolicy: pods in ``subject_ns`` deny ingress from ``deny_from_ns``."""
    return {
        "metadata": {"name": name},
        "spec": {
            "priority": priority,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": subject_ns}}},
            "ingress": [
                {
                    "name": f"deny-{deny_from_ns}",
                    "action": "Deny",
                    "from": [
                        {
                            "namespaces": {
                                "matchLabels": {"kubernetes.io/metadata.name": deny_from_ns}
                            }
                        }
                    ],
                }
            ],
        },
    }
