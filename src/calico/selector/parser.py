"""Recursive-descent parser: selector text -> normalised AST (``calico.selector.nodes``).

Grammar (precedence ``!`` > ``&&`` > ``||``, as in libcalico-go's parser)::

    selector   := <whitespace only>            -> all()
                | or_expr
    or_expr    := and_expr ( "||" and_expr )*
    and_expr   := unary ( "&&" unary )*
    unary      := "!"* primary
    primary    := "(" or_expr ")"
                | "all" "(" ")" | "global" "(" ")" | "has" "(" key ")"
                | key "==" string | key "!=" string
                | key "in" set | key "not" "in" set
                | key "starts" "with" string | key "ends" "with" string | key "contains" string
    set        := "{" [ string ( "," string )* [","] ] "}"
    string     := '...' | "..."          (no escapes; the other quote may appear inside)
    key        := [A-Za-z0-9_./-]+

The parser is context-sensitive rather than keyword-reserving: in operand position ``has(``,
``all(`` and ``global(`` are functions, anything else made of key characters is a label key;
after a key only an operator may follow. So labels named ``in``, ``has`` or ``contains`` work
(``in == 'x'``), which libcalico-go's regex tokenizer gets wrong. Whitespace is any Unicode
whitespace (Calico: space and tab). Like Calico, ``not in``, ``starts with`` and ``ends with``
accept any (or no) whitespace between their words, and a set literal may end with a comma.

Parenthesis nesting is limited to ``MAX_DEPTH`` levels so that a hostile selector cannot exhaust
the Python stack here or in the code that walks the AST.
"""

from __future__ import annotations

import re

from calico.selector import nodes
from calico.selector.errors import SelectorError

MAX_DEPTH = 100

_NOT_KEY_CHAR = r"(?![A-Za-z0-9_./-])"
_WHITESPACE = re.compile(r"\s*")
_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_FUNCTION = re.compile(r"(has|all|global)\s*\(")
_OPERATOR = re.compile(
    r"==|!="
    rf"|(?P<notin>not\s*in){_NOT_KEY_CHAR}"
    rf"|(?P<in>in){_NOT_KEY_CHAR}"
    rf"|(?P<starts>starts\s*with){_NOT_KEY_CHAR}"
    rf"|(?P<ends>ends\s*with){_NOT_KEY_CHAR}"
    rf"|(?P<contains>contains){_NOT_KEY_CHAR}"
)

_EXPECT_OPERAND = "expected a label key, '!', '(', has(), all() or global()"
_EXPECT_OPERATOR = "expected an operator (==, !=, in, not in, starts with, ends with, contains)"

_STRING_OPERATORS: dict[str, type[nodes.Eq | nodes.Ne | nodes.StartsWith | nodes.EndsWith]] = {
    "==": nodes.Eq,
    "!=": nodes.Ne,
    "starts": nodes.StartsWith,
    "ends": nodes.EndsWith,
}


def parse(text: str) -> nodes.Node:
    """Parse ``text``; raise SelectorError (with the 0-based position) when it is not a selector."""
    if not isinstance(text, str):
        raise TypeError(f"selector must be a str, not {type(text).__name__}")
    return _Parser(text).parse()


class _Parser:
    __slots__ = ("depth", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def parse(self) -> nodes.Node:
        self._skip()
        if self.pos == len(self.text):
            return nodes.ALL_NODE
        node = self._or_expr()
        if self.pos != len(self.text):
            raise self._error("expected '&&', '||' or the end of the selector")
        return node

    # -- helpers ---------------------------------------------------------------------------------

    def _error(self, reason: str, position: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos if position is None else position, reason)

    def _skip(self) -> None:
        match = _WHITESPACE.match(self.text, self.pos)
        assert match is not None  # \s* always matches
        self.pos = match.end()

    def _at(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def _expect(self, literal: str, reason: str) -> None:
        self._skip()
        if not self._at(literal):
            raise self._error(reason)
        self.pos += len(literal)
        self._skip()

    # -- expressions -----------------------------------------------------------------------------

    def _or_expr(self) -> nodes.Node:
        operands = [self._and_expr()]
        while self._at("||"):
            self.pos += 2
            operands.append(self._and_expr())
        return nodes.disjunction(operands)

    def _and_expr(self) -> nodes.Node:
        operands = [self._unary()]
        while self._at("&&"):
            self.pos += 2
            operands.append(self._unary())
        return nodes.conjunction(operands)

    def _unary(self) -> nodes.Node:
        negated = False
        self._skip()
        while self._at("!"):
            negated = not negated
            self.pos += 1
            self._skip()
        node = self._primary()
        self._skip()
        return nodes.negation(node) if negated else node

    def _primary(self) -> nodes.Node:
        start = self.pos
        if self._at("("):
            if self.depth >= MAX_DEPTH:
                raise self._error(f"parentheses nested deeper than {MAX_DEPTH} levels")
            self.depth += 1
            self.pos += 1
            node = self._or_expr()
            self._expect(")", "expected '&&', '||' or ')'")
            self.depth -= 1
            return node
        function = _FUNCTION.match(self.text, self.pos)
        if function is not None:
            self.pos = function.end()
            return self._function(function.group(1))
        key = _KEY.match(self.text, self.pos)
        if key is None:
            raise self._error(_EXPECT_OPERAND, start)
        self.pos = key.end()
        return self._comparison(key.group())

    def _function(self, name: str) -> nodes.Node:
        if name == "all":
            self._expect(")", "expected ')': all() takes no argument")
            return nodes.ALL_NODE
        if name == "global":
            self._expect(")", "expected ')': global() takes no argument")
            return nodes.Global()
        self._skip()
        key = _KEY.match(self.text, self.pos)
        if key is None:
            raise self._error("expected a label key")
        self.pos = key.end()
        self._expect(")", "expected ')' after the label key")
        return nodes.Has(key.group())

    def _comparison(self, key: str) -> nodes.Node:
        self._skip()
        operator = _OPERATOR.match(self.text, self.pos)
        if operator is None:
            raise self._error(_EXPECT_OPERATOR)
        self.pos = operator.end()
        kind = operator.lastgroup or operator.group()
        if kind == "in":
            return nodes.In(key, self._set())
        if kind == "notin":
            return nodes.NotIn(key, self._set())
        value = self._string()
        if kind == "contains":
            return nodes.Contains(key, value)
        return _STRING_OPERATORS[kind](key, value)

    def _string(self) -> str:
        self._skip()
        text, start = self.text, self.pos
        if start >= len(text) or text[start] not in "'\"":
            raise self._error("expected a quoted string")
        end = text.find(text[start], start + 1)
        if end < 0:
            raise self._error("unterminated string", start)
        self.pos = end + 1
        return text[start + 1 : end]

    def _set(self) -> tuple[str, ...]:
        self._expect("{", "expected '{' to start a set of quoted strings")
        values: list[str] = []
        while not self._at("}"):
            if self.pos >= len(self.text) or self.text[self.pos] not in "'\"":
                raise self._error("expected a quoted string or '}'")
            values.append(self._string())
            self._skip()
            if self._at(","):
                self.pos += 1
                self._skip()
            elif not self._at("}"):
                raise self._error("expected ',' or '}'")
        self.pos += 1
        return nodes.value_set(values)
