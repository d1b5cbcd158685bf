"""Calico's keys ↔ Kubernetes objects: the mapping of the Kubernetes datastore (Calico's "KDD").

Every record of the key space (:mod:`calico.datastore.backend`) lives in one Kubernetes
collection, found by its key (:func:`mapper_for`):

==============================================  ================================================
``.../projectcalico.org/<plural>/...`` (v3)      ``crd.projectcalico.org/v1`` ``<plural>`` custom
                                                 resources (IPPool, GlobalNetworkPolicy, ...)
``.../networkpolicies/<ns>/knp.default.<n>``     Kubernetes NetworkPolicy ``<n>`` (read-only)
``.../nodes/<name>``                             Kubernetes Node: Calico's ``projectcalico.org/*``
                                                 annotations, the node's labels
``.../workloadendpoints/<ns>/<name>``            a Pod: ``cni.projectcalico.org/podIP(s)`` and
                                                 ``containerID`` annotations, labels, node, ports
``.../profiles/kns.<ns>``, ``ksa.<ns>.<sa>``     Namespaces, ServiceAccounts (read-only)
``/calico/ipam/v2/assignment/ipvN/block/<c>``    IPAMBlock ``<c with . : / as ->``
``/calico/ipam/v2/host/<h>/ipvN/block/<c>``      BlockAffinity ``<h>-<c>``
``/calico/ipam/v2/handle/<id>``                  IPAMHandle ``<id, lower case>``
``/calico/ipam/v2/config``                       IPAMConfig ``default``
==============================================  ================================================

A mapper turns an object into its (key, value) (``None`` when the object holds no Calico record:
a pod without an address), and a value into the object to store (``replace``: the whole custom
resource) or the patch to apply (``patch``: a Node's or Pod's Calico fields). Custom resources
keep the v3 resource's name, namespace, labels, annotations and spec; uid and creationTimestamp
are the API server's. IPAM records keep their etcd JSON as the spec.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calico.datastore.backend import Refused

V3 = "/calico/resources/v3/projectcalico.org/"
IPAM = "/calico/ipam/v2/"
CRD = "crd.projectcalico.org/v1"
V3_API = "projectcalico.org/v3"
POD_IP = "cni.projectcalico.org/podIP"
POD_IPS = "cni.projectcalico.org/podIPs"
CONTAINER_ID = "cni.projectcalico.org/containerID"
NODE_ANNOTATIONS = {  # v3 Node spec path -> Calico's Kubernetes Node annotation
    ("bgp", "ipv4Address"): "projectcalico.org/IPv4Address",
    ("bgp", "ipv6Address"): "projectcalico.org/IPv6Address",
    ("bgp", "asNumber"): "projectcalico.org/ASNumber",
    ("bgp", "ipv4IPIPTunnelAddr"): "projectcalico.org/IPv4IPIPTunnelAddr",
    ("ipv4VXLANTunnelAddr",): "projectcalico.org/IPv4VXLANTunnelAddr",
    ("vxlanTunnelMACAddr",): "projectcalico.org/VXLANTunnelMACAddr",
}
# v3 kinds stored as custom resources (plural, kind, namespaced); Node, WorkloadEndpoint and
# Profile are Kubernetes objects instead.
CRD_KINDS = [
    ("ippools", "IPPool", False), ("globalnetworkpolicies", "GlobalNetworkPolicy", False),
    ("networkpolicies", "NetworkPolicy", True), ("globalnetworksets", "GlobalNetworkSet", False),
    ("networksets", "NetworkSet", True), ("hostendpoints", "HostEndpoint", False),
    ("bgppeers", "BGPPeer", False), ("bgpconfigurations", "BGPConfiguration", False),
    ("felixconfigurations", "FelixConfiguration", False), ("tiers", "Tier", False),
    ("clusterinformations", "ClusterInformation", False),
    ("kubecontrollersconfigurations", "KubeControllersConfiguration", False),
]  # fmt: skip
IPAM_KINDS = [("ipamblocks", "IPAMBlock"), ("blockaffinities", "BlockAffinity"),
              ("ipamhandles", "IPAMHandle"), ("ipamconfigs", "IPAMConfig")]  # fmt: skip
KNP_PREFIX = "knp.default."


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Collection:
    group_version: str  # "v1", "networking.k8s.io/v1", CRD
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}" + (f"/{name}" if name else "")


class Mapper:
    """One collection's records: how keys and objects correspond."""

    prefix: str  # every key this mapper serves starts with it
    collection: Collection
    mode = "replace"  # "replace" (custom resources), "patch" (Node, Pod), "read" (read-only)

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def locate(self, key: str) -> tuple[str | None, str]:
        """(namespace, object name) of the object holding ``key``."""
        raise NotImplementedError

    def record(self, obj: dict[str, Any]) -> tuple[str, bytes] | None:
        raise NotImplementedError

    def body(self, key: str, value: bytes) -> dict[str, Any]:
        """The object to create or replace (``replace``), or the patch to apply (``patch``)."""
        raise Refused(f"{key}: read-only in the Kubernetes datastore ({self.why_read_only()})")

    def removal(self, key: str) -> dict[str, Any]:
        """``patch`` mappers: the patch that removes the record from its object."""
        raise NotImplementedError

    def why_read_only(self) -> str:
        return "derived from Kubernetes objects"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


class V3Crd(Mapper):
    def __init__(self, plural: str, kind: str, namespaced: bool) -> None:
        self.prefix = f"{V3}{plural}/"
        self.collection = Collection(CRD, plural, kind, namespaced)

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefix) and not key.rsplit("/", 1)[-1].startswith(KNP_PREFIX)

    def locate(self, key: str) -> tuple[str | None, str]:
        parts = key[len(self.prefix) :].split("/")
        return (parts[0], parts[1]) if self.collection.namespaced else (None, parts[0])

    def key_of(self, namespace: str | None, name: str) -> str:
        return (
            f"{self.prefix}{namespace}/{name}" if self.collection.namespaced else self.prefix + name
        )

    def record(self, obj: dict[str, Any]) -> tuple[str, bytes] | None:
        m = _meta(obj)
        meta = {k: m[k] for k in ("name", "namespace", "labels", "annotations", "uid",
                                  "creationTimestamp") if m.get(k)}  # fmt: skip
        value = {"apiVersion": V3_API, "kind": self.collection.kind, "metadata": meta,
                 "spec": obj.get("spec") or {}}  # fmt: skip
        return self.key_of(m.get("namespace"), m["name"]), dumps(value)

    def body(self, key: str, value: bytes) -> dict[str, Any]:
        v = json.loads(value)
        ns, name = self.locate(key)
        m = v.get("metadata") or {}
        meta: dict[str, Any] = {"name": name}
        if ns:
            meta["namespace"] = ns
        for f in ("labels", "annotations"):
            if m.get(f):
                meta[f] = m[f]
        return {"apiVersion": CRD, "kind": self.collection.kind, "metadata": meta,
                "spec": v.get("spec") or {}}  # fmt: skip


def cidr_name(cidr_text: str) -> str:
    """``10.0.0.64-26`` / ``fd00::-122`` → ``10-0-0-64-26`` / ``fd00---122``."""
    return re.sub(r"[.:/]", "-", cidr_text).lower()


class IpamCrd(Mapper):
    """IPAM records: the etcd JSON value is the custom resource's spec."""

    def __init__(self, prefix: str, plural: str, kind: str) -> None:
        self.prefix = prefix
        self.collection = Collection(CRD, plural, kind, False)

    def locate(self, key: str) -> tuple[str | None, str]:
        rest = key[len(self.prefix) :]
        if self.collection.kind == "IPAMBlock":  # ipv4/block/<cidr>
            return None, cidr_name(rest.rsplit("/", 1)[-1])
        if self.collection.kind == "BlockAffinity":  # <host>/ipv4/block/<cidr>
            host, _, tail = rest.partition("/")
            return None, f"{host}-{cidr_name(tail.rsplit('/', 1)[-1])}"
        if self.collection.kind == "IPAMHandle":
            return None, rest.lower()
        return None, "default"

    def record(self, obj: dict[str, Any]) -> tuple[str, bytes] | None:
        spec = dict(obj.get("spec") or {})
        kind = self.collection.kind
        if kind == "IPAMBlock":
            cidr = str(spec["cidr"])
            v = 6 if ":" in cidr else 4
            return f"{self.prefix}ipv{v}/block/{cidr.replace('/', '-')}", dumps(spec)
        if kind == "BlockAffinity":
            cidr = str(spec["cidr"])
            v = 6 if ":" in cidr else 4
            key = f"{self.prefix}{spec['node']}/ipv{v}/block/{cidr.replace('/', '-')}"
            deleted = str(spec.get("deleted", "false")).lower() == "true"
            return key, json.dumps({"state": spec.get("state", "confirmed"), "deleted": deleted},
                                   separators=(",", ":")).encode()  # fmt: skip
        if kind == "IPAMHandle":
            return f"{self.prefix}{spec['handleID']}", dumps(spec)
        return self.prefix.rstrip("/"), dumps(spec)

    def owns(self, key: str) -> bool:
        if self.collection.kind == "IPAMConfig":
            return key == self.prefix.rstrip("/")
        return key.startswith(self.prefix)

    def body(self, key: str, value: bytes) -> dict[str, Any]:
        spec = json.loads(value)
        _, name = self.locate(key)
        if self.collection.kind == "BlockAffinity":
            rest = key[len(self.prefix) :]
            host, _, tail = rest.partition("/")
            cidr = tail.rsplit("/", 1)[-1]
            net, _, plen = cidr.rpartition("-")
            deleted = str(bool(spec.get("deleted"))).lower()
            spec = {"state": spec.get("state", "confirmed"), "node": host,
                    "cidr": f"{net}/{plen}", "deleted": deleted}  # fmt: skip
        return {"apiVersion": CRD, "kind": self.collection.kind, "metadata": {"name": name},
                "spec": spec}  # fmt: skip


class NodeMapper(Mapper):
    """A Calico Node is a Kubernetes Node: its labels, and Calico's annotations for the rest."""

    mode = "patch"

    def __init__(self) -> None:
        self.prefix = f"{V3}nodes/"
        self.collection = Collection("v1", "nodes", "Node", False)

    def locate(self, key: str) -> tuple[str | None, str]:
        return None, key[len(self.prefix) :]

    def record(self, obj: dict[str, Any]) -> tuple[str, bytes] | None:
        m = _meta(obj)
        notes = m.get("annotations") or {}
        spec: dict[str, Any] = {}
        for path, note in NODE_ANNOTATIONS.items():
            if notes.get(note):
                where = spec
                for p in path[:-1]:
                    where = where.setdefault(p, {})
                raw = notes[note]
                where[path[-1]] = int(raw) if path[-1] == "asNumber" and raw.isdigit() else raw
        spec["orchRefs"] = [{"nodeName": m["name"], "orchestrator": "k8s"}]
        meta = {k: m[k] for k in ("name", "labels", "uid", "creationTimestamp") if m.get(k)}
        value = {"apiVersion": V3_API, "kind": "Node", "metadata": meta, "spec": spec}
        return self.prefix + m["name"], dumps(value)

    def body(self, key: str, value: bytes) -> dict[str, Any]:
        spec = json.loads(value).get("spec") or {}
        notes: dict[str, Any] = {}
        for path, note in NODE_ANNOTATIONS.items():
            where: Any = spec
            for p in path:
                where = where.get(p) if isinstance(where, dict) else None
            notes[note] = str(where) if where not in (None, "") else None
        return {"metadata": {"annotations": notes}}

    def removal(self, key: str) -> dict[str, Any]:
        return {"metadata": {"annotations": dict.fromkeys(NODE_ANNOTATIONS.values())}}


def split_wep_name(name: str) -> list[str]:
    """Calico's WorkloadEndpoint name back into its segments (``-`` joins, ``--`` is a ``-``)."""
    out, cur, i = [], "", 0
    while i < len(name):
        if name[i] == "-":
            j = i
            while j < len(name) and name[j] == "-":
                j += 1
            run = j - i
            cur += "-" * (run // 2)
            if run % 2:
                out.append(cur)
                cur = ""
            i = j
        else:
            cur += name[i]
            i += 1
    out.append(cur)
    return out


class PodMapper(Mapper):
    """A pod's WorkloadEndpoint: derived from the pod once the CNI plugin annotated its address."""

    mode = "patch"

    def __init__(self) -> None:
        self.prefix = f"{V3}workloadendpoints/"
        self.collection = Collection("v1", "pods", "Pod", True)

    def locate(self, key: str) -> tuple[str | None, str]:
        ns, _, name = key[len(self.prefix) :].partition("/")
        segments = split_wep_name(name)
        if len(segments) != 4 or segments[1] != "k8s":
            raise Refused(f"{key}: only Kubernetes pods' endpoints (<node>-k8s-<pod>-<iface>) "
                          "are held in the Kubernetes datastore")  # fmt: skip
        return ns, segments[2]

    def record(self, obj: dict[str, Any]) -> tuple[str, bytes] | None:
        m, spec = _meta(obj), obj.get("spec") or {}
        notes = m.get("annotations") or {}
        ips = notes.get(POD_IPS) or notes.get(POD_IP)
        node = spec.get("nodeName")
        if not ips or not node or spec.get("hostNetwork"):
            return None
        from calico.k8s import conversion, names

        ns, pod = m["namespace"], m["name"]
        wep = names.workload_endpoint_name(node, pod)
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
        profiles = [f"kns.{ns}"] + ([f"ksa.{ns}.{sa}"] if sa else [])
        ports = [{"name": p["name"], "protocol": p.get("protocol") or "TCP",
                  "port": int(p["containerPort"])}
                 for c in spec.get("containers") or [] for p in c.get("ports") or []
                 if p.get("name") and p.get("containerPort")]  # fmt: skip
        try:
            labels = conversion.pod_to_workload_labels(obj)
        except ValueError:
            labels = {}
        wspec: dict[str, Any] = {
            "orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
            "containerID": notes.get(CONTAINER_ID, ""),
            "interfaceName": "cali" + hashlib.sha1(f"{ns}.{pod}".encode()).hexdigest()[:11],
            "ipNetworks": [_net(a) for a in str(ips).split(",") if a.strip()],
            "profiles": profiles,
        }  # fmt: skip
        if ports:
            wspec["ports"] = ports
        meta = {"name": wep, "namespace": ns, "labels": labels, "uid": m.get("uid"),
                "creationTimestamp": m.get("creationTimestamp")}  # fmt: skip
        value = {"apiVersion": V3_API, "kind": "WorkloadEndpoint", "metadata": meta, "spec": wspec}
        return f"{self.prefix}{ns}/{wep}", dumps(value)

    def body(self, key: str, value: bytes) -> dict[str, Any]:
        spec = json.loads(value).get("spec") or {}
        nets = [str(n).split("/")[0] for n in spec.get("ipNetworks") or []]
        return {"metadata": {"annotations": {
            POD_IP: nets[0] if nets else None, POD_IPS: ",".join(nets) or None,
            CONTAINER_ID: spec.get("containerID") or None}}}  # fmt: skip

    def removal(self, key: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {POD_IP: None, POD_IPS: None, CONTAINER_ID: None}}}


def _net(addr: str) -> str:
    a = addr.strip()
    return a if "/" in a else f"{a}/{128 if ':' in a else 32}"


class Derived(Mapper):
    """Read-only records converted from Kubernetes objects (profiles, knp.default.* policies)."""

    mode = "read"

    def __init__(self, prefix: str, collection: Collection, name_prefix: str,
                 convert: Callable[[dict[str, Any]], dict[str, Any]]) -> None:  # fmt: skip
        self.prefix = prefix
        self.collection = collection
        self.name_prefix = name_prefix
        self.convert = convert

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefix) and key.rsplit("/", 1)[-1].startswith(self.name_prefix)

    def locate(self, key: str) -> tuple[str | None, str]:
        rest = key[len(self.prefix) :]
        if self.collection.plural == "networkpolicies":  # <ns>/knp.default.<name>
            ns, _, name = rest.partition("/")
            return ns, name[len(KNP_PREFIX) :]
        body = rest[len(self.name_prefix) :]
        if self.collection.plural == "serviceaccounts":  # ksa.<ns>.<sa>
            ns, _, sa = body.partition(".")
            return ns, sa
        return None, body

    def record(self, obj: dict[str, Any]) -> tuple[str, bytes] | None:
        try:
            v = self.convert(obj)
        except ValueError:
            return None  # not convertible: the controllers' status reports it in etcd mode
        m = _meta(obj)
        v["metadata"].update({k: m[k] for k in ("uid", "creationTimestamp") if m.get(k)})
        ns = v["metadata"].get("namespace")
        key = (
            f"{self.prefix}{ns}/{v['metadata']['name']}"
            if ns
            else self.prefix + v["metadata"]["name"]
        )
        return key, dumps(v)

    def why_read_only(self) -> str:
        what = {"networkpolicies": "Kubernetes NetworkPolicies", "namespaces": "Namespaces",
                "serviceaccounts": "ServiceAccounts"}[self.collection.plural]  # fmt: skip
        return f"derived from {what}: change those instead"


def _convert(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def convert(obj: dict[str, Any]) -> dict[str, Any]:
        from calico.k8s import conversion

        out: dict[str, Any] = getattr(conversion, name)(obj)
        return out

    return convert


def build() -> list[Mapper]:
    out: list[Mapper] = [V3Crd(p, k, ns) for p, k, ns in CRD_KINDS]
    out += [NodeMapper(), PodMapper()]
    out += [
        Derived(f"{V3}networkpolicies/", Collection("networking.k8s.io/v1", "networkpolicies",
                "NetworkPolicy", True), KNP_PREFIX, _convert("network_policy_to_calico")),
        Derived(f"{V3}profiles/", Collection("v1", "namespaces", "Namespace", False), "kns.",
                _convert("namespace_to_profile")),
        Derived(f"{V3}profiles/", Collection("v1", "serviceaccounts", "ServiceAccount", True),
                "ksa.", _convert("service_account_to_profile")),
        IpamCrd(f"{IPAM}assignment/", "ipamblocks", "IPAMBlock"),
        IpamCrd(f"{IPAM}host/", "blockaffinities", "BlockAffinity"),
        IpamCrd(f"{IPAM}handle/", "ipamhandles", "IPAMHandle"),
        IpamCrd(f"{IPAM}config/", "ipamconfigs", "IPAMConfig"),
    ]  # fmt: skip
    return out


MAPPERS = build()


def mapper_for(key: str) -> Mapper:
    for m in MAPPERS:
        if m.owns(key):
            return m
    raise Refused(f"{key}: no Kubernetes resource holds this key in the Kubernetes datastore")


def mappers_under(prefix: str) -> list[Mapper]:
    """The mappers with a key under ``prefix`` (or ``prefix`` under theirs)."""
    out = []
    for m in MAPPERS:
        p = (
            m.prefix.rstrip("/")
            if isinstance(m, IpamCrd) and m.collection.kind == "IPAMConfig"
            else m.prefix
        )
        if p.startswith(prefix) or prefix.startswith(p):
            out.append(m)
    return out


__all__ = ["CRD", "MAPPERS", "Collection", "Mapper", "dumps", "mapper_for", "mappers_under"]
