"""The live full-recompute check (CalcCheckInterval), off the agent's update path.

::

    loop turn (main thread): flush -> checker.turn(graph):
        a finished check disagreed (or failed)?     -> raise CalcDiverged (the agent exits 1)
        one due, none running?                      -> fork: the child is the snapshot
    child process (nice 19):  graph.full_recompute_differences() -> JSON on a pipe -> _exit

The check is a whole recompute (a fresh graph over every resource: ~0.1 s of CPU at 1000 local
endpoints x 1000 policies, ~1 s at 50k endpoints). In a thread it would hold the GIL the loop
needs; in a forked child it runs beside the loop on another core, at the lowest CPU priority, over
a copy-on-write image of the graph taken at a flush (so nothing the loop does afterwards can make it
disagree with itself, and the parent copies nothing up front). The loop polls the pipe on each turn
(at least once a second) and acts on the result: differences, or a recompute that raised, end the
process (crash-only, as a divergence always did); a child killed from outside (the OOM killer) is
logged and the check tried again at the next interval. The next check is due ``interval`` after
the previous one finished.

The child only computes (``calc`` is pure: no I/O, no locks, no threads) and leaves with
``os._exit``: it never runs the parent's atexit handlers, flushes its buffers or uses its sockets.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable

from calico.calc import graph as calc_graph

logger = logging.getLogger(__name__)
MAX_REPORT = 32 * 1024  # well under a pipe's buffer: the child never blocks writing it


class CalcDiverged(RuntimeError):
    """The incremental calculation disagrees with a full recompute (a bug): restart."""


def _child(graph: calc_graph.CalcGraph, out: int) -> None:
    """In the forked child: compute, report, leave (never returns)."""
    code = 0
    start = time.perf_counter()
    try:
        os.nice(19)
        logging.disable(logging.CRITICAL)  # the parent already logged every invalid resource
        report: dict[str, object] = {"diffs": graph.full_recompute_differences()}
        report["ms"] = (time.perf_counter() - start) * 1000
    except BaseException as exc:  # reported to the parent, which exits
        report = {"error": repr(exc)}
        code = 3
    try:
        data = json.dumps(report).encode()
        if len(data) > MAX_REPORT:
            data = json.dumps({"diffs": ["(differences too long to report)"]}).encode()
        while data:
            data = data[os.write(out, data) :]
    finally:
        os._exit(code)


class CalcChecker:
    """Starts the check every ``interval`` seconds (0: never) and acts on its result."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        fork: Callable[[], int] = os.fork,
    ) -> None:
        self._clock = clock
        self._fork = fork
        self._next = clock() + interval
        self._pid = 0
        self._pipe = -1
        self._buf = b""
        self._status: int | None = None  # the child's wait status, once it has exited
        self.checks = 0  # completed checks (status, tests)
        self.last_ms = 0.0  # the last check's time in the child (fork to report)

    @property
    def running(self) -> bool:
        return self._pid != 0

    def turn(self, graph: calc_graph.CalcGraph, *, interval: float, in_sync: bool) -> None:
        """On the loop right after a flush: raise :class:`CalcDiverged` if a finished check
        found differences; start the next one when it is due."""
        self._collect(interval)
        if not interval or not in_sync or self.running or self._clock() < self._next:
            return
        read, write = os.pipe()
        pid = self._fork()
        if pid == 0:
            os.close(read)
            _child(graph, write)
        os.close(write)
        os.set_blocking(read, False)
        self._pid, self._pipe, self._buf, self._status = pid, read, b"", None

    def wait(self, timeout: float) -> bool:
        """Until a running check's child has exited (tests); True if none is left running."""
        deadline = time.monotonic() + timeout
        while self.running and self._poll() is None and time.monotonic() < deadline:
            self._read()  # keep the pipe drained
            time.sleep(0.01)
        return not self.running or self._status is not None

    def _poll(self) -> int | None:
        if self._status is None:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                self._status = status
        return self._status

    def close(self) -> None:
        """The loop is ending: stop a running check."""
        if self.running:
            if self._poll() is None:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._done()

    def _done(self) -> None:
        os.close(self._pipe)
        self._pid, self._pipe = 0, -1

    def _collect(self, interval: float) -> None:
        if not self.running:
            return
        self._read()
        status = self._poll()
        if status is None:
            return
        self._read()
        data, self._buf = self._buf, b""
        self._done()
        self._next = self._clock() + interval
        self.checks += 1
        if os.WIFSIGNALED(status):
            logger.warning(
                "full-recompute check killed by signal %d; next try in %.0f s",
                os.WTERMSIG(status),
                interval,
            )
            return
        report = json.loads(data) if data else {"error": f"no report (wait status {status})"}
        if "error" in report:
            raise CalcDiverged(f"the full recompute failed: {report['error']}")
        if report["diffs"]:
            raise CalcDiverged("; ".join(report["diffs"]))
        self.last_ms = float(report.get("ms", 0.0))
        logger.info("full-recompute check agrees (%.1f ms in a child process)", self.last_ms)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._pipe, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._buf += chunk
