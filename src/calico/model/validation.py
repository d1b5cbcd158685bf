"""Validation and defaulting of Calico v3 resources: the one parser of resource fields.

``parse(obj)`` checks ``apiVersion``, ``kind``, ``metadata`` and the kind's ``spec`` once and
returns a typed, frozen :class:`calico.model.values.Resource`. For the kinds the agent consumes
(policies, profiles, endpoints, network sets) the spec is a typed value (``values.Policy``, ...);
the other kinds keep a normalized dict. ``validate(obj)`` is ``parse(obj).to_json()``: the
normalized, defaulted copy the datastore stores (IPPool blockSize/encapsulation/NAT, inferred policy
``types``, the ``default`` namespace, ...). Neither mutates its argument. Any problem raises
:class:`ValidationError`, whose message names the resource, the field and the value::

    GlobalNetworkPolicy(allow-dns): spec.ingress[0].destination.ports[1]: invalid port '70000'

The writers (calicoctl, the controllers, the datastore Client) call ``validate``; the agent's
calculation graph calls ``parse`` on what it reads, so a resource the CLI accepts is exactly one
the agent can program. The checks are plain Python over dicts (no msgspec): the Client calls this
on every write and short-lived processes should not pay for heavier imports. Per-kind rules live in
:mod:`calico.model.policy`, :mod:`~calico.model.network`, :mod:`~calico.model.endpoints` and
:mod:`~calico.model.felixconfig`; field checkers in :mod:`calico.model.fields`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from calico.model import endpoints, felixconfig, fields, kinds, network, policy, tiers, values
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

SpecChecker = Callable[[Obj, str, str], values.Spec]  # (spec, "spec", name) -> typed/normalized


def _named(fn: Callable[[Obj, str], values.Spec]) -> SpecChecker:
    return lambda spec, path, _name: fn(spec, path)


def _dict(fn: Callable[[Obj, str, str], Obj]) -> SpecChecker:
    """A checker that normalizes a dict spec in place: give it its own copy."""
    return lambda spec, path, name: fn(values.copy_json(spec), path, name)


def _dict_named(fn: Callable[[Obj, str], Obj]) -> SpecChecker:
    return _dict(lambda spec, path, _name: fn(spec, path))


SPEC_CHECKERS: dict[str, SpecChecker] = {
    "IPPool": _dict_named(network.ippool),
    "Node": _dict_named(network.node),
    "WorkloadEndpoint": _named(endpoints.workload_endpoint),
    "HostEndpoint": _named(endpoints.host_endpoint),
    "Profile": _named(policy.profile),
    "NetworkPolicy": policy.network_policy,
    "GlobalNetworkPolicy": policy.global_network_policy,
    "Tier": tiers.tier,
    "StagedNetworkPolicy": policy.staged_network_policy,
    "StagedGlobalNetworkPolicy": policy.staged_global_network_policy,
    "StagedKubernetesNetworkPolicy": _dict_named(policy.staged_kubernetes_network_policy),
    "GlobalNetworkSet": _named(policy.network_set),
    "NetworkSet": _named(policy.network_set),
    "BGPPeer": _dict_named(network.bgp_peer),
    "BGPConfiguration": _dict(network.bgp_configuration),
    "FelixConfiguration": _dict_named(felixconfig.felix_configuration),
    "ClusterInformation": _dict(network.cluster_information),
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
    return parse(obj).to_json()


def parse(obj: Any) -> values.Resource[Any]:
    """The typed resource; ValidationError naming resource, field and value."""
    if not isinstance(obj, dict):
        raise ValidationError(f"resource: must be a mapping, got {obj!r}")
    try:
        return _parse(obj)
    except FieldError as exc:
        what = describe(obj)
        raise ValidationError(f"{what}: {exc}", resource=what, field=exc.path) from None


TypedSpec = TypeVar(
    "TypedSpec",
    values.Policy,
    values.Profile,
    values.NetworkSet,
    values.WorkloadEndpoint,
    values.HostEndpoint,
    values.Tier,
)


def parse_as(obj: Any, spec_type: type[TypedSpec]) -> values.Resource[TypedSpec]:
    """:func:`parse`, requiring a kind whose spec is ``spec_type`` (ValidationError on ``kind``)."""
    res = parse(obj)
    if not isinstance(res.spec, spec_type):
        what = describe(obj)
        raise ValidationError(
            f"{what}: kind: {res.kind} is not a {spec_type.__name__} kind",
            resource=what,
            field="kind",
        )
    return res


def _parse(obj: Obj) -> values.Resource[Any]:
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
    meta = _metadata(obj.get("metadata"), kind)
    spec = fields.mapping(obj.get("spec"), "spec")
    name = meta["name"]
    return values.Resource(
        kind=kind.name,
        name=name,
        namespace=meta.get("namespace"),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        spec=SPEC_CHECKERS[kind.name](spec, "spec", name),
        metadata=meta,
        extra={"status": obj["status"]} if "status" in obj else {},
    )


def _metadata(value: Any, kind: kinds.Kind) -> Obj:
    """The checked metadata: a shallow copy (nested values are the input's; ``to_json`` copies)."""
    meta = dict(fields.mapping(value, "metadata"))
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
