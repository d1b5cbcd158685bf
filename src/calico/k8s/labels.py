"""Kubernetes label keys, values and LabelSelectors, and their Calico selector form.

``label_selector_to_calico`` turns a ``metav1.LabelSelector`` (``matchLabels`` and
``matchExpressions`` with In / NotIn / Exists / DoesNotExist) into a Calico selector string in the
same shape libcalico-go's ``k8sSelectorToCalico`` writes: terms joined by ``&&``, ``k == 'v'`` for
matchLabels (sorted by key), ``k in { 'a', 'b' }``, ``k not in { ... }``, ``has(k)``, ``! has(k)``.
Keys and values are checked against Kubernetes' syntax first (the model's label checks, the same
ones Calico resources get), so nothing that could break out of a quoted Calico string ever reaches
the selector.
"""

from __future__ import annotations

from typing import Any

from calico.model import fields

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class LabelError(ValueError):
    """A label key, value or selector is not valid Kubernetes syntax (message names the field)."""


def check_key(key: object, where: str) -> str:
    """A valid label key (``[prefix/]name``), or LabelError naming ``where``."""
    if not isinstance(key, str) or not key:
        raise LabelError(f"{where}: label key {key!r} must be a non-empty string")
    problem = fields.label_key_problem(key)  # the model's check: what Calico stores is the same
    if problem == "prefix":
        raise LabelError(f"{where}: label key {key!r}: prefix must be a DNS subdomain")
    if problem == "name":
        raise LabelError(
            f"{where}: label key {key!r}: name must be 1-63 characters of [A-Za-z0-9-_.], "
            "starting and ending with an alphanumeric"
        )
    return key


def check_value(value: object, where: str) -> str:
    """A valid label value (empty, or up to 63 characters of [A-Za-z0-9-_.]), or LabelError."""
    if not isinstance(value, str):
        raise LabelError(f"{where}: label value {value!r} must be a string")
    if not fields.label_value_ok(value):
        raise LabelError(
            f"{where}: label value {value!r} must be at most 63 characters of [A-Za-z0-9-_.], "
            "starting and ending with an alphanumeric"
        )
    return value


def check_labels(labels: object, where: str) -> dict[str, str]:
    """A validated copy of a ``metadata.labels`` map (None -> {})."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise LabelError(f"{where}: must be a map of strings, got {labels!r}")
    return {check_key(k, where): check_value(v, f"{where}[{k}]") for k, v in labels.items()}


def _quote_list(values: list[str]) -> str:
    return "{ " + ", ".join(f"'{v}'" for v in values) + " }"


def _expression(expr: object, where: str) -> str:
    if not isinstance(expr, dict):
        raise LabelError(f"{where}: must be an object, got {expr!r}")
    unknown = set(expr) - {"key", "operator", "values"}
    if unknown:
        raise LabelError(f"{where}: unsupported field(s) {sorted(unknown)}")
    key = check_key(expr.get("key"), f"{where}.key")
    op = expr.get("operator")
    values = expr.get("values") or []
    if not isinstance(values, list):
        raise LabelError(f"{where}.values: must be a list, got {values!r}")
    checked = [check_value(v, f"{where}.values[{i}]") for i, v in enumerate(values)]
    if op in ("In", "NotIn"):
        if not checked:
            raise LabelError(f"{where}.values: operator {op} needs at least one value")
        return f"{key} {'in' if op == 'In' else 'not in'} {_quote_list(checked)}"
    if op in ("Exists", "DoesNotExist"):
        if checked:
            raise LabelError(f"{where}.values: must be empty for operator {op}, got {values!r}")
        return f"has({key})" if op == "Exists" else f"! has({key})"
    raise LabelError(f"{where}.operator: unsupported operator {op!r} (want one of {OPERATORS})")


def selector_terms(selector: Any, where: str) -> list[str]:
    """The Calico terms of a LabelSelector (ANDed); [] for an empty selector (matches all)."""
    if not isinstance(selector, dict):
        raise LabelError(f"{where}: must be a LabelSelector object, got {selector!r}")
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise LabelError(f"{where}: unsupported field(s) {sorted(unknown)}")
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, dict):
        raise LabelError(f"{where}.matchLabels: must be a map, got {match_labels!r}")
    terms = [
        f"{check_key(k, f'{where}.matchLabels')} == "
        f"'{check_value(match_labels[k], f'{where}.matchLabels[{k}]')}'"
        for k in sorted(match_labels, key=str)
    ]
    exprs = selector.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise LabelError(f"{where}.matchExpressions: must be a list, got {exprs!r}")
    terms += [_expression(e, f"{where}.matchExpressions[{i}]") for i, e in enumerate(exprs)]
    return terms


def label_selector_to_calico(selector: Any, where: str, *, empty: str = "all()") -> str:
    """The Calico selector for a LabelSelector; ``empty`` when it has no terms."""
    terms = selector_terms(selector, where)
    return " && ".join(terms) if terms else empty
