"""Keep a lab pod's WorkloadEndpoint in step with the pod: labels, named ports, profiles.

With a real cluster the CNI plugin reads these from the Kubernetes API at ADD time. The lab is its
own API server, so after ADD (and on every label change) it writes them onto the WorkloadEndpoint
the plugin created, using the k8s conversion
(:func:`calico.k8s.conversion.pod_to_workload_labels`). Writes are compare-and-swap, retried on
conflict.
"""

from __future__ import annotations

import json
from typing import Any

from calico.datastore.client import Conflict, NotFound
from calico_lab.state import LabError, LabState, PodState
from calico_lab.store import LabStore

ORCHESTRATOR = "k8s"


def pod_object(lab: LabState, p: PodState) -> dict[str, Any]:
    """The Kubernetes Pod the lab holds for ``p`` (what an API server would return)."""
    containers = [
        {"name": "main", "image": "calico-lab/responder", "ports": [dict(port) for port in p.ports]}
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)},
        "spec": {
            "nodeName": p.node,
            "serviceAccountName": p.service_account,
            "containers": containers,
        },
        "status": {"podIP": p.ip, "phase": "Running" if p.ip else "Pending"},
    }


def publish(lab: LabState, p: PodState) -> None:
    """Serve the pod on the lab's API endpoint (what the CNI plugin reads at ADD)."""
    from calico_lab import apiserver

    path = apiserver.pod_file(lab.api_dir, p.namespace, p.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pod_object(lab, p)))
    tmp.replace(path)


def unpublish(lab: LabState, p: PodState) -> None:
    from calico_lab import apiserver

    apiserver.pod_file(lab.api_dir, p.namespace, p.name).unlink(missing_ok=True)


def desired_labels(lab: LabState, p: PodState) -> dict[str, str]:
    from calico.k8s import conversion

    labels: dict[str, str] = conversion.pod_to_workload_labels(pod_object(lab, p))
    return labels


def named_ports(p: PodState) -> list[dict[str, Any]]:
    return [
        {"name": port["name"], "port": port["containerPort"], "protocol": port["protocol"]}
        for port in p.ports
        if port.get("name")
    ]


def find(store: LabStore, p: PodState) -> dict[str, Any] | None:
    for wep in store.list("workloadendpoints", p.namespace):
        spec = wep.get("spec") or {}
        if spec.get("pod") == p.name and spec.get("node") == p.node:
            return wep
    return None


def sync(store: LabStore, lab: LabState, p: PodState) -> dict[str, Any]:
    """Write the pod's labels, named ports and profiles onto its WorkloadEndpoint."""
    publish(lab, p)
    labels = desired_labels(lab, p)
    for _ in range(10):
        wep = find(store, p)
        if wep is None:
            raise LabError(f"pod {p.key}: the CNI plugin made no WorkloadEndpoint on {p.node}")
        spec = wep.setdefault("spec", {})
        want_profiles = [f"kns.{p.namespace}", f"ksa.{p.namespace}.{p.service_account}"]
        if (
            wep["metadata"].get("labels") == labels
            and spec.get("ports", []) == named_ports(p)
            and spec.get("profiles") == want_profiles
        ):
            return wep
        wep["metadata"]["labels"] = labels
        spec["ports"] = named_ports(p)
        spec["profiles"] = want_profiles
        try:
            return store.update(wep)
        except (Conflict, NotFound):
            continue
    raise LabError(f"pod {p.key}: WorkloadEndpoint kept changing; labels not written")


def remove(store: LabStore, lab: LabState, p: PodState) -> None:
    """Delete the pod's WorkloadEndpoint if CNI DEL left it behind."""
    wep = find(store, p)
    if wep is not None:
        store.delete("workloadendpoints", wep["metadata"]["name"], p.namespace)
