"""Selector composition for policies and rules (namespaces, namespaceSelector, serviceAccounts).

Calico's v3 -> backend rule conversion, done on selector ASTs:

* a NetworkPolicy's ``selector`` is limited to its namespace:
  ``projectcalico.org/namespace == '<ns>' && (<selector>)``;
* in a rule, ``namespaceSelector`` is rewritten onto the ``pcns.`` labels that namespace profiles
  apply to their endpoints (``x == 'y'`` -> ``pcns.x == 'y'``) and limited to namespaced things
  (``all()`` -> ``has(projectcalico.org/namespace)``); without one, a rule of a namespaced policy
  that has a selector (or notSelector) is limited to the policy's namespace;
* ``serviceAccounts.names`` -> ``projectcalico.org/serviceaccount in {...}``;
  ``serviceAccounts.selector`` -> the same rewrite onto ``pcsa.`` labels;
* a policy's ``serviceAccountSelector`` narrows the endpoints it applies to by the same
  ``pcsa.`` rewrite (the labels service-account profiles apply to their endpoints).
"""

from __future__ import annotations

from dataclasses import replace

from calico import selector
from calico.model import values
from calico.selector import nodes

NAMESPACE_LABEL = "projectcalico.org/namespace"
SERVICEACCOUNT_LABEL = "projectcalico.org/serviceaccount"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAMESPACE_PREFIX = "pcns."
SERVICEACCOUNT_PREFIX = "pcsa."


def prefix_labels(node: nodes.Node, prefix: str) -> nodes.Node:
    """``node`` with every label key prefixed (``global()``/``all()`` left as they are)."""
    match node:
        case nodes.Not(operand):
            return nodes.negation(prefix_labels(operand, prefix))
        case nodes.And(operands):
            return nodes.conjunction(prefix_labels(o, prefix) for o in operands)
        case nodes.Or(operands):
            return nodes.disjunction(prefix_labels(o, prefix) for o in operands)
        case nodes.All() | nodes.Global():
            return node
    return replace(node, key=prefix + node.key)


def in_namespace(namespace: str) -> nodes.Node:
    return nodes.Eq(NAMESPACE_LABEL, namespace)


def namespace_selector(text: str) -> nodes.Node:
    """The backend form of a rule's (or GNP's) ``namespaceSelector``."""
    parsed = selector.parse(text)
    if parsed.uses_global():
        return prefix_labels(parsed.root, NAMESPACE_PREFIX)
    return nodes.conjunction(
        [nodes.Has(NAMESPACE_LABEL), prefix_labels(parsed.root, NAMESPACE_PREFIX)]
    )


def policy_selector(
    text: str | None,
    *,
    namespace: str | None,
    ns_selector: str | None = None,
    sa_selector: str | None = None,
) -> selector.Selector:
    """Which endpoints a policy applies to."""
    parts: list[nodes.Node] = [selector.parse(text or "").root]
    if sa_selector:
        parts.append(prefix_labels(selector.parse(sa_selector).root, SERVICEACCOUNT_PREFIX))
    if namespace is not None:
        parts.insert(0, in_namespace(namespace))
    if ns_selector:
        parts.insert(0, namespace_selector(ns_selector))
    return selector.from_node(nodes.conjunction(parts))


def service_accounts(match: values.ServiceAccountMatch | None) -> nodes.Node | None:
    if match is None:
        return None
    parts: list[nodes.Node] = []
    if match.names:
        parts.append(nodes.In(SERVICEACCOUNT_LABEL, nodes.value_set(match.names)))
    if match.selector:
        parts.append(prefix_labels(selector.parse(match.selector).root, SERVICEACCOUNT_PREFIX))
    return nodes.conjunction(parts) if parts else None


def rule_selectors(
    entity: values.EntityRule, *, namespace: str | None
) -> tuple[selector.Selector | None, selector.Selector | None]:
    """(positive selector, notSelector) of a rule's source/destination; None: no restriction."""
    sa_node = service_accounts(entity.service_accounts)
    parts: list[nodes.Node] = []
    if entity.namespace_selector:
        parts.append(namespace_selector(entity.namespace_selector))
    elif namespace is not None and (entity.selector or entity.not_selector or sa_node is not None):
        parts.append(in_namespace(namespace))
    if entity.selector:
        parts.append(selector.parse(entity.selector).root)
    if sa_node is not None:
        parts.append(sa_node)
    positive = selector.from_node(nodes.conjunction(parts)) if parts else None
    negative = selector.parse(entity.not_selector) if entity.not_selector else None
    return positive, negative
