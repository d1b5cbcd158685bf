"""Progress display for long lab operations (``up``, ``down``).

On a terminal: a rich spinner naming the current step, each finished step left behind with a tick
and its duration. Elsewhere (CI logs, pipes): one plain line per step. rich is imported only on a
terminal.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class Progress:
    def __init__(self, title: str, *, enabled: bool = True) -> None:
        self.title = title
        self.enabled = enabled
        self._tty = enabled and sys.stderr.isatty()
        self._status: Any = None
        self._console: Any = None
        self._current: str | None = None
        self._started = time.monotonic()
        self._step_started = self._started

    def __enter__(self) -> Progress:
        if self._tty:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
            self._status = self._console.status(self.title)
            self._status.start()
        elif self.enabled:
            print(self.title, file=sys.stderr, flush=True)
        return self

    def step(self, text: str) -> None:
        self._finish_current()
        self._current = text
        self._step_started = time.monotonic()
        if self._status is not None:
            from rich.markup import escape

            self._status.update(escape(f"{self.title}: {text}"))
        elif self.enabled:
            print(f"  - {text}", file=sys.stderr, flush=True)

    def _finish_current(self) -> None:
        if self._current is not None and self._console is not None:
            took = time.monotonic() - self._step_started
            from rich.markup import escape

            self._console.print(
                f"  [green]✓[/green] {escape(self._current)} [dim]({took:.1f}s)[/dim]"
            )
        self._current = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self._finish_current()
        elif self._console is not None and self._current is not None:
            from rich.markup import escape

            self._console.print(f"  [red]✗[/red] {escape(self._current)}")
        if self._status is not None:
            self._status.stop()
        if self.enabled and exc is None:
            took = time.monotonic() - self._started
            print(f"{self.title}: done in {took:.1f}s", file=sys.stderr, flush=True)
