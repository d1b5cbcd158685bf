"""Validation and defaults for NetworkPolicy, GlobalNetworkPolicy and Profile specs.

Defaults as Calico sets them: ``types`` is inferred when absent (Ingress if the policy has ingress
rules or has no egress rules; Egress if it has egress rules). ``order`` is optional (absent = after
every ordered policy). GlobalNetworkPolicy adds ``doNotTrack``, ``preDNAT`` and
``applyOnForward`` with Calico's constraints between them.
"""

from __future__ import annotations

from typing import Any

from calico.model import fields, rules
from calico.model.fields import FieldError, Obj

POLICY_TYPES = ("Ingress", "Egress")

_NP_FIELDS = ("order", "selector", "types", "ingress", "egress", "serviceAccountSelector")
_GNP_FIELDS = (
    *_NP_FIELDS,
    "doNotTrack",
    "preDNAT",
    "applyOnForward",
    "namespaceSelector",
)
_PROFILE_FIELDS = ("ingress", "egress", "labelsToApply")


def infer_types(spec: Obj) -> list[str]:
    """Calico's rule: Ingress if ingress rules or no egress rules; Egress if egress rules."""
    types = []
    if spec.get("ingress") or not spec.get("egress"):
        types.append("Ingress")
    if spec.get("egress"):
        types.append("Egress")
    return types


def _common(spec: Obj, path: str) -> Obj:
    out: Obj = dict(spec)
    if spec.get("order") is not None:
        out["order"] = fields.number(spec["order"], f"{path}.order")
    for key in ("selector", "serviceAccountSelector", "namespaceSelector"):
        if spec.get(key) is not None:
            fields.selector(spec[key], f"{path}.{key}")
    for key in ("ingress", "egress"):
        if key in spec:
            out[key] = rules.rules(spec[key], f"{path}.{key}")
    if spec.get("types"):
        types = fields.seq(spec["types"], f"{path}.types")
        for i, t in enumerate(types):
            fields.one_of(t, f"{path}.types[{i}]", POLICY_TYPES)
        if len(set(types)) != len(types):
            raise FieldError(f"{path}.types", f"duplicate policy type in {types!r}")
        # rules for a direction not in ``types`` are allowed and ignored, as in Calico and k8s
    else:
        out["types"] = infer_types(out)
    return out


def network_policy(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _NP_FIELDS, path)
    return _common(spec, path)


def global_network_policy(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _GNP_FIELDS, path)
    out = _common(spec, path)
    for key in ("doNotTrack", "preDNAT", "applyOnForward"):
        if key in spec:
            fields.boolean(spec[key], f"{path}.{key}")
    if spec.get("doNotTrack") and spec.get("preDNAT"):
        raise FieldError(f"{path}.preDNAT", "preDNAT and doNotTrack cannot both be true")
    for key in ("doNotTrack", "preDNAT"):
        if spec.get(key) and not spec.get("applyOnForward"):
            raise FieldError(f"{path}.applyOnForward", f"must be true when {key} is true")
    if spec.get("preDNAT") and out.get("egress"):
        raise FieldError(f"{path}.egress", "a preDNAT policy cannot have egress rules")
    if spec.get("preDNAT") and "Egress" in out.get("types", []):
        raise FieldError(f"{path}.types", "a preDNAT policy cannot have type 'Egress'")
    return out


def profile(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, _PROFILE_FIELDS, path)
    out: Obj = dict(spec)
    for key in ("ingress", "egress"):
        if key in spec:
            out[key] = rules.rules(spec[key], f"{path}.{key}")
    if "labelsToApply" in spec:
        out["labelsToApply"] = fields.labels(spec["labelsToApply"], f"{path}.labelsToApply")
    return out


def network_set(spec: Obj, path: str) -> Obj:
    """GlobalNetworkSet and NetworkSet: ``nets``, a list of CIDRs (normalized)."""
    fields.known_keys(spec, ("nets",), path)
    out: Obj = dict(spec)
    if "nets" in spec:
        out["nets"] = fields.string_list(spec["nets"], f"{path}.nets", _cidr)
    return out


def _cidr(value: Any, path: str) -> str:
    return fields.cidr(value, path)
