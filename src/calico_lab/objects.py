"""The lab as a Kubernetes control plane: apply/delete manifests and change labels.

Input is YAML or JSON, multi-document, ``kind: List`` expanded. Kubernetes Namespaces and
NetworkPolicies go through the same conversion as the kube-controllers
(:mod:`calico.k8s.conversion`) and land in the lab's etcd; Pods are handed to
:mod:`calico_lab.pods`; ``projectcalico.org/v3`` resources go to the datastore Client as they are.
Every document is checked (and converted) before anything is written, so bad input changes nothing.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calico.datastore.client import DatastoreError
from calico_lab import pods
from calico_lab.state import LabError, LabState
from calico_lab.store import LabStore

CALICO_API = "projectcalico.org/v3"
K8S_KINDS = {("v1", "Namespace"), ("v1", "Pod"), ("networking.k8s.io/v1", "NetworkPolicy")}
NS_NAME_LABEL = "kubernetes.io/metadata.name"
Report = Callable[[str], None]


@dataclass
class Doc:
    obj: dict[str, Any]
    where: str  # "document 3" / "document 2, item 1", for error messages

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "default")

    @property
    def is_calico(self) -> bool:
        return self.obj.get("apiVersion") == CALICO_API


def parse(text: str, source: str = "-") -> list[Doc]:
    import yaml

    try:
        raw = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise LabError(f"{source}: not valid YAML/JSON: {exc}") from None
    docs: list[Doc] = []
    for i, d in enumerate(raw, 1):
        if isinstance(d, dict) and d.get("kind") in (
            "List",
            "PodList",
            "NamespaceList",
            "NetworkPolicyList",
        ):
            docs += [
                Doc(item, f"{source}: document {i}, item {j}")
                for j, item in enumerate(d.get("items") or [], 1)
            ]
        else:
            docs.append(Doc(d, f"{source}: document {i}"))
    for doc in docs:
        _check(doc)
    return docs


def _check(doc: Doc) -> None:
    if not isinstance(doc.obj, dict):
        raise LabError(f"{doc.where}: expected a mapping, got {type(doc.obj).__name__}")
    api, kind = doc.obj.get("apiVersion"), doc.obj.get("kind")
    meta = doc.obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise LabError(f"{doc.where}: metadata.name is required (kind {kind!r})")
    if doc.is_calico:
        from calico.model import kinds, validation

        try:
            kinds.lookup(str(kind))
            validation.validate(copy.deepcopy(doc.obj))
        except (KeyError, ValueError, DatastoreError) as exc:
            raise LabError(f"{doc.where}: {exc}") from None
    elif (api, kind) not in K8S_KINDS:
        raise LabError(
            f"{doc.where}: kind {kind!r} (apiVersion {api!r}) is not supported; use "
            "Namespace, Pod, NetworkPolicy, List or projectcalico.org/v3 resources"
        )


def _convert_policy(doc: Doc) -> dict[str, Any]:
    from calico.k8s import conversion

    obj = copy.deepcopy(doc.obj)
    obj["metadata"].setdefault("namespace", "default")
    try:
        policy: dict[str, Any] = conversion.network_policy_to_calico(obj)
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{doc.where}: NetworkPolicy {doc.namespace}/{doc.name}: {exc}") from None
    return policy


def _check_labels(doc: Doc) -> None:
    """Labels must be valid Kubernetes labels (checked by the conversion the write will use)."""
    from calico.k8s import conversion

    obj = copy.deepcopy(doc.obj)
    obj["metadata"].setdefault("namespace", "default")
    try:
        if doc.kind == "Namespace":
            conversion.namespace_to_profile(obj)
        else:
            conversion.pod_to_workload_labels(obj)
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{doc.where}: {exc}") from None


def _order(doc: Doc) -> int:
    if doc.kind == "Namespace" and not doc.is_calico:
        return 0
    return 2 if doc.kind == "Pod" else 1


def apply(lab: LabState, store: LabStore, docs: list[Doc], report: Report) -> None:
    known = set(lab.namespaces) | {
        d.name for d in docs if d.kind == "Namespace" and not d.is_calico
    }
    converted: dict[int, dict[str, Any]] = {}
    for i, doc in enumerate(docs):
        if (
            not doc.is_calico
            and doc.kind in ("Pod", "NetworkPolicy")
            and doc.namespace not in known
        ):
            raise LabError(
                f"{doc.where}: namespace {doc.namespace!r} not found (apply a Namespace first)"
            )
        if doc.kind == "Pod" and not doc.is_calico:
            pods.container_ports(doc.obj)
            if (doc.obj.get("spec") or {}).get("nodeName"):
                lab.node(str(doc.obj["spec"]["nodeName"]))
        if doc.kind == "NetworkPolicy" and not doc.is_calico:
            converted[i] = _convert_policy(doc)
        if doc.kind in ("Namespace", "Pod") and not doc.is_calico:
            _check_labels(doc)
    for i, doc in sorted(enumerate(docs), key=lambda t: _order(t[1])):
        report(_apply_one(lab, store, doc, converted.get(i)))


def _apply_one(lab: LabState, store: LabStore, doc: Doc, policy: dict[str, Any] | None) -> str:
    if doc.is_calico:
        existed = store.find(doc.kind, doc.name, doc.obj["metadata"].get("namespace"))
        store.apply(copy.deepcopy(doc.obj))
        verb = "created" if existed is None else "configured"
        return f"{doc.kind.lower()}.projectcalico.org/{doc.name} {verb}"
    if doc.kind == "Namespace":
        before = lab.namespaces.get(doc.name)
        labels = {str(k): str(v) for k, v in (doc.obj["metadata"].get("labels") or {}).items()}
        ensure_namespace(lab, store, doc.name, labels)  # rewritten even when unchanged
        return f"namespace/{doc.name} {_verb(before, lab.namespaces[doc.name])}"
    if doc.kind == "NetworkPolicy":
        key = f"{doc.namespace}/{doc.name}"
        before = lab.policies.get(key)
        assert policy is not None
        store.apply(policy)
        lab.policies[key] = doc.obj
        lab.save()
        verb = _verb(before, doc.obj)
        return f"networkpolicy.networking.k8s.io/{doc.name} -n {doc.namespace} {verb}"
    key = f"{doc.namespace}/{doc.name}"
    obj = copy.deepcopy(doc.obj)
    obj["metadata"]["namespace"] = doc.namespace
    if key in lab.pods and not lab.pods[key].ip:
        with contextlib.suppress(LabError):  # left half-made by an interrupted apply: redo
            pods.delete(lab, store, key)
    if key in lab.pods:
        changed = pods.update(lab, store, lab.pods[key], obj)
        return f"pod/{doc.name} -n {doc.namespace} {'configured' if changed else 'unchanged'}"
    p = pods.create(lab, store, obj)
    return f"pod/{doc.name} -n {doc.namespace} created on {p.node} ({p.ip})"


def _verb(before: object, after: object) -> str:
    if before is None:
        return "created"
    return "unchanged" if before == after else "configured"


def ensure_namespace(lab: LabState, store: LabStore, name: str, labels: dict[str, str]) -> None:
    """Record a Kubernetes Namespace and write its profiles (``kns.<ns>``, ``ksa.<ns>.default``)."""
    from calico.k8s import conversion

    labels = {**labels, NS_NAME_LABEL: name}
    ns_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    sa_obj = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": name},
    }
    store.apply(conversion.namespace_to_profile(ns_obj))
    store.apply(conversion.service_account_to_profile(sa_obj))
    lab.namespaces[name] = labels
    lab.save()


def relabel_namespace(
    lab: LabState, store: LabStore, name: str, changes: dict[str, str | None]
) -> dict[str, str]:
    if name not in lab.namespaces:
        raise LabError(f"namespace {name!r} not found")
    labels = dict(lab.namespaces[name])
    for k, v in changes.items():
        if k == NS_NAME_LABEL:
            raise LabError(f"label {k} is set by the lab and cannot be changed")
        if v is None:
            labels.pop(k, None)
        else:
            labels[k] = v
    ensure_namespace(lab, store, name, labels)
    return labels


def delete(lab: LabState, store: LabStore, docs: list[Doc], report: Report) -> None:
    for doc in sorted(docs, key=_order, reverse=True):
        report(_delete_one(lab, store, doc))


def _delete_one(lab: LabState, store: LabStore, doc: Doc) -> str:
    if doc.is_calico:
        found = store.delete(doc.kind, doc.name, doc.obj["metadata"].get("namespace"))
        return f"{doc.kind.lower()}.projectcalico.org/{doc.name} {_gone(found)}"
    if doc.kind == "Pod":
        key = f"{doc.namespace}/{doc.name}"
        if key not in lab.pods:
            return f"pod/{doc.name} -n {doc.namespace} not found"
        pods.delete(lab, store, key)
        return f"pod/{doc.name} -n {doc.namespace} deleted"
    if doc.kind == "NetworkPolicy":
        key = f"{doc.namespace}/{doc.name}"
        policy = _convert_policy(Doc(lab.policies.get(key, doc.obj), doc.where))
        found = store.delete("networkpolicies", policy["metadata"]["name"], doc.namespace)
        found = lab.policies.pop(key, None) is not None or found
        lab.save()
        return f"networkpolicy.networking.k8s.io/{doc.name} -n {doc.namespace} {_gone(found)}"
    return delete_namespace(lab, store, doc.name)


def delete_namespace(lab: LabState, store: LabStore, name: str) -> str:
    if name not in lab.namespaces:
        return f"namespace/{name} not found"
    for key in [k for k in lab.pods if k.startswith(f"{name}/")]:
        pods.delete(lab, store, key)
    for key in [k for k in lab.policies if k.startswith(f"{name}/")]:
        _delete_one(lab, store, Doc(lab.policies[key], f"namespace {name}"))
    store.delete("profiles", f"kns.{name}")
    store.delete("profiles", f"ksa.{name}.default")
    del lab.namespaces[name]
    lab.save()
    return f"namespace/{name} deleted"


def _gone(found: bool) -> str:
    return "deleted" if found else "not found"
