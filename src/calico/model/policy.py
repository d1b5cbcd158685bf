"""NetworkPolicy, GlobalNetworkPolicy, Profile and (Global)NetworkSet specs -> typed values.

The staged kinds (``StagedNetworkPolicy``, ``StagedGlobalNetworkPolicy``: the same specs plus
``stagedAction``; ``StagedKubernetesNetworkPolicy``: a Kubernetes NetworkPolicy spec plus
``stagedAction``) are checked exactly as the kinds they stage, with Calico's extra rules: the
action is ``Set`` (the default, stored) or ``Delete``, and a ``Delete`` carries nothing but its
tier.

A policy belongs to ``spec.tier`` (absent: ``default``) and its name must carry the tier as Calico
requires (:func:`calico.model.tiers.check_policy_name`). Defaults as Calico sets them: ``types`` is
inferred when absent (Ingress if the policy has ingress rules or has no egress rules; Egress if it
has egress rules). ``order`` is optional (absent = after every ordered policy within its tier).
GlobalNetworkPolicy adds ``doNotTrack``, ``preDNAT`` and
``applyOnForward`` with Calico's constraints between them.
"""

from __future__ import annotations

from typing import Any

from calico.model import fields, rules, tiers, values
from calico.model.fields import FieldError, Obj

POLICY_TYPES = ("Ingress", "Egress")

_NP_FIELDS = ("tier", "order", "selector", "types", "ingress", "egress", "serviceAccountSelector")
_GNP_FIELDS = (
    *_NP_FIELDS,
    "doNotTrack",
    "preDNAT",
    "applyOnForward",
    "namespaceSelector",
)
_PROFILE_FIELDS = ("ingress", "egress", "labelsToApply")


STAGED_ACTIONS = ("Set", "Delete")
# Names Kubernetes NetworkPolicy conversion writes: a StagedKubernetesNetworkPolicy stages those.
K8S_POLICY_PREFIX = "knp.default."
_K8S_NP_FIELDS = ("podSelector", "policyTypes", "ingress", "egress")


def _types(spec: Obj, path: str, *, ingress: bool, egress: bool) -> tuple[str, ...]:
    """The given ``types``, or Calico's inference: Ingress if there are ingress rules or no egress
    rules; Egress if there are egress rules. Rules for a direction not in ``types`` are allowed
    and ignored, as in Calico and Kubernetes."""
    if not spec.get("types"):
        inferred = []
        if ingress or not egress:
            inferred.append("Ingress")
        if egress:
            inferred.append("Egress")
        return tuple(inferred)
    types = fields.seq(spec["types"], f"{path}.types")
    for i, t in enumerate(types):
        fields.one_of(t, f"{path}.types[{i}]", POLICY_TYPES)
    if len(set(types)) != len(types):
        raise FieldError(f"{path}.types", f"duplicate policy type in {types!r}")
    return tuple(types)


def _selector(spec: Obj, key: str, path: str) -> str:
    value = spec.get(key)
    return "" if value is None else fields.selector(value, f"{path}.{key}")


def _policy(spec: Obj, path: str, name: str, *, gnp: bool = False) -> values.Policy:
    tier = tiers.DEFAULT
    if spec.get("tier") is not None:
        tier = tiers.tier_name(spec["tier"], f"{path}.tier")
    tiers.check_policy_name(name, tier)
    order = spec.get("order")
    if order is not None:
        order = fields.number(order, f"{path}.order")
    selector = _selector(spec, "selector", path)
    sa_selector = _selector(spec, "serviceAccountSelector", path)
    ns_selector = _selector(spec, "namespaceSelector", path)
    ingress = rules.rules(spec.get("ingress"), f"{path}.ingress")
    egress = rules.rules(spec.get("egress"), f"{path}.egress")
    types = _types(spec, path, ingress=bool(ingress), egress=bool(egress))
    untracked, pre_dnat, forward = (
        _flags(spec, path, egress=egress, types=types) if gnp else (False, False, False)
    )
    return values.Policy(
        types=types,
        order=order,
        selector=selector,
        namespace_selector=ns_selector,
        service_account_selector=sa_selector,
        ingress=ingress,
        egress=egress,
        do_not_track=untracked,
        pre_dnat=pre_dnat,
        apply_on_forward=forward,
        tier=tier,
    )


def _flags(
    spec: Obj, path: str, *, egress: tuple[values.Rule, ...], types: tuple[str, ...]
) -> tuple[bool, bool, bool]:
    """GlobalNetworkPolicy's (doNotTrack, preDNAT, applyOnForward), with Calico's constraints."""
    untracked = _flag(spec, "doNotTrack", path)
    pre_dnat = _flag(spec, "preDNAT", path)
    forward = _flag(spec, "applyOnForward", path)
    if untracked and pre_dnat:
        raise FieldError(f"{path}.preDNAT", "preDNAT and doNotTrack cannot both be true")
    for key, flag in (("doNotTrack", untracked), ("preDNAT", pre_dnat)):
        if flag and not forward:
            raise FieldError(f"{path}.applyOnForward", f"must be true when {key} is true")
    if pre_dnat and egress:
        raise FieldError(f"{path}.egress", "a preDNAT policy cannot have egress rules")
    if pre_dnat and "Egress" in types:
        raise FieldError(f"{path}.types", "a preDNAT policy cannot have type 'Egress'")
    return untracked, pre_dnat, forward


def _flag(spec: Obj, key: str, path: str) -> bool:
    return fields.boolean(spec[key], f"{path}.{key}") if key in spec else False


def network_policy(spec: Obj, path: str, name: str) -> values.Policy:
    fields.known_keys(spec, _NP_FIELDS, path)
    return _policy(spec, path, name)


def global_network_policy(spec: Obj, path: str, name: str) -> values.Policy:
    fields.known_keys(spec, _GNP_FIELDS, path)
    return _policy(spec, path, name, gnp=True)


def profile(spec: Obj, path: str) -> values.Profile:
    fields.known_keys(spec, _PROFILE_FIELDS, path)
    ingress = rules.rules(spec.get("ingress"), f"{path}.ingress")
    egress = rules.rules(spec.get("egress"), f"{path}.egress")
    to_apply: dict[str, str] = {}
    if "labelsToApply" in spec:
        to_apply = fields.labels(spec["labelsToApply"], f"{path}.labelsToApply")
    return values.Profile(ingress, egress, tuple(sorted(to_apply.items())))


def network_set(spec: Obj, path: str) -> values.NetworkSet:
    """GlobalNetworkSet and NetworkSet: ``nets``, a list of CIDRs (normalized)."""
    fields.known_keys(spec, ("nets",), path)
    nets = fields.string_list(spec.get("nets"), f"{path}.nets", _cidr)
    return values.NetworkSet(tuple(nets))


def _cidr(value: Any, path: str) -> str:
    return fields.cidr(value, path)


# ---- staged kinds -----------------------------------------------------------------------------


def _staged_action(spec: Obj, path: str) -> str:
    action = spec.get("stagedAction")
    return (
        "Set" if action is None else fields.one_of(action, f"{path}.stagedAction", STAGED_ACTIONS)
    )


def _staged(
    spec: Obj, path: str, name: str, *, allowed: tuple[str, ...], gnp: bool
) -> values.Policy:
    fields.known_keys(spec, ("stagedAction", *allowed), path)
    action = _staged_action(spec, path)
    rest = {k: v for k, v in spec.items() if k not in ("stagedAction", "tier")}
    if action == "Delete":
        # Calico clears types on a staged delete, and every other field must be empty.
        rest.pop("types", None)
        set_fields = sorted(k for k, v in rest.items() if v not in (None, "", [], {}, False))
        if set_fields:
            raise FieldError(
                f"{path}.{set_fields[0]}",
                "Spec fields, except Tier, should all be zero-value if stagedAction is Delete",
            )
        rest = {}
    tier_spec = {"tier": spec["tier"]} if spec.get("tier") is not None else {}
    policy = _policy({**rest, **tier_spec}, path, name, gnp=gnp)
    return policy._replace(staged_action=action)


def staged_network_policy(spec: Obj, path: str, name: str) -> values.Policy:
    if name.startswith(K8S_POLICY_PREFIX):
        raise FieldError(
            "metadata.name",
            f"{name}: the prefix {K8S_POLICY_PREFIX!r} is reserved for converted Kubernetes "
            "NetworkPolicies (stage one with a StagedKubernetesNetworkPolicy)",
        )
    return _staged(spec, path, name, allowed=_NP_FIELDS, gnp=False)


def staged_global_network_policy(spec: Obj, path: str, name: str) -> values.Policy:
    return _staged(spec, path, name, allowed=_GNP_FIELDS, gnp=True)


def staged_kubernetes_network_policy(spec: Obj, path: str) -> Obj:
    """The model's part of the check: the fields and ``stagedAction``. The Kubernetes fields are
    checked by converting them as the controllers would (``calico.k8s.conversion``: calicoctl
    before writing, the agent on reading), which this layer cannot import."""
    fields.known_keys(spec, ("stagedAction", *_K8S_NP_FIELDS), path)
    out: Obj = {"stagedAction": _staged_action(spec, path)}
    for key in _K8S_NP_FIELDS:
        value = spec.get(key)
        if value is None:
            continue
        if key == "podSelector":
            value = fields.mapping(value, f"{path}.{key}")
        else:
            value = fields.seq(value, f"{path}.{key}")
        if out["stagedAction"] == "Delete" and value:
            raise FieldError(
                f"{path}.{key}",
                "Spec fields should all be zero-value if stagedAction is Delete",
            )
        out[key] = value
    return out
