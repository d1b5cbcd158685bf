"""SelectorError: a bad selector, with the 0-based position of the problem and a caret diagram."""

from __future__ import annotations


def _one_line(text: str) -> str:
    # Keep the caret aligned: every character of the selector becomes one printed column.
    return "".join(ch if ch.isprintable() else " " for ch in text)


class SelectorError(ValueError):
    """A selector that does not parse.

    ``selector`` is the text, ``position`` the 0-based index of the offending character
    (``len(selector)`` for "ended too early") and ``reason`` the bare message. ``str(err)`` is::

        selector 'a == ': expected a quoted string at position 5
          a ==
               ^
    """

    def __init__(self, selector: str, position: int, reason: str) -> None:
        self.selector = selector
        self.position = position
        self.reason = reason
        caret = " " * position + "^"
        message = (
            f"selector {selector!r}: {reason} at position {position}\n"
            f"  {_one_line(selector)}\n  {caret}"
        )
        super().__init__(message)

    def __reduce__(self) -> tuple[type[SelectorError], tuple[str, int, str]]:
        return (SelectorError, (self.selector, self.position, self.reason))
