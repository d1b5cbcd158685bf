"""Validation and defaulting of Calico v3 resources (plain dicts in Calico's JSON shape).

``validate(obj)`` checks ``apiVersion``, ``kind``, ``metadata`` and the kind's ``spec``, and returns
a normalized deep copy carrying Calico's defaults (IPPool blockSize/encapsulation/NAT, inferred
policy ``types``, the ``default`` namespace, ...). It never mutates its argument. Any problem raises
:class:`ValidationError`, whose message names the resource, the field and the value::

    GlobalNetworkPolicy(allow-dns): spec.ingress[0].destination.ports[1]: invalid port '70000'

The checks are plain Python over dicts (no msgspec) because the datastore Client calls this on every
write and short-lived processes should not pay for heavier imports. Per-kind rules live in
:mod:`calico.model.policy`, :mod:`~calico.model.network`, :mod:`~calico.model.endpoints` and
:mod:`~calico.model.felixconfig`; field checkers in :mod:`calico.model.fields`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from calico.model import endpoints, felixconfig, fields, kinds, network, policy
from calico.model.fields import FieldError, Obj


class ValidationError(ValueError):
    """A resource is invalid. ``resource`` is e.g. ``IPPool(pool1)``; ``field`` the dotted path."""

    def __init__(self, message: str, *, resource: str = "", field: str = "") -> None:
        super().__init__(message)
        self.resource = resource
        self.field = field


_META_FIELDS = fields.names(
    "name namespace labels annotations resourceVersion uid creationTimestamp generation "
    "deletionTimestamp deletionGracePeriodSeconds ownerReferences finalizers generateName "
    "selfLink clusterName managedFields"
)

SpecChecker = Callable[[Obj, str, str], Obj]  # (spec, "spec", name) -> normalized spec


def _named(fn: Callable[[Obj, str], Obj]) -> SpecChecker:
    return lambda spec, path, _name: fn(spec, path)


SPEC_CHECKERS: dict[str, SpecChecker] = {
    "IPPool": _named(network.ippool),
    "Node": _named(network.node),
    "WorkloadEndpoint": _named(endpoints.workload_endpoint),
    "HostEndpoint": _named(endpoints.host_endpoint),
    "Profile": _named(policy.profile),
    "NetworkPolicy": _named(policy.network_policy),
    "GlobalNetworkPolicy": _named(policy.global_network_policy),
    "GlobalNetworkSet": _named(policy.network_set),
    "NetworkSet": _named(policy.network_set),
    "BGPPeer": _named(network.bgp_peer),
    "BGPConfiguration": network.bgp_configuration,
    "FelixConfiguration": _named(felixconfig.felix_configuration),
    "ClusterInformation": network.cluster_information,
}


def describe(obj: Any) -> str:
    """``Kind(name)`` / ``Kind(namespace/name)`` for messages, best effort on malformed input."""
    if not isinstance(obj, dict):
        return "resource"
    kind = obj.get("kind") or "resource"
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") or "<no name>"
    ns = meta.get("namespace")
    try:
        namespaced = kinds.lookup(str(kind)).namespaced
    except ValueError:
        namespaced = False
    return f"{kind}({ns}/{name})" if ns and namespaced else f"{kind}({name})"


def validate(obj: dict[str, Any]) -> dict[str, Any]:
    """A normalized, defaulted copy of ``obj``; ValidationError naming field and value."""
    if not isinstance(obj, dict):
        raise ValidationError(f"resource: must be a mapping, got {obj!r}")
    try:
        return _validate(obj)
    except FieldError as exc:
        what = describe(obj)
        raise ValidationError(f"{what}: {exc}", resource=what, field=exc.path) from None


def _validate(obj: Obj) -> Obj:
    fields.known_keys(obj, ("apiVersion", "kind", "metadata", "spec", "status"), "")
    api = obj.get("apiVersion", kinds.API_VERSION)
    if api != kinds.API_VERSION:
        raise FieldError("apiVersion", f"invalid apiVersion {api!r} (want {kinds.API_VERSION})")
    try:
        kind = kinds.lookup(str(obj.get("kind", "")))
    except ValueError:
        raise FieldError("kind", f"unknown kind {obj.get('kind')!r}") from None
    if obj.get("kind") != kind.name:
        raise FieldError("kind", f"invalid kind {obj.get('kind')!r} (want {kind.name!r})")
    out: Obj = copy.deepcopy(obj)
    out["apiVersion"] = kinds.API_VERSION
    out["metadata"] = _metadata(out.get("metadata"), kind)
    spec = fields.mapping(out.get("spec"), "spec")
    out["spec"] = SPEC_CHECKERS[kind.name](spec, "spec", out["metadata"]["name"])
    return out


def _metadata(value: Any, kind: kinds.Kind) -> Obj:
    meta = fields.mapping(value, "metadata")
    fields.known_keys(meta, _META_FIELDS, "metadata")
    fields.dns_subdomain(meta.get("name"), "metadata.name")
    if kind.namespaced:
        meta["namespace"] = fields.dns_label(
            meta.get("namespace") or "default", "metadata.namespace"
        )
    elif meta.get("namespace"):
        raise FieldError(
            "metadata.namespace",
            f"{kind.name} is not namespaced, got namespace {meta['namespace']!r}",
        )
    else:
        meta.pop("namespace", None)
    if meta.get("labels") is not None:
        fields.labels(meta["labels"], "metadata.labels")
    if meta.get("annotations") is not None:
        for k, v in fields.mapping(meta["annotations"], "metadata.annotations").items():
            if not isinstance(v, str):
                raise FieldError(f"metadata.annotations[{k}]", f"must be a string, got {v!r}")
    return meta
