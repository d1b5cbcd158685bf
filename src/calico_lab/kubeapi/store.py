"""The fake API server's object store: resourceVersions, a watch history window, and defaulting.

Resources are named by their plural, Calico's custom resources by ``<plural>.crd.projectcalico.org``
(``networkpolicies`` is Kubernetes', ``networkpolicies.crd.projectcalico.org`` Calico's); those are
served only while their CustomResourceDefinition exists (create one to serve them, as the real
server does).

One global resourceVersion counter (as etcd gives the real API server). Every write appends a watch
event to its resource's history; ``compact()`` forgets history so that a watch from an older
resourceVersion gets 410 Gone. Writes follow the real server's rules the controller depends on:
AlreadyExists / NotFound / Conflict on a stale resourceVersion, namespaces must exist, deleting a
namespace deletes what is in it, and the defaulting admission does (pod serviceAccountName,
NetworkPolicy policyTypes, the ``kubernetes.io/metadata.name`` namespace label).
"""

from __future__ import annotations

import bisect
import copy
import datetime
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES: dict[str, ResourceType] = {
    r.plural: r
    for r in (
        ResourceType("", "v1", "Pod", "pods", True),
        ResourceType("", "v1", "Namespace", "namespaces", False),
        ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True),
        ResourceType("", "v1", "Event", "events", True),
        ResourceType("", "v1", "Node", "nodes", False),
        ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            False,
        ),
        ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True),
        # The network-policy-api CRDs (served unless listed in Store.not_served).
        ResourceType(
            "policy.networking.k8s.io",
            "v1alpha1",
            "AdminNetworkPolicy",
            "adminnetworkpolicies",
            False,
        ),
        ResourceType(
            "policy.networking.k8s.io",
            "v1alpha1",
            "BaselineAdminNetworkPolicy",
            "baselineadminnetworkpolicies",
            False,
        ),
    )
}
CALICO_GROUP = "crd.projectcalico.org"
CALICO_KINDS = {
    "ippools": ("IPPool", False), "globalnetworkpolicies": ("GlobalNetworkPolicy", False),
    "networkpolicies": ("NetworkPolicy", True), "globalnetworksets": ("GlobalNetworkSet", False),
    "networksets": ("NetworkSet", True), "hostendpoints": ("HostEndpoint", False),
    "bgppeers": ("BGPPeer", False), "bgpconfigurations": ("BGPConfiguration", False),
    "felixconfigurations": ("FelixConfiguration", False), "tiers": ("Tier", False),
    "clusterinformations": ("ClusterInformation", False),
    "kubecontrollersconfigurations": ("KubeControllersConfiguration", False),
    "ipamblocks": ("IPAMBlock", False), "blockaffinities": ("BlockAffinity", False),
    "ipamhandles": ("IPAMHandle", False), "ipamconfigs": ("IPAMConfig", False),
}  # fmt: skip
for _plural, (_kind, _namespaced) in CALICO_KINDS.items():
    RESOURCES[f"{_plural}.{CALICO_GROUP}"] = ResourceType(
        CALICO_GROUP, "v1", _kind, _plural, _namespaced
    )
GROUP_VERSIONS = {r.api_version for r in RESOURCES.values() if r.group}


def resource_id(group: str, plural: str) -> str:
    """The store's name of a resource: its plural, with the group for Calico's CRDs."""
    return f"{plural}.{group}" if group == CALICO_GROUP else plural


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details

    def status(self) -> Obj:
        extra = {"details": self.details} if self.details else {}
        return {
            **extra,
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    obj: Obj


@dataclass
class History:
    rvs: list[int] = field(default_factory=list)
    events: list[WatchEvent] = field(default_factory=list)

    def since(self, rv: int) -> list[WatchEvent]:
        return self.events[bisect.bisect_right(self.rvs, rv) :]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class Store:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 1
        self.compacted_rv = 0  # a watch from an rv below this gets 410
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {p: {} for p in RESOURCES}
        self.history: dict[str, History] = {p: History() for p in RESOURCES}
        self.generation = 0  # bumped to make watchers drop their connections
        # resources answered 404, as without their CRD: Calico's until their CRD is created
        self.not_served: set[str] = {r for r in RESOURCES if r.endswith("." + CALICO_GROUP)}

    # ---- reads -------------------------------------------------------------------------------

    def get(self, plural: str, ns: str, name: str) -> Obj:
        with self.cond:
            obj = self.objects[plural].get((ns, name))
            if obj is None:
                raise not_found(plural, name)
            return copy.deepcopy(obj)

    def list_items(self, plural: str, ns: str | None) -> tuple[list[Obj], int]:
        with self.cond:
            items = [
                o for (ons, _), o in sorted(self.objects[plural].items()) if ns is None or ons == ns
            ]
            return copy.deepcopy(items), self.rv

    def events_since(self, plural: str, rv: int) -> list[WatchEvent]:
        return self.history[plural].since(rv)

    # ---- writes (caller-facing; each bumps rv and records a watch event) ---------------------

    def _record(self, plural: str, type_: str, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        h = self.history[plural]
        h.rvs.append(self.rv)
        h.events.append(WatchEvent(self.rv, type_, copy.deepcopy(obj)))
        self.cond.notify_all()
        return copy.deepcopy(obj)

    def _key(self, rt: ResourceType, ns: str | None, obj: Obj) -> tuple[str, str]:
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            ns = ns or meta.get("namespace")
            if not ns:
                raise ApiError(400, "BadRequest", "the namespace of the object is required")
            if meta.get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match")
            if ("", ns) not in self.objects["namespaces"]:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        return (ns or "") if rt.namespaced else "", meta["name"]

    @staticmethod
    def _default(rt: ResourceType, obj: Obj) -> None:
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj["metadata"]
        if rt.kind == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        elif rt.kind == "Pod":
            spec = obj.setdefault("spec", {})
            spec.setdefault("serviceAccountName", "default")
        elif rt.kind == "NetworkPolicy":
            spec = obj.setdefault("spec", {})
            spec.setdefault("podSelector", {})
            if not spec.get("policyTypes"):
                spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])

    def create(self, plural: str, obj: Obj, ns: str | None = None) -> Obj:
        rt = RESOURCES[plural]
        obj = copy.deepcopy(obj)
        with self.cond:
            key = self._key(rt, ns, obj)
            if key in self.objects[plural]:
                raise ApiError(409, "AlreadyExists", f'{plural} "{key[1]}" already exists')
            self._default(rt, obj)
            meta = obj["metadata"]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            self.objects[plural][key] = obj
            if plural == "customresourcedefinitions":
                self._crd_added(obj)
            return self._record(plural, "ADDED", obj)

    @staticmethod
    def _crd_id(crd: Obj) -> str:
        spec = crd.get("spec") or {}
        return resource_id(str(spec.get("group", "")), str((spec.get("names") or {}).get("plural")))

    def _crd_added(self, crd: Obj) -> None:
        if self._crd_id(crd) in RESOURCES:
            self.not_served.discard(self._crd_id(crd))

    def _crd_gone(self, crd: Obj) -> None:
        rid = self._crd_id(crd)
        if rid in RESOURCES and rid.endswith("." + CALICO_GROUP):
            self.not_served.add(rid)
            for k in list(self.objects[rid]):
                self._record(rid, "DELETED", self.objects[rid].pop(k))

    def update(self, plural: str, obj: Obj, ns: str | None = None) -> Obj:
        rt = RESOURCES[plural]
        obj = copy.deepcopy(obj)
        with self.cond:
            key = self._key(rt, ns, obj)
            current = self.objects[plural].get(key)
            if current is None:
                raise not_found(plural, key[1])
            want = obj["metadata"].get("resourceVersion")
            if want and want != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {plural} "
                    f'"{key[1]}": the object has been modified',
                )
            for f in ("uid", "creationTimestamp"):
                obj["metadata"][f] = current["metadata"][f]
            self._default(rt, obj)
            self.objects[plural][key] = obj
            return self._record(plural, "MODIFIED", obj)

    def patch(self, plural: str, ns: str | None, name: str, patch: Obj) -> Obj:
        with self.cond:
            current = self.get(plural, ns or "", name)
            merged = merge_patch(current, patch)
            merged["metadata"]["name"] = name
            return self.update(plural, merged, ns)

    def delete(self, plural: str, ns: str | None, name: str, rv: str | None = None) -> Obj:
        """Delete; ``rv``: only if the object is at this resourceVersion (409 otherwise)."""
        with self.cond:
            key = (ns or "", name) if RESOURCES[plural].namespaced else ("", name)
            current = self.objects[plural].get(key)
            if current is None:
                raise not_found(plural, name)
            if rv and current["metadata"]["resourceVersion"] != rv:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on {plural} "
                               f'"{name}": Precondition failed: ResourceVersion: {rv}')  # fmt: skip
            obj = self.objects[plural].pop(key)
            if plural == "customresourcedefinitions":
                self._crd_gone(obj)
            if plural == "namespaces":
                for other, objs in self.objects.items():
                    for k in [k for k in objs if RESOURCES[other].namespaced and k[0] == name]:
                        self._record(other, "DELETED", objs.pop(k))
            return self._record(plural, "DELETED", obj)

    def bind(self, ns: str, name: str, binding: Obj) -> Obj:
        """The pods/binding subresource, as the real registry's ``assignPod``: set spec.nodeName
        (and the PodScheduled condition) once; 409 when the pod is already bound or the
        Binding's uid/resourceVersion preconditions do not match."""
        if binding.get("kind", "Binding") != "Binding":
            raise ApiError(400, "BadRequest", f"expected kind Binding, got {binding.get('kind')!r}")
        target = binding.get("target") or {}
        if not target.get("name") or target.get("kind", "Node") != "Node":
            raise ApiError(422, "Invalid", "target.name: Required value (a Node)")
        meta = binding.get("metadata") or {}
        if meta.get("name", name) != name or meta.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "the name of the binding does not match the pod")
        with self.cond:
            pod = self.objects["pods"].get((ns, name))
            if pod is None:
                raise ApiError(404, "NotFound", f'pods "{name}" not found')
            conflict = f'Operation cannot be fulfilled on pods/binding "{name}": '
            if meta.get("uid") and meta["uid"] != pod["metadata"]["uid"]:
                raise ApiError(409, "Conflict", conflict + "Precondition failed: UID mismatch")
            rv = meta.get("resourceVersion")
            if rv and rv != pod["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", conflict + "the object has been modified")
            if pod["metadata"].get("deletionTimestamp"):
                raise ApiError(409, "Conflict", conflict + "pod is being deleted")
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                raise ApiError(
                    409, "Conflict", conflict + f"pod {name} is already assigned to node {node!r}"
                )
            pod.setdefault("spec", {})["nodeName"] = target["name"]
            status = pod.setdefault("status", {})
            conditions = [
                c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"
            ]
            status["conditions"] = [*conditions, {"type": "PodScheduled", "status": "True"}]
            return self._record("pods", "MODIFIED", pod)

    def compact(self) -> int:
        """Forget all watch history: a watch from any earlier resourceVersion now gets 410 Gone."""
        with self.cond:
            self.compacted_rv = self.rv
            for h in self.history.values():
                h.rvs.clear()
                h.events.clear()
            return self.rv


def not_found(plural: str, name: str) -> ApiError:
    rt = RESOURCES[plural]
    return ApiError(404, "NotFound", f'{rt.plural} "{name}" not found',
                    {"name": name, "kind": rt.plural})  # fmt: skip
