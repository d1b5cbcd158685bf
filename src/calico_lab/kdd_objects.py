"""The Kubernetes objects of a Kubernetes-datastore lab, written to its API server as they are.

In this mode the datastore reads Namespaces, ServiceAccounts, NetworkPolicies and Pods directly
(profiles ``kns.*``/``ksa.*``, policies ``knp.default.*``, WorkloadEndpoints from annotated pods),
so ``calico-lab apply``/``delete``/``label`` write those objects instead of converted Calico
records (:mod:`calico_lab.objects` and :mod:`calico_lab.pods` call here when ``lab.kdd``).
Updates replace the object at the resourceVersion read, retried on a 409 Conflict.
"""

from __future__ import annotations

import copy
from typing import Any

from calico_lab.state import LabError, LabState, PodState
from calico_lab.store import LabStore

NS_NAME_LABEL = "kubernetes.io/metadata.name"
NP = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
ATTEMPTS = 10


def _fail(what: str, status: int, doc: dict[str, Any]) -> LabError:
    return LabError(f"{what}: HTTP {status}: {doc.get('message', '') or doc.get('reason', '')}")


def put(store: LabStore, collection: str, obj: dict[str, Any], what: str) -> dict[str, Any]:
    """Create ``obj`` in ``collection``, or replace the existing one (its resourceVersion)."""
    name = obj["metadata"]["name"]
    for _ in range(ATTEMPTS):
        status, have = store.kube("GET", f"{collection}/{name}")
        if status == 404:
            status, doc = store.kube("POST", collection, obj)
            if status == 409:
                continue  # made meanwhile: replace it
        elif status == 200:
            body = copy.deepcopy(obj)
            body["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"]
            status, doc = store.kube("PUT", f"{collection}/{name}", body)
            if status == 409:
                continue  # changed meanwhile: read again
        else:
            raise _fail(what, status, have)
        if status >= 300:
            raise _fail(what, status, doc)
        return doc
    raise LabError(f"{what}: kept changing; not written")


def delete(store: LabStore, path: str, what: str) -> bool:
    """DELETE at once (grace period 0: no kubelet confirms here); False when it was not there."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
    status, doc = store.kube("DELETE", path, body)
    if status == 404:
        return False
    if status >= 300:
        raise _fail(what, status, doc)
    return True


def ensure_namespace(store: LabStore, name: str, labels: dict[str, str]) -> None:
    """The Namespace (labels as given, plus its name label) and its ``default`` ServiceAccount."""
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": name, "labels": {**labels, NS_NAME_LABEL: name}}}  # fmt: skip
    put(store, "/api/v1/namespaces", ns, f"namespace {name}")
    sa = {"apiVersion": "v1", "kind": "ServiceAccount",
          "metadata": {"name": "default", "namespace": name}}  # fmt: skip
    status, doc = store.kube("POST", f"/api/v1/namespaces/{name}/serviceaccounts", sa)
    if status not in (201, 409):
        raise _fail(f"serviceaccount {name}/default", status, doc)


def delete_namespace(store: LabStore, name: str) -> None:
    """Delete the Namespace (its pods and policies are gone already). With no controller manager
    to finalize it, the lab empties its finalizers itself, as the namespace controller would."""
    delete(store, f"/api/v1/namespaces/{name}/serviceaccounts/default", "serviceaccount")
    if not delete(store, f"/api/v1/namespaces/{name}", f"namespace {name}"):
        return
    status, doc = store.kube("GET", f"/api/v1/namespaces/{name}")
    if status == 200 and (doc.get("spec") or {}).get("finalizers"):
        doc["spec"]["finalizers"] = []
        store.kube("PUT", f"/api/v1/namespaces/{name}/finalize", doc)


def put_policy(store: LabStore, obj: dict[str, Any], namespace: str) -> None:
    body: dict[str, Any] = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": obj["metadata"]["name"], "namespace": namespace,
                         "labels": dict(obj["metadata"].get("labels") or {})},
            "spec": copy.deepcopy(obj.get("spec") or {})}  # fmt: skip
    name = body["metadata"]["name"]
    put(store, NP.format(ns=namespace), body, f"networkpolicy {namespace}/{name}")


def delete_policy(store: LabStore, namespace: str, name: str) -> bool:
    path = f"{NP.format(ns=namespace)}/{name}"
    return delete(store, path, f"networkpolicy {namespace}/{name}")


def pod_body(p: PodState, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Pod the lab creates for ``p``: the user's spec bound to its node."""
    spec = copy.deepcopy(spec or {})
    containers = spec.get("containers") or [{"name": "main", "image": "calico-lab/responder"}]
    for i, c in enumerate(containers):
        c.setdefault("name", f"c{i}")
        c.setdefault("image", "calico-lab/responder")
    spec.update(containers=containers, nodeName=p.node, serviceAccountName=p.service_account)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)},
            "spec": spec}  # fmt: skip


def create_pod(store: LabStore, lab: LabState, p: PodState, spec: dict[str, Any] | None) -> None:
    """The Pod object the CNI plugin reads and annotates; one that exists already (the
    ``--kubeconfig`` sync starts pods the API server holds) must be bound to ``p``'s node."""
    path = f"/api/v1/namespaces/{p.namespace}/pods"
    status, doc = store.kube("GET", f"{path}/{p.name}")
    if status == 200:
        bound = (doc.get("spec") or {}).get("nodeName")
        if bound != p.node:
            raise LabError(f"pod {p.key}: the API server has it on {bound!r}, not {p.node}")
        return
    status, doc = store.kube("POST", path, pod_body(p, spec))
    if status >= 300:
        raise _fail(f"pod {p.key}", status, doc)


def delete_pod(store: LabStore, p: PodState) -> None:
    delete(store, f"/api/v1/namespaces/{p.namespace}/pods/{p.name}", f"pod {p.key}")


def relabel_pod(store: LabStore, p: PodState) -> None:
    """The pod's labels as the lab holds them (the datastore derives the endpoint's)."""
    path = f"/api/v1/namespaces/{p.namespace}/pods/{p.name}"
    for _ in range(ATTEMPTS):
        status, doc = store.kube("GET", path)
        if status != 200:
            raise _fail(f"pod {p.key}", status, doc)
        doc["metadata"]["labels"] = dict(p.labels)
        status, out = store.kube("PUT", path, doc)
        if status == 409:
            continue
        if status >= 300:
            raise _fail(f"pod {p.key}: labels", status, out)
        return
    raise LabError(f"pod {p.key}: kept changing; labels not written")
