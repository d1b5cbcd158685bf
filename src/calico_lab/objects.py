"""The lab as a Kubernetes control plane: apply/delete manifests and change labels.

Input is YAML or JSON, multi-document, ``kind: List`` expanded. Kubernetes Namespaces,
NetworkPolicies, AdminNetworkPolicies and the BaselineAdminNetworkPolicy go through the same
conversions as the kube-controllers (:mod:`calico.k8s.conversion`, :mod:`calico.k8s.admin_policy`)
and land in the lab's etcd; Pods are handed to :mod:`calico_lab.pods`; ``projectcalico.org/v3``
resources go to the datastore Client as they are (Tiers first). Every document is checked (and
converted) before anything is written, so bad input changes nothing: that includes a policy naming
a tier that does not exist, a conversion problem the controller would report (the lab refuses
instead), and two AdminNetworkPolicies with one priority (the lab refuses what Kubernetes would
only warn about, naming both).
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
ANP_API = "policy.networking.k8s.io/v1alpha1"
ADMIN_KINDS = ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
K8S_KINDS = {
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    *((ANP_API, k) for k in ADMIN_KINDS),
}
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
            "AdminNetworkPolicyList",
            "BaselineAdminNetworkPolicyList",
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
            checked = validation.validate(copy.deepcopy(doc.obj))
            if checked["kind"] == "StagedKubernetesNetworkPolicy":
                from calico.cli import loading

                loading.check_staged_kubernetes(checked)
        except (KeyError, ValueError, DatastoreError) as exc:
            raise LabError(f"{doc.where}: {exc}") from None
    elif (api, kind) not in K8S_KINDS:
        raise LabError(
            f"{doc.where}: kind {kind!r} (apiVersion {api!r}) is not supported; use "
            "Namespace, Pod, NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy "
            f"({ANP_API}), List or projectcalico.org/v3 resources"
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


def _is_admin(doc: Doc) -> bool:
    return not doc.is_calico and doc.kind in ADMIN_KINDS


def admin_key(kind: str, name: str) -> str:
    """The lab's key for a cluster-scoped policy (never a "namespace/name": kinds have capitals)."""
    return f"{kind}/{name}"


def _convert_admin(doc: Doc) -> dict[str, Any]:
    """Strict: the lab refuses what the controller would convert with problems."""
    from calico.k8s import admin_policy, conversion

    convert = (
        admin_policy.convert_admin_network_policy
        if doc.kind == "AdminNetworkPolicy"
        else admin_policy.convert_baseline_admin_network_policy
    )
    try:
        result = convert(copy.deepcopy(doc.obj))
    except (conversion.ConversionError, KeyError, TypeError) as exc:
        raise LabError(f"{doc.where}: {exc}") from None
    if result.problems:
        raise LabError(f"{doc.where}: {result.problems[0]}")
    return result.policy


def _check_priorities(lab: LabState, docs: list[Doc]) -> None:
    """Two AdminNetworkPolicies with one priority (the applied ones count too): refused."""
    from calico.k8s import admin_policy

    anps = {k: v for k, v in lab.policies.items() if k.startswith("AdminNetworkPolicy/")}
    for doc in docs:
        if _is_admin(doc) and doc.kind == "AdminNetworkPolicy":
            anps[admin_key(doc.kind, doc.name)] = doc.obj
    clashes = admin_policy.priority_conflicts(list(anps.values()))
    for doc in docs:
        if doc.kind == "AdminNetworkPolicy" and doc.name in clashes:
            raise LabError(
                f"{doc.where}: AdminNetworkPolicy {doc.name}: spec.priority: "
                f"{doc.obj['spec']['priority']} is already the priority of "
                f"{', '.join(clashes[doc.name])} (give each AdminNetworkPolicy its own priority)"
            )


def _check_tiers(store: LabStore, docs: list[Doc]) -> None:
    from calico.cli import tier_checks

    objs = [d.obj for d in docs if d.is_calico]
    problems = store.call(tier_checks.check_writes, store.client, objs)
    if problems:
        raise LabError("; ".join(problems))


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
    if (doc.kind == "Namespace" and not doc.is_calico) or (doc.kind == "Tier" and doc.is_calico):
        return 0  # namespaces, and tiers (their policies need them), first
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
        if _is_admin(doc):
            converted[i] = _convert_admin(doc)
        if doc.kind in ("Namespace", "Pod") and not doc.is_calico:
            _check_labels(doc)
    _check_priorities(lab, docs)
    _check_tiers(store, docs)
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
    if _is_admin(doc):
        key = admin_key(doc.kind, doc.name)
        before = lab.policies.get(key)
        assert policy is not None
        store.apply(policy)
        lab.policies[key] = doc.obj
        lab.save()
        return f"{doc.kind.lower()}.policy.networking.k8s.io/{doc.name} {_verb(before, doc.obj)}"
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
    from calico.cli import tier_checks

    problems = store.call(
        tier_checks.check_deletes, store.client, [d.obj for d in docs if d.is_calico]
    )
    if problems:
        raise LabError("; ".join(problems) + " (nothing was deleted)")
    for doc in sorted(docs, key=_order, reverse=True):
        report(_delete_one(lab, store, doc))


def _delete_one(lab: LabState, store: LabStore, doc: Doc) -> str:
    if doc.is_calico:
        found = store.delete(doc.kind, doc.name, doc.obj["metadata"].get("namespace"))
        return f"{doc.kind.lower()}.projectcalico.org/{doc.name} {_gone(found)}"
    if _is_admin(doc):
        key = admin_key(doc.kind, doc.name)
        policy = _convert_admin(Doc(lab.policies.get(key, doc.obj), doc.where))
        found = store.delete("GlobalNetworkPolicy", policy["metadata"]["name"])
        found = lab.policies.pop(key, None) is not None or found
        lab.save()
        return f"{doc.kind.lower()}.policy.networking.k8s.io/{doc.name} {_gone(found)}"
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
