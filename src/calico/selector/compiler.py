"""Compile a normalised selector AST into a fast ``labels -> bool`` function.

The main path generates the source of one Python lambda, e.g. for
``role == "db" && env in {"dev", "prod"}``::

    lambda labels: (labels.get('role') == 'db' and labels.get('env') in {'dev', 'prod'})

and compiles it once. User text never reaches the compiler as code: label keys and values appear
only as ``repr()`` of ``str`` objects, which is always a plain string literal, and the code is
evaluated with empty builtins. Constant set displays in an ``in`` test compile to a frozenset
constant, so membership is one hash lookup. Semantics per operator (Calico's):

* ``k == v`` / ``k in S`` / ``starts with`` / ``ends with`` / ``contains`` are false when ``k`` is
  absent; ``k != v`` / ``k not in S`` are true when it is absent (``labels.get`` returns None, which
  equals no string);
* ``global()`` is true when the labels have no ``projectcalico.org/namespace`` key.

``closure`` builds the same function as a tree of nested closures without code generation; it is
the fallback when ``compile`` refuses a source (too deeply nested for CPython's parser) and a
second implementation for the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from calico.selector import nodes

Labels = Mapping[str, str]
Matcher = Callable[[Labels], bool]

_ARG = "labels"


def compile_matcher(node: nodes.Node) -> Matcher:
    """A function evaluating ``node``: generated code when possible, else ``closure(node)``."""
    try:
        code = compile(f"lambda {_ARG}: {source(node)}", "<selector>", "eval")
        matcher: Matcher = eval(code, {"__builtins__": {}})
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return closure(node)
    return matcher


def _lit(value: str) -> str:
    if type(value) is not str:  # pragma: no cover - the AST only ever holds str
        raise TypeError(f"selector constant must be str, not {type(value).__name__}")
    return repr(value)


def _set_lit(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(_lit(v) for v in values) + "}" if values else "()"


def _get(key: str) -> str:
    return f"{_ARG}.get({_lit(key)})"


def _has(key: str) -> str:
    return f"({_lit(key)} in {_ARG})"


def source(node: nodes.Node) -> str:
    """The Python expression (over the variable ``labels``) that evaluates ``node``."""
    match node:
        case nodes.Not(operand):
            return f"(not {source(operand)})"
        case nodes.And(operands):
            return "(" + " and ".join(source(op) for op in operands) + ")"
        case nodes.Or(operands):
            return "(" + " or ".join(source(op) for op in operands) + ")"
        case _:
            return _term_source(node)


def _term_source(node: nodes.Term) -> str:
    match node:
        case nodes.All():
            return "True"
        case nodes.Global():
            return f"({_lit(nodes.NAMESPACE_LABEL)} not in {_ARG})"
        case nodes.Has(key):
            return _has(key)
        case nodes.Eq(key, value):
            return f"({_get(key)} == {_lit(value)})"
        case nodes.Ne(key, value):
            return f"({_get(key)} != {_lit(value)})"
        case nodes.In(key, values):
            return f"({_get(key)} in {_set_lit(values)})"
        case nodes.NotIn(key, values):
            return f"({_get(key)} not in {_set_lit(values)})"
        case nodes.StartsWith(key, value):
            return f"{_ARG}.get({_lit(key)}, '').startswith({_lit(value)})" if value else _has(key)
        case nodes.EndsWith(key, value):
            return f"{_ARG}.get({_lit(key)}, '').endswith({_lit(value)})" if value else _has(key)
        case nodes.Contains(key, value):
            return f"({_lit(value)} in {_ARG}.get({_lit(key)}, ''))" if value else _has(key)


def _always(_labels: Labels) -> bool:
    return True


def closure(node: nodes.Node) -> Matcher:
    """A function evaluating ``node`` built from nested closures (no code generation)."""
    match node:
        case nodes.Not(operand):
            inner = closure(operand)
            return lambda labels: not inner(labels)
        case nodes.And(operands):
            conjuncts = tuple(closure(op) for op in operands)
            return lambda labels: all(f(labels) for f in conjuncts)
        case nodes.Or(operands):
            disjuncts = tuple(closure(op) for op in operands)
            return lambda labels: any(f(labels) for f in disjuncts)
        case _:
            return _term_closure(node)


def _term_closure(node: nodes.Term) -> Matcher:
    match node:
        case nodes.All():
            return _always
        case nodes.Global():
            return lambda labels: nodes.NAMESPACE_LABEL not in labels
        case nodes.Has(key):
            return lambda labels: key in labels
        case nodes.Eq(key, value):
            return lambda labels: labels.get(key) == value
        case nodes.Ne(key, value):
            return lambda labels: labels.get(key) != value
        case nodes.In(key, values):
            members = frozenset(values)
            return lambda labels: labels.get(key) in members
        case nodes.NotIn(key, values):
            excluded = frozenset(values)
            return lambda labels: labels.get(key) not in excluded
        case nodes.StartsWith(key, value):
            return lambda labels: key in labels and labels[key].startswith(value)
        case nodes.EndsWith(key, value):
            return lambda labels: key in labels and labels[key].endswith(value)
        case nodes.Contains(key, value):
            return lambda labels: key in labels and value in labels[key]
