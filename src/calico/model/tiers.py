"""Tiers: the ``Tier`` spec, the built-in tiers, and which tier a policy's name must carry.

Facts from Calico's Tier reference, its tiered-policy guide and its v3 API (checked, see
``docs/design/tiers.md``): a tier has ``order`` (optional, lower first; absent = after every
ordered tier; ties by name) and ``defaultAction`` (``Deny``, the default, or ``Pass``). Three tiers
are built in, created by calico-node's start-up with fixed values that cannot be changed:
``kube-admin`` (order 1,000, Pass: Kubernetes AdminNetworkPolicies), ``default`` (order
1,000,000, Deny: every policy without ``spec.tier``, Kubernetes NetworkPolicies) and
``kube-baseline`` (order 10,000,000, Pass: the BaselineAdminNetworkPolicy). A policy in a tier
other than ``default`` is named ``<tier>.<name>``; in ``default`` the prefix is optional (and a
dotted name must then start with ``default.``), Calico's ``Incorrectly formatted policy name``
rule. Names Kubernetes conversions write (``knp.default.``, ``kanp.kube-admin.``,
``kbanp.kube-baseline.``, OpenStack's ``ossg.``) are exempt, as in Calico.
"""

from __future__ import annotations

import math
from typing import Any

from calico.model import fields, values
from calico.model.fields import FieldError, Obj

DEFAULT = "default"
KUBE_ADMIN = "kube-admin"
KUBE_BASELINE = "kube-baseline"
DENY, PASS = "Deny", "Pass"
ACTIONS = (DENY, PASS)

# name -> (order, defaultAction), fixed by Calico (its Tier CRD's validation rules).
BUILT_IN: dict[str, tuple[float, str]] = {
    KUBE_ADMIN: (1_000.0, PASS),
    DEFAULT: (1_000_000.0, DENY),
    KUBE_BASELINE: (10_000_000.0, PASS),
}
# Prefixes of policy names written by conversions; such names skip the tier-prefix rule.
FORMATTED_PREFIXES = ("knp.default.", "kanp.kube-admin.", "kbanp.kube-baseline.", "ossg.")

_TIER_FIELDS = ("order", "defaultAction")


def tier(spec: Obj, path: str, name: str) -> values.Tier:
    """A Tier spec: ``order`` a finite number >= 0 (optional), ``defaultAction`` Deny | Pass."""
    tier_name(name, "metadata.name")
    fields.known_keys(spec, _TIER_FIELDS, path)
    order = spec.get("order")
    if order is not None:
        order = fields.number(order, f"{path}.order")
        if not math.isfinite(order) or order < 0:
            raise FieldError(f"{path}.order", f"must be a number >= 0, got {order!r}")
    action = spec.get("defaultAction")
    action = DENY if action is None else fields.one_of(action, f"{path}.defaultAction", ACTIONS)
    fixed = BUILT_IN.get(name)
    if fixed is not None:
        want_order, want_action = fixed
        if order is None or float(order) != want_order:
            raise FieldError(
                f"{path}.order", f"{name} tier order must be {want_order:.0f}, got {order!r}"
            )
        if action != want_action:
            raise FieldError(
                f"{path}.defaultAction",
                f"The '{name}' tier must have default action '{want_action}', got {action!r}",
            )
    return values.Tier(order=order, default_action=action)


def tier_name(value: Any, path: str) -> str:
    """A tier name (also ``spec.tier``): a DNS-1123 label, so ``<tier>.<name>`` splits once."""
    if not isinstance(value, str) or not fields.dns_label_ok(value):
        raise FieldError(path, f"invalid tier name {value!r} (a DNS-1123 label)")
    return value


def check_policy_name(name: str, tier_: str) -> None:
    """Calico's rule for a tiered policy's name; FieldError on ``metadata.name``."""
    if name.startswith(FORMATTED_PREFIXES):
        return
    if "." not in name and tier_ == DEFAULT:
        return
    if name.startswith(tier_ + "."):
        return
    want = f"'{tier_}.<name>'" + (" or a name without '.'" if tier_ == DEFAULT else "")
    raise FieldError(
        "metadata.name",
        f"Incorrectly formatted policy name {name} (a policy in tier {tier_!r} is named {want})",
    )


def sort_key(name: str, order: float | None) -> tuple[bool, float, str]:
    """Tiers in evaluation order: by order (absent last), then by name."""
    return (order is None, order or 0.0, name)
