"""Table-driven tests of calico.selector: syntax, canonical form, semantics, errors, index hints."""

from __future__ import annotations

import copy
import pickle

import pytest

from calico import selector
from calico.selector import compiler, nodes, parser

NS = "projectcalico.org/namespace"

# (selector, labels, expected match)
EVALUATE_CASES = [
    ("", {}, True),
    ("all()", {"a": "b"}, True),
    ("  all( )  ", {}, True),
    ("a == 'b'", {"a": "b"}, True),
    ("a == 'b'", {"a": "c"}, False),
    ("a == 'b'", {}, False),
    ('a == ""', {"a": ""}, True),
    ('a == ""', {}, False),
    ("a != 'b'", {"a": "b"}, False),
    ("a != 'b'", {"a": "c"}, True),
    ("a != 'b'", {}, True),  # != also matches when the label is absent
    ("a in {'x','y'}", {"a": "y"}, True),
    ("a in {'x','y'}", {"a": "z"}, False),
    ("a in {'x','y'}", {}, False),
    ("a in {}", {"a": ""}, False),
    ("a not in {'x','y'}", {"a": "x"}, False),
    ("a not in {'x','y'}", {"a": "z"}, True),
    ("a not in {'x','y'}", {}, True),  # not in also matches when absent
    ("a not in {}", {}, True),
    ("has(a)", {"a": ""}, True),
    ("has(a)", {"b": "a"}, False),
    ("!has(a)", {"b": "a"}, True),
    ("!has(a)", {"a": "x"}, False),
    ("a starts with 'pre'", {"a": "prefix"}, True),
    ("a starts with 'pre'", {"a": "xpre"}, False),
    ("a starts with 'pre'", {}, False),
    ("a starts with ''", {"a": ""}, True),
    ("a starts with ''", {}, False),
    ("a ends with 'fix'", {"a": "suffix"}, True),
    ("a ends with 'fix'", {"a": "fixed"}, False),
    ("a ends with ''", {}, False),
    ("a contains 'ef'", {"a": "prefix"}, True),
    ("a contains 'ef'", {"a": "fe"}, False),
    ("a contains ''", {}, False),
    ("a contains ''", {"a": "x"}, True),
    ("global()", {}, True),
    ("global()", {"a": "b"}, True),
    ("global()", {NS: "default"}, False),
    ("!global()", {NS: "default"}, True),
    ("!all()", {}, False),
    ("!(a == 'b')", {}, True),
    ("!!has(a)", {"a": "1"}, True),
    ("!!!has(a)", {"a": "1"}, False),
    # precedence: ! > && > ||
    ("has(a) || has(b) && has(c)", {"a": "1"}, True),
    ("(has(a) || has(b)) && has(c)", {"a": "1"}, False),
    ("has(a) && has(b) || has(c)", {"c": "1"}, True),
    ("has(a) && (has(b) || has(c))", {"c": "1"}, False),
    ("!has(a) && has(b)", {"b": "1"}, True),
    ("!(has(a) && has(b))", {"b": "1"}, True),
    ("!has(a) || has(b)", {"a": "1"}, False),
    # realistic keys and quoting
    ("projectcalico.org/namespace == 'kube-system'", {NS: "kube-system"}, True),
    ("pcns.kubernetes.io/metadata.name == 'p'", {"pcns.kubernetes.io/metadata.name": "p"}, True),
    ('app.kubernetes.io/name in {"web", "api"}', {"app.kubernetes.io/name": "api"}, True),
    ('a == "it\'s"', {"a": "it's"}, True),
    ("a == 'say \"hi\"'", {"a": 'say "hi"'}, True),
    ("a == 'two words'", {"a": "two words"}, True),
    # keyword-looking label keys are just keys
    ("in == 'x'", {"in": "x"}, True),
    ("has == 'x' && all == 'y' && global == 'z'", {"has": "x", "all": "y", "global": "z"}, True),
    ("contains contains 'x'", {"contains": "axb"}, True),
    ("not not in {'x'}", {"not": "y"}, True),
    ("starts starts with 'a'", {"starts": "abc"}, True),
    # Calico's lenient spellings
    ("a notin {'x'}", {"a": "x"}, False),
    ("a startswith 'x'", {"a": "xy"}, True),
    ("a in {'x',}", {"a": "x"}, True),
    ("a==\t'b'\n&&\nb!='c'", {"a": "b"}, True),
    ("role == 'db' && env in {'prod','dev'}", {"role": "db", "env": "dev"}, True),
    ("role == 'db' && env in {'prod','dev'}", {"role": "db", "env": "test"}, False),
]


@pytest.mark.parametrize(("text", "labels", "expected"), EVALUATE_CASES)
def test_evaluate(text: str, labels: dict[str, str], expected: bool) -> None:
    sel = selector.parse(text)
    assert sel.evaluate(labels) is expected
    # the closure fallback and a re-parse of the canonical form agree
    assert compiler.closure(sel.root)(labels) is expected
    assert selector.parse(str(sel)).evaluate(labels) is expected


CANONICAL_CASES = [
    ("", "all()"),
    ("   ", "all()"),
    ("all()", "all()"),
    ("a=='b'", 'a == "b"'),
    ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
    ("a in {'y', 'x', 'y'}", 'a in {"x", "y"}'),
    ("a in { }", "a in {}"),
    ("a notin{'x'}", 'a not in {"x"}'),
    ("a starts  with 'x'", 'a starts with "x"'),
    ("((a == 'b'))", 'a == "b"'),
    ("(a == 'b' && b == 'c') && c == 'd'", 'a == "b" && b == "c" && c == "d"'),
    ("a == 'b' || (b == 'c' || c == 'd')", 'a == "b" || b == "c" || c == "d"'),
    ("(has(a) || has(b)) && has(c)", "(has(a) || has(b)) && has(c)"),
    ("has(a) || (has(b) && has(c))", "has(a) || has(b) && has(c)"),
    ("!(a == 'b')", 'a != "b"'),
    ("!(a != 'b')", 'a == "b"'),
    ("!(a in {'x'})", 'a not in {"x"}'),
    ("!(a not in {'x'})", 'a in {"x"}'),
    ("!!has(a)", "has(a)"),
    ("!has(a)", "!has(a)"),
    ("!(a starts with 'x')", '!(a starts with "x")'),
    ("!(has(a) && has(b))", "!(has(a) && has(b))"),
    ("has(a) && has(a)", "has(a)"),
    ("has(a) && all()", "has(a)"),
    ("has(a) || all()", "has(a) || all()"),
    ("global() || all()", "global() || all()"),
    ("all() && all()", "all()"),
    ("has( a )", "has(a)"),
    ("global( )", "global()"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL_CASES)
def test_canonical_form(text: str, canonical: str) -> None:
    sel = selector.parse(text)
    assert str(sel) == canonical
    assert sel.expression == canonical
    assert selector.parse(canonical) == sel
    assert selector.parse(canonical).root == sel.root


def test_empty_is_all() -> None:
    assert selector.parse("") == selector.ALL
    assert selector.parse(" \t") is selector.ALL
    assert selector.parse("all()") is selector.ALL
    assert str(selector.ALL) == "all()"


def test_equality_and_hash() -> None:
    a = selector.parse("b == 'x' && a in {'2','1'}")
    b = selector.parse('(b=="x")&&a in {"1","2","1"}')
    c = selector.parse("a in {'1','2'} && b == 'x'")  # operand order is kept, so not equal
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert a != "b == 'x' && a in {'1','2'}"  # not equal to strings
    assert a.evaluate({"a": "1", "b": "x"})
    assert c.evaluate({"a": "1", "b": "x"})


def test_selector_is_frozen() -> None:
    sel = selector.parse("has(a)")
    with pytest.raises(AttributeError):
        sel.expression = "has(b)"
    with pytest.raises(AttributeError):
        del sel.root
    with pytest.raises(AttributeError):
        sel.other = 1
    assert str(sel) == "has(a)"


def test_pickle_and_copy() -> None:
    sel = selector.parse("a == 'b' || global()")
    clone = pickle.loads(pickle.dumps(sel))
    assert clone == sel
    assert clone.evaluate({"a": "b", NS: "x"})
    assert copy.copy(sel) is sel
    assert copy.deepcopy(sel) is sel
    assert repr(sel) == "selector.parse('a == \"b\" || global()')"


def test_parse_is_cached_and_interned() -> None:
    assert selector.parse("has(cached)") is selector.parse("has(cached)")
    # different spellings share one Selector
    assert selector.parse("has( cached )") is selector.parse("has(cached)")


def test_from_node_normalises() -> None:
    root = nodes.Not(nodes.Eq("a", "b"))  # not normalised by hand
    sel = selector.from_node(root)
    assert sel == selector.parse("a != 'b'")
    assert sel.root == nodes.Ne("a", "b")


def test_from_node_rejects_unwritable_ast() -> None:
    with pytest.raises(selector.SelectorError):
        selector.from_node(nodes.Has("bad key"))
    with pytest.raises(ValueError, match="both quote characters"):
        selector.from_node(nodes.Eq("a", "'\""))


def test_parse_rejects_non_str() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        selector.parse(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        selector.parse(b"has(a)")  # type: ignore[arg-type]


# (text, position, words of the reason)
ERROR_CASES = [
    ("a == ", 5, "expected a quoted string"),
    ("a ==", 4, "expected a quoted string"),
    ("a == b", 5, "expected a quoted string"),
    ("a", 1, "expected an operator"),
    ("a = 'b'", 2, "expected an operator"),
    ("a === 'b'", 4, "expected a quoted string"),
    ("a == 'b", 5, "unterminated string"),
    ('a == "b', 5, "unterminated string"),
    ("a in {'x' 'y'}", 10, "expected ',' or '}'"),
    ("a in {'x',,}", 10, "expected a quoted string or '}'"),
    ("a in {'x'", 9, "expected ',' or '}'"),
    ("a in 'x'", 5, "expected '{'"),
    ("a not 'x'", 2, "expected an operator"),
    ("a inx {'x'}", 2, "expected an operator"),
    ("a starts 'x'", 2, "expected an operator"),
    ("a contains", 10, "expected a quoted string"),
    ("has(", 4, "expected a label key"),
    ("has()", 4, "expected a label key"),
    ("has(a", 5, "expected ')'"),
    ("has(a b)", 6, "expected ')'"),
    ("all(a)", 4, "all() takes no argument"),
    ("global(", 7, "global() takes no argument"),
    ("!", 1, "expected a label key"),
    ("&& has(a)", 0, "expected a label key"),
    ("has(a) &&", 9, "expected a label key"),
    ("has(a) ||   ", 12, "expected a label key"),
    ("has(a) & has(b)", 7, "expected '&&', '||' or the end"),
    ("has(a) | has(b)", 7, "expected '&&', '||' or the end"),
    ("has(a) has(b)", 7, "expected '&&', '||' or the end"),
    ("has(a))", 6, "expected '&&', '||' or the end"),
    ("(has(a)", 7, "expected '&&', '||' or ')'"),
    ("(has(a) has(b))", 8, "expected '&&', '||' or ')'"),
    ("()", 1, "expected a label key"),
    ("a == 'b' && (b == 'c' || )", 25, "expected a label key"),
    ("a@b == 'c'", 1, "expected an operator"),
    ("@", 0, "expected a label key"),
    ("\u00e9 == 'x'", 0, "expected a label key"),
    ("a == 'x' == 'y'", 9, "expected '&&', '||' or the end"),
]


@pytest.mark.parametrize(("text", "position", "reason"), ERROR_CASES)
def test_error_positions(text: str, position: int, reason: str) -> None:
    with pytest.raises(selector.SelectorError) as info:
        selector.parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.position == position, str(err)
    assert reason in err.reason
    assert err.selector == text
    lines = str(err).split("\n")
    assert lines[0] == f"selector {text!r}: {err.reason} at position {position}"
    assert lines[2] == "  " + " " * position + "^"
    assert len(lines[1]) == len(text) + 2  # caret line aligns with the text line


def test_error_message_format_from_brief() -> None:
    with pytest.raises(selector.SelectorError) as info:
        selector.parse("a == ")
    assert str(info.value) == (
        "selector 'a == ': expected a quoted string at position 5\n  a == \n       ^"
    )


def test_error_pickles() -> None:
    err = selector.SelectorError("a ==", 4, "expected a quoted string")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.selector, clone.position, str(clone)) == (err.selector, 4, str(err))


def test_error_caret_stays_aligned_with_newlines() -> None:
    with pytest.raises(selector.SelectorError) as info:
        selector.parse("has(a)\n&&\n")
    text_line, caret_line = str(info.value).split("\n")[1:]
    assert caret_line.index("^") == 2 + info.value.position == 2 + 10
    assert len(text_line) == 2 + len("has(a)\n&&\n")


def test_nesting_limit() -> None:
    depth = parser.MAX_DEPTH
    ok = "(" * depth + "has(a)" + ")" * depth
    assert selector.parse(ok) == selector.parse("has(a)")
    with pytest.raises(selector.SelectorError) as info:
        selector.parse("(" * (depth + 1) + "has(a)" + ")" * (depth + 1))
    assert info.value.position == depth
    assert "nested deeper" in info.value.reason
    # long flat chains and long runs of ! are not limited
    many = " && ".join(f"has(k{i})" for i in range(3000))
    assert selector.parse(many).evaluate({f"k{i}": "" for i in range(3000)})
    assert selector.parse("!" * 5001 + "has(a)").evaluate({})


def test_deep_alternation_compiles_and_evaluates() -> None:
    # a && (b || (a && (b || ...))) at the nesting limit: every level survives normalisation
    depth = parser.MAX_DEPTH
    text = "has(z)"
    for i in range(depth):
        op = "&&" if i % 2 else "||"
        text = f"k{i % 2} == 'v' {op} ({text})"
    sel = selector.parse(text)
    assert selector.parse(str(sel)) == sel
    for labels in ({}, {"z": ""}, {"k0": "v"}, {"k1": "v"}, {"k0": "v", "k1": "v"}):
        assert sel.evaluate(labels) == compiler.closure(sel.root)(labels)


RESTRICTION_CASES: list[tuple[str, dict[str, frozenset[str] | None]]] = [
    ("", {}),
    ("global()", {}),
    ("a == 'x'", {"a": frozenset({"x"})}),
    ("a != 'x'", {}),
    ("a in {'x','y'}", {"a": frozenset({"x", "y"})}),
    ("a not in {'x'}", {}),
    ("has(a)", {"a": None}),
    ("!has(a)", {}),
    ("a starts with 'p'", {"a": None}),
    ("a ends with 'p'", {"a": None}),
    ("a contains 'p'", {"a": None}),
    ("a == 'x' && b in {'1','2'}", {"a": frozenset({"x"}), "b": frozenset({"1", "2"})}),
    ("a in {'x','y'} && a in {'y','z'}", {"a": frozenset({"y"})}),
    ("a == 'x' && a == 'y'", {"a": frozenset()}),  # can never match
    ("has(a) && a == 'x'", {"a": frozenset({"x"})}),
    ("a == 'x' || a == 'y'", {"a": frozenset({"x", "y"})}),
    ("a == 'x' || has(a)", {"a": None}),
    ("a == 'x' || b == 'y'", {}),
    ("(a == 'x' && b == '1') || (a == 'y' && c == '2')", {"a": frozenset({"x", "y"})}),
    ("a == 'x' || all()", {}),
    ("!(a != 'x')", {"a": frozenset({"x"})}),
    ("!(has(a) || has(b))", {}),
    ("a == 'x' && global()", {"a": frozenset({"x"})}),
]


@pytest.mark.parametrize(("text", "expected"), RESTRICTION_CASES)
def test_label_restrictions(text: str, expected: dict[str, frozenset[str] | None]) -> None:
    sel = selector.parse(text)
    assert sel.label_restrictions() == expected
    # callers may mutate the result without affecting the selector
    sel.label_restrictions().clear()
    assert sel.label_restrictions() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("global()", True),
        ("!global()", True),
        ("global() || all()", True),
        ("all() && global()", True),
        ("has(a) && (b == 'x' || global())", True),
        ("has(a)", False),
        ("global == 'x'", False),
        ("", False),
    ],
)
def test_uses_global(text: str, expected: bool) -> None:
    assert selector.parse(text).uses_global() is expected


def test_generated_code_quotes_values_safely() -> None:
    hostile = "'); __import__('os').system('false'); ('"
    sel = selector.parse(f'a == "{hostile}" || b contains "\\x00\'" || c in {{"{hostile}"}}')
    assert sel.evaluate({"a": hostile})
    assert sel.evaluate({"b": "q\\x00'q"})
    assert sel.evaluate({"c": hostile})
    assert not sel.evaluate({"a": "x"})
    src = compiler.source(sel.root)
    assert "__import__('os')" not in src.replace(repr(hostile), "")


def test_compiled_path_and_closure_fallback() -> None:
    sel = selector.parse("a == 'b' && (has(c) || d in {'e'})")
    assert sel.evaluate.__code__.co_filename == "<selector>"  # generated code, not closures
    # deeper than CPython's parser accepts (200 nested parentheses): falls back to closures
    root: nodes.Node = nodes.Has("z")
    for i in range(210):
        leaf = nodes.Eq(f"k{i % 2}", "v")
        root = nodes.And((leaf, root)) if i % 2 else nodes.Or((leaf, root))
    matcher = compiler.compile_matcher(root)
    assert matcher.__code__.co_filename != "<selector>"
    for labels in ({}, {"z": ""}, {"k0": "v"}, {"k1": "v"}, {"k0": "v", "k1": "v", "z": ""}):
        expected = "z" in labels
        for i in range(210):
            hit = labels.get(f"k{i % 2}") == "v"
            expected = (hit and expected) if i % 2 else (hit or expected)
        assert matcher(labels) is expected
