"""Property tests: random ASTs rendered to random text, parsed, evaluated against a reference.

The test keeps its own AST (plain tuples), its own renderer (random quotes, whitespace and
redundant parentheses, precedence-minimal or fully parenthesised) and its own recursive
reference evaluator, written from Calico's documented semantics. Nothing here reuses
calico.selector's AST, normaliser or compiler, so an error shared by both sides is unlikely.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico import selector
from calico.selector import compiler, nodes

NS = "projectcalico.org/namespace"
KEYS = [
    "a",
    "b",
    "role",
    NS,
    "app.kubernetes.io/name",
    "pcns.kubernetes.io/metadata.name",
    "in",
    "not",
    "has",
    "all",
    "global",
    "contains",
    "starts",
    "-x_.9/",
]
VALUES = ["", "a", "ab", "b", "ba", "prod", "it's", 'say "hi"', "x y", "\u00e9", "a\nb", "{}"]

Ast = tuple[Any, ...]

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES) | st.text(max_size=4).filter(lambda v: not ('"' in v and "'" in v))
value_sets = st.lists(values, max_size=4)

leaves = st.one_of(
    st.tuples(st.just("eq"), keys, values),
    st.tuples(st.just("ne"), keys, values),
    st.tuples(st.just("in"), keys, value_sets),
    st.tuples(st.just("notin"), keys, value_sets),
    st.tuples(st.just("sw"), keys, values),
    st.tuples(st.just("ew"), keys, values),
    st.tuples(st.just("contains"), keys, values),
    st.tuples(st.just("has"), keys),
    st.just(("all",)),
    st.just(("global",)),
)
asts = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.just("and"), st.lists(inner, min_size=2, max_size=4)),
        st.tuples(st.just("or"), st.lists(inner, min_size=2, max_size=4)),
    ),
    max_leaves=12,
)
label_dicts = st.dictionaries(keys, values, max_size=6)


def reference(ast: Ast, labels: Mapping[str, str]) -> bool:
    """Calico's semantics, written as plainly as possible."""
    op = ast[0]
    if op == "all":
        return True
    if op == "global":
        return NS not in labels
    if op == "not":
        return not reference(ast[1], labels)
    if op == "and":
        return all(reference(x, labels) for x in ast[1])
    if op == "or":
        return any(reference(x, labels) for x in ast[1])
    return _reference_comparison(op, labels, ast[1], ast[2] if len(ast) > 2 else None)


def _reference_comparison(op: str, labels: Mapping[str, str], key: str, arg: Any) -> bool:
    """A key's comparison (``has``, ``eq``, ... ``contains``) against ``arg``."""
    present = key in labels
    value = labels.get(key, "")
    if op == "has":
        return present
    if op == "eq":
        return present and value == arg
    if op == "ne":
        return not present or value != arg
    if op == "in":
        return present and value in arg
    if op == "notin":
        return not present or value not in arg
    if op == "sw":
        return present and value.startswith(arg)
    if op == "ew":
        return present and value.endswith(arg)
    assert op == "contains"
    return present and arg in value


PRECEDENCE = {"or": 1, "and": 2}


class Renderer:
    """Random but valid spellings of an AST."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def ws(self) -> str:
        return self.rnd.choice(["", "", " ", "  ", "\t", "\n"])

    def sp(self) -> str:  # whitespace that must be non-empty
        return self.rnd.choice([" ", " ", "  ", "\t"])

    def quote(self, value: str) -> str:
        choices = [q for q in "'\"" if q not in value]
        q = self.rnd.choice(choices)
        return f"{q}{value}{q}"

    def render(self, ast: Ast, parent: int = 0) -> str:
        text, precedence = self._render(ast)
        if precedence <= parent or self.rnd.random() < 0.1:
            text = f"({self.ws()}{text}{self.ws()})"
        return text

    def _render(self, ast: Ast) -> tuple[str, int]:
        op, w, s = ast[0], self.ws, self.sp
        if op == "all":
            return f"all({w()})", 3
        if op == "global":
            return f"global({w()})", 3
        if op == "has":
            return f"has({w()}{ast[1]}{w()})", 3
        if op == "not":
            return f"!{w()}{self.render(ast[1], 2)}", 3
        if op in ("and", "or"):
            sym = "&&" if op == "and" else "||"
            parts = [self.render(x, PRECEDENCE[op]) for x in ast[1]]
            return f"{w()}{sym}{w()}".join(parts), PRECEDENCE[op]
        key = ast[1]
        if op in ("in", "notin"):
            members = f"{w()},{w()}".join(self.quote(v) for v in ast[2])
            word = "in" if op == "in" else f"not{s()}in"
            return f"{key}{s()}{word}{w()}{{{w()}{members}{w()}}}", 3
        word = {
            "eq": "==",
            "ne": "!=",
            "sw": f"starts{s()}with",
            "ew": f"ends{s()}with",
            "contains": "contains",
        }[op]
        gap = w() if op in ("eq", "ne") else s()
        return f"{key}{s()}{word}{gap}{self.quote(ast[2])}", 3


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(ast=asts, labels=st.lists(label_dicts, min_size=1, max_size=8), rnd=st.randoms())
def test_parse_evaluate_matches_reference(
    ast: Ast, labels: list[dict[str, str]], rnd: random.Random
) -> None:
    text = Renderer(rnd).render(ast)
    sel = selector.parse(text)
    fallback = compiler.closure(sel.root)
    for candidate in labels:
        expected = reference(ast, candidate)
        assert sel.evaluate(candidate) is expected, (text, str(sel), candidate)
        assert fallback(candidate) is expected


@SETTINGS
@given(ast=asts, rnd=st.randoms())
def test_round_trip_and_spelling_independence(ast: Ast, rnd: random.Random) -> None:
    renderer = Renderer(rnd)
    sel = selector.parse(renderer.render(ast))
    again = selector.parse(str(sel))
    assert again == sel
    assert again.root == sel.root
    assert str(again) == str(sel)
    # another random spelling of the same AST gives the same canonical selector
    assert selector.parse(renderer.render(ast)) == sel


@SETTINGS
@given(ast=asts, labels=st.lists(label_dicts, min_size=1, max_size=8), rnd=st.randoms())
def test_label_restrictions_are_sound(
    ast: Ast, labels: list[dict[str, str]], rnd: random.Random
) -> None:
    sel = selector.parse(Renderer(rnd).render(ast))
    restrictions = sel.label_restrictions()
    for candidate in labels:
        if not reference(ast, candidate):
            continue
        for key, allowed in restrictions.items():
            assert key in candidate, (str(sel), restrictions, candidate)
            assert allowed is None or candidate[key] in allowed


@settings(max_examples=200, deadline=None)
@given(
    asts=st.lists(asts, min_size=1, max_size=3),
    labels=st.lists(label_dicts, min_size=1, max_size=8),
    rnd=st.randoms(),
)
def test_composed_from_node(
    asts: list[Ast], labels: list[dict[str, str]], rnd: random.Random
) -> None:
    # what the calc layer does: combine parsed roots with the normalising constructors
    roots = [selector.parse(Renderer(rnd).render(a)).root for a in asts]
    both = selector.from_node(nodes.conjunction([nodes.negation(roots[0]), *roots[1:]]))
    either = selector.from_node(nodes.disjunction(roots))
    assert selector.parse(str(both)) == both
    assert selector.parse(str(either)) == either
    for candidate in labels:
        results = [reference(a, candidate) for a in asts]
        assert both.evaluate(candidate) is (not results[0] and all(results[1:]))
        assert either.evaluate(candidate) is any(results)


@settings(max_examples=200, deadline=None)
@given(ast=asts, rnd=st.randoms())
def test_uses_global_matches_ast(ast: Ast, rnd: random.Random) -> None:
    def has_global(a: Ast) -> bool:
        if a[0] == "global":
            return True
        if a[0] == "not":
            return has_global(a[1])
        if a[0] in ("and", "or"):
            return any(has_global(x) for x in a[1])
        return False

    sel = selector.parse(Renderer(rnd).render(ast))
    # normalisation never drops a global(): it matters to namespaceSelector (global() || all())
    assert sel.uses_global() is has_global(ast)
    assert ("global()" in str(sel)) is has_global(ast)


FRAGMENTS = [
    "a", "b", "in", "not", " ", "==", "!=", "!", "&&", "||", "&", "|", "(", ")", "{", "}", ",",
    "'x'", '"y"', "'", '"', "has(", "all(", "global(", "starts with", "ends with", "contains",
    "=", "@", "\t",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_fuzz_only_selector_errors(parts: list[str]) -> None:
    text = "".join(parts)
    error: selector.SelectorError | None = None
    try:
        sel = selector.parse(text)
    except selector.SelectorError as err:
        error = err
    if error is not None:
        assert 0 <= error.position <= len(text)
        assert str(error).split("\n")[2] == "  " + " " * error.position + "^"
    else:
        assert selector.parse(str(sel)) == sel
