"""Label restrictions of a selector, for indexing (which labels a match requires, and their values).

``restrictions(node)`` returns ``{key: allowed}``: every labels-dict that ``node`` matches has
``key``, and when ``allowed`` is a frozenset its value is in it (``None``: any value). It is
conservative: a label is listed only when the requirement is certain, so an index may use it to
skip endpoints, never to include one. Derivation:

* ``k == v`` -> ``{k: {v}}``; ``k in S`` -> ``{k: S}``; ``has(k)``, ``k starts with/ends with/
  contains p`` -> ``{k: None}``;
* ``a && b`` -> union of the keys; for a key in both, the intersection of the value sets
  (``None`` is "anything", the neutral element). An empty set means the selector can never match;
* ``a || b`` -> only keys required by every operand; values are the union (``None`` if any is);
* ``!x``, ``k != v``, ``k not in S``, ``all()``, ``global()`` -> nothing (they match labels without
  any particular key).
"""

from __future__ import annotations

from calico.selector import nodes

Restrictions = dict[str, frozenset[str] | None]


def restrictions(node: nodes.Node) -> Restrictions:
    """The label restrictions of a normalised AST (see the module docstring)."""
    match node:
        case nodes.Eq(key, value):
            return {key: frozenset((value,))}
        case nodes.In(key, values):
            return {key: frozenset(values)}
        case (
            nodes.Has(key)
            | nodes.StartsWith(key, _)
            | nodes.EndsWith(key, _)
            | nodes.Contains(key, _)
        ):
            return {key: None}
        case nodes.And(operands):
            result: Restrictions = {}
            for operand in operands:
                for key, allowed in restrictions(operand).items():
                    result[key] = _intersect(result[key], allowed) if key in result else allowed
            return result
        case nodes.Or(operands):
            first, *rest = (restrictions(operand) for operand in operands)
            for other in rest:
                first = {
                    key: _union(allowed, other[key])
                    for key, allowed in first.items()
                    if key in other
                }
            return first
    return {}


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None or b is None:
        return None
    return a | b
