"""Selector: a parsed, compiled, immutable selector; ``parse`` (cached) and ``ALL``.

A Selector is identified by its canonical text (``expression``): two Selectors are equal, and hash
equal, exactly when their canonical strings are equal, and ``parse(str(sel)) == sel``. ``evaluate``
is the compiled matcher itself (an instance attribute, so a call is a single Python call).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, final

from calico.selector import compiler, nodes, parser, restrictions

PARSE_CACHE_SIZE = 8192


@final
class Selector:
    """A parsed selector. Build one with ``parse``; instances are frozen and hashable."""

    __slots__ = ("_hash", "_restrictions", "evaluate", "expression", "root")

    expression: str
    """The canonical selector text."""
    root: nodes.Node
    """The normalised AST (read-only; see calico.selector.nodes)."""
    evaluate: Callable[[Mapping[str, str]], bool]
    """``evaluate(labels) -> bool``: does the selector match this label mapping?"""
    _hash: int
    _restrictions: restrictions.Restrictions | None

    def __init__(self, root: nodes.Node) -> None:
        expression = nodes.render(root)
        setattr_ = object.__setattr__
        setattr_(self, "root", root)
        setattr_(self, "expression", expression)
        setattr_(self, "evaluate", compiler.compile_matcher(root))
        setattr_(self, "_hash", hash(("calico.selector", expression)))
        setattr_(self, "_restrictions", None)

    def label_restrictions(self) -> dict[str, frozenset[str] | None]:
        """Labels every match must have -> the allowed values (None: any). Conservative.

        ``role == 'db' && env in {'a','b'}`` gives ``{'role': {'db'}, 'env': {'a','b'}}``;
        ``has(x) || y == '1'`` gives ``{}``. A fresh dict each call (callers may mutate it).
        """
        cached = self._restrictions
        if cached is None:
            cached = restrictions.restrictions(self.root)
            object.__setattr__(self, "_restrictions", cached)
        return dict(cached)

    def uses_global(self) -> bool:
        """True if the expression contains ``global()``."""
        return any(isinstance(node, nodes.Global) for node in nodes.walk(self.root))

    def __str__(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        return f"selector.parse({self.expression!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Selector):
            return self.expression == other.expression
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Selector is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Selector is immutable (cannot delete {name!r})")

    def __reduce__(self) -> tuple[Callable[[str], Selector], tuple[str]]:
        return (parse, (self.expression,))

    def __copy__(self) -> Selector:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Selector:
        return self


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_cached(text: str) -> Selector:
    return _intern(parser.parse(text))


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _intern(root: nodes.Node) -> Selector:
    # Different spellings of one selector share one Selector (and one compiled matcher).
    return Selector(root)


def parse(text: str) -> Selector:
    """Parse (and compile) a selector; cached. ``""`` (or only whitespace) is ``ALL``.

    Raises SelectorError (a ValueError) with ``.position`` for bad input, TypeError for a non-str.
    """
    if not isinstance(text, str):
        raise TypeError(f"selector must be a str, not {type(text).__name__}")
    return _parse_cached(text)


def from_node(root: nodes.Node) -> Selector:
    """The Selector for an AST (normalised by a render/parse round trip, so any tree is fine)."""
    return _parse_cached(nodes.render(root))


ALL = parse("all()")
