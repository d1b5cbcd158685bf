"""The selector AST: frozen node classes, normalising constructors and the canonical renderer.

Every AST that leaves this module is *normalised* (``conjunction``, ``disjunction``, ``negation``):

* ``&&`` and ``||`` are flattened (``(a && b) && c`` is one ``And`` of three), duplicate operands
  are dropped (first occurrence kept), ``all()`` operands vanish from ``&&``;
* negation is pushed into the leaf operators that have an exact complement:
  ``!(k == v)`` is ``k != v``, ``!(k in S)`` is ``k not in S`` (and back), ``!!x`` is ``x``;
* set members are sorted and de-duplicated.

``render`` prints a normalised AST in the canonical form: double quotes (single quotes when
the value holds a ``"``), one space around binary operators, parentheses only where precedence
needs them (``!`` > ``&&`` > ``||``) plus around a negated comparison for readability. Rendering
then re-parsing gives back the same AST, so the canonical string is a fixed point.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: The label Calico puts on every namespaced resource; ``global()`` matches when it is absent.
NAMESPACE_LABEL = "projectcalico.org/namespace"


@dataclass(frozen=True, slots=True)
class All:
    """``all()``: matches everything."""


@dataclass(frozen=True, slots=True)
class Global:
    """``global()``: matches labels without a ``projectcalico.org/namespace`` key."""


@dataclass(frozen=True, slots=True)
class Has:
    """``has(key)``."""

    key: str


@dataclass(frozen=True, slots=True)
class Eq:
    """``key == 'value'`` (false when the key is absent)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Ne:
    """``key != 'value'`` (true when the key is absent)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class In:
    """``key in {...}``; ``values`` is sorted and free of duplicates."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotIn:
    """``key not in {...}`` (true when the key is absent)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StartsWith:
    """``key starts with 'prefix'`` (false when the key is absent)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class EndsWith:
    """``key ends with 'suffix'`` (false when the key is absent)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Contains:
    """``key contains 'text'`` (false when the key is absent)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Not:
    """``!operand``; never wraps Not, Eq, Ne, In or NotIn once normalised."""

    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    """``a && b && ...``: two or more operands, none of them And or All."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """``a || b || ...``: two or more operands, none of them Or."""

    operands: tuple[Node, ...]


Comparison = Eq | Ne | In | NotIn | StartsWith | EndsWith | Contains
Term = All | Global | Has | Comparison  # a leaf: no operands
Node = Term | Not | And | Or

ALL_NODE = All()


def value_set(values: Iterable[str]) -> tuple[str, ...]:
    """The normal form of a set literal: sorted, without duplicates."""
    return tuple(sorted(set(values)))


def negation(node: Node) -> Node:
    """``!node``, normalised."""
    match node:
        case Not(operand):
            return operand
        case Eq(key, value):
            return Ne(key, value)
        case Ne(key, value):
            return Eq(key, value)
        case In(key, values):
            return NotIn(key, values)
        case NotIn(key, values):
            return In(key, values)
    return Not(node)


def _dedupe(nodes: Iterable[Node]) -> tuple[Node, ...]:
    return tuple(dict.fromkeys(nodes))


def conjunction(nodes: Iterable[Node]) -> Node:
    """``n1 && n2 && ...``, normalised; the empty conjunction is ``all()``."""
    flat: list[Node] = []
    for node in nodes:
        if isinstance(node, And):
            flat.extend(node.operands)
        elif not isinstance(node, All):
            flat.append(node)
    operands = _dedupe(flat)
    if not operands:
        return ALL_NODE
    if len(operands) == 1:
        return operands[0]
    return And(operands)


def disjunction(nodes: Iterable[Node]) -> Node:
    """``n1 || n2 || ...``, normalised (at least one operand).

    An ``all()`` operand is kept rather than absorbing the rest: ``global() || all()`` must still
    report ``uses_global()``, which changes what a namespaceSelector means.
    """
    flat: list[Node] = []
    for node in nodes:
        if isinstance(node, Or):
            flat.extend(node.operands)
        else:
            flat.append(node)
    operands = _dedupe(flat)
    if not operands:
        raise ValueError("empty disjunction")
    if len(operands) == 1:
        return operands[0]
    return Or(operands)


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        match current:
            case Not(operand):
                stack.append(operand)
            case And(operands) | Or(operands):
                stack.extend(reversed(operands))


def quote(value: str) -> str:
    """A selector string literal for ``value`` (the grammar has no escapes)."""
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ValueError(f"value {value!r} holds both quote characters and cannot be written")


_PREC_OR, _PREC_AND, _PREC_UNARY = 1, 2, 3


def _precedence(node: Node) -> int:
    if isinstance(node, Or):
        return _PREC_OR
    if isinstance(node, And):
        return _PREC_AND
    return _PREC_UNARY


def _render_set(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(quote(v) for v in values) + "}"


def render(node: Node) -> str:
    """The canonical text of a normalised AST."""
    match node:
        case Not(operand):
            if isinstance(operand, All | Global | Has):
                return "!" + render(operand)
            return f"!({render(operand)})"
        case And(operands):
            return " && ".join(_wrap(op, _PREC_AND) for op in operands)
        case Or(operands):
            return " || ".join(_wrap(op, _PREC_OR) for op in operands)
        case _:
            return _render_term(node)


# the operator word of each key-operator-value comparison, as the grammar spells it
_OPERATORS: dict[type, str] = {
    Eq: "==",
    Ne: "!=",
    StartsWith: "starts with",
    EndsWith: "ends with",
    Contains: "contains",
}


def _render_term(node: Term) -> str:
    match node:
        case All():
            return "all()"
        case Global():
            return "global()"
        case Has(key):
            return f"has({key})"
        case In(key, values):
            return f"{key} in {_render_set(values)}"
        case NotIn(key, values):
            return f"{key} not in {_render_set(values)}"
        case (
            Eq(key, value)
            | Ne(key, value)
            | StartsWith(key, value)
            | EndsWith(key, value)
            | Contains(key, value)
        ):
            return f"{key} {_OPERATORS[type(node)]} {quote(value)}"


def _wrap(node: Node, parent_precedence: int) -> str:
    text = render(node)
    if _precedence(node) <= parent_precedence:
        return f"({text})"
    return text
