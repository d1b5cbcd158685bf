"""SelectorIndex (indexed by label restrictions) == LinearScanIndex (evaluate everything), under
random interleavings of selector and item updates and deletes (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from calico import selector
from calico.calc.labelindex import LinearScanIndex, SelectorIndex

SELECTORS = [
    "all()",
    "a == '1'",
    "a == '2'",
    "a in {'1','2'}",
    "has(b)",
    "!has(b)",
    "a != '1'",
    "a == '1' && b == 'x'",
    "a == '1' || b == 'x'",
    "b starts with 'x'",
    "a not in {'1'}",
    "has(a) && !has(b)",
]
LABELS = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.sampled_from(["1", "2", "x"]), max_size=3
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("sel"), st.integers(0, 4), st.sampled_from(SELECTORS)),
        st.tuples(st.just("delsel"), st.integers(0, 4), st.just("")),
        st.tuples(st.just("item"), st.integers(0, 5), LABELS),
        st.tuples(st.just("delitem"), st.integers(0, 5), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_labelindex_matches_linear_scan(ops: list[tuple[str, int, object]]) -> None:
    events: set[tuple[str, str]] = set()
    index = SelectorIndex(lambda s, i: events.add((s, i)), lambda s, i: events.discard((s, i)))
    ref = LinearScanIndex()
    for op, n, arg in ops:
        if op == "sel":
            sel = selector.parse(str(arg))
            index.update_selector(f"s{n}", sel)
            ref.selectors[f"s{n}"] = sel
        elif op == "delsel":
            index.delete_selector(f"s{n}")
            ref.selectors.pop(f"s{n}", None)
        elif op == "item":
            assert isinstance(arg, dict)
            index.update_item(f"i{n}", arg)
            ref.labels[f"i{n}"] = arg
        else:
            index.delete_item(f"i{n}")
            ref.labels.pop(f"i{n}", None)
        assert index.matches() == ref.matches()
        assert events == ref.matches()  # the callbacks tell the same story
