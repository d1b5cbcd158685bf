"""The live full-recompute check (CalcCheckInterval), off the agent's update path.

::

    loop turn (main thread):  flush -> checker.turn(graph):  a finished check found differences?
                                                              -> raise CalcDiverged (exit 1)
                                                             due, none running?
                                                              -> graph.snapshot() (dict copy of
                                                                 immutable bytes + sent state)
    "calc-check" thread:      calc.graph.recompute_differences(snapshot, pause=...)
                              (a fresh graph over the snapshot vs what had been sent)

The thread computes only while the loop waits for input: the loop's queue (:class:`LoopQueue`)
says when it is blocked in ``get``, and the check pauses between chunks of ~32 resources
otherwise (and gives up the GIL there), so a write that arrives mid-check waits at most about one
chunk, not a whole recompute. The snapshot is frozen, so updates the loop handles meanwhile
cannot make it disagree with itself. Crash-only: differences (or a recompute that raises) end the
process through the loop, as a divergence always did; the next check is due ``interval`` after
the previous one finished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from calico.calc import graph as calc_graph

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CalcDiverged(RuntimeError):
    """The incremental calculation disagrees with a full recompute (a bug): restart."""


class _Closed(Exception):
    """Ends a check early: the agent is stopping."""


class LoopQueue(queue.Queue[T]):
    """The agent's input queue; ``idle`` is set while the loop is blocked waiting on it."""

    def __init__(self, maxsize: int, idle: threading.Event) -> None:
        super().__init__(maxsize)
        self.idle = idle

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if not block:
            return super().get(block=False)
        self.idle.set()
        try:
            return super().get(block, timeout)
        finally:
            self.idle.clear()


class CalcChecker:
    """Starts the check every ``interval`` seconds (0: never) and acts on its result."""

    def __init__(
        self, interval: float, *, clock: Callable[[], float] = time.monotonic, every: int = 32
    ) -> None:
        self.idle = threading.Event()  # set by the loop (LoopQueue) while it waits for input
        self._clock = clock
        self._every = every
        self._next = clock() + interval
        self._thread: threading.Thread | None = None
        self._result: list[str] | Exception = []
        self._closed = False
        self.checks = 0  # completed checks (status, tests)
        self.last_ms = 0.0  # wall time of the last check, pauses included

    @property
    def running(self) -> bool:
        return self._thread is not None

    def turn(self, graph: calc_graph.CalcGraph, *, interval: float, in_sync: bool) -> None:
        """On the loop right after a flush: raise :class:`CalcDiverged` if a finished check
        found differences; start the next one when it is due."""
        self._collect(interval)
        if not interval or not in_sync or self.running or self._clock() < self._next:
            return
        snap = graph.snapshot()
        self._thread = threading.Thread(
            target=self._run, args=(snap,), name="calc-check", daemon=True
        )
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Until a running check has finished (tests); True if none is running by then."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def close(self) -> None:
        """The loop is ending: a running check stops at its next pause."""
        self._closed = True
        self.idle.set()

    def _pause(self) -> None:
        time.sleep(0)  # let a thread that wants the GIL (the loop, the syncer) have it now
        self.idle.wait()
        if self._closed:
            raise _Closed

    def _run(self, snap: calc_graph.Snapshot) -> None:
        start = time.perf_counter()
        try:
            self._result = calc_graph.recompute_differences(
                snap, pause=self._pause, every=self._every
            )
        except _Closed:
            return
        except Exception as exc:  # handed to the loop, which exits: crash-only
            self._result = exc
        self.last_ms = (time.perf_counter() - start) * 1000

    def _collect(self, interval: float) -> None:
        thread = self._thread
        if thread is None or thread.is_alive():
            return
        self._thread = None
        self._next = self._clock() + interval
        self.checks += 1
        result, self._result = self._result, []
        if isinstance(result, Exception):
            raise CalcDiverged(f"the full recompute failed: {result!r}") from result
        if result:
            raise CalcDiverged("; ".join(result))
        logger.info("full-recompute check agrees (%.1f ms, off the loop)", self.last_ms)
