"""Supervise calico-node's parts as child processes: start, restart what dies, report health.

Each :class:`Service` is an argv plus an optional precondition (BIRD waits for its config file).
A service that exits is restarted after a back-off (1 s doubling to 10 s, reset after 30 s of
running); a binary that is missing is logged and retried the same way, so the node keeps serving
the parts it has. Children get their ``death_signal`` when calico-node dies (``PR_SET_PDEATHSIG``:
SIGTERM by default; BIRD gets SIGKILL, so a crashed calico-node does not make it tell its peers
to drop this node's routes: the peers' graceful restart keeps them until the restarted BIRD is
back) and SIGTERM on :meth:`Supervisor.stop`, an orderly stop (then SIGKILL after a grace
period). Output goes to ``<log dir>/<service>/current``, Calico's layout.

Health is ``<run dir>/health.json``: per service pid, running, restarts, last exit; ``ready`` is
true when every service is running.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.lib import cmd

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int = signal.SIGTERM) -> None:  # in the child, between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):
        pass


@dataclass
class Service:
    name: str
    argv: Sequence[str]
    ready_to_start: Callable[[], bool] = lambda: True
    env: dict[str, str] | None = None
    death_signal: int = signal.SIGTERM  # what the child gets if calico-node itself dies
    # runtime state
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    starts: int = 0
    last_exit: int | None = None
    last_error: str = ""
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = 1.0
    history: list[int] = field(default_factory=list)  # pids, oldest first

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        *,
        run_dir: Path,
        log_dir: Path,
        max_backoff: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = list(services)
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.max_backoff = max_backoff
        self.clock = clock
        self._last_health = ""

    def _start(self, svc: Service) -> None:
        now = self.clock()
        if now < svc.next_start or not svc.ready_to_start():
            return
        log_dir = self.log_dir / svc.name
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "current", "ab") as log:
            try:
                svc.proc = cmd.start(
                    list(svc.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=svc.env,
                    # calico-node has no threads when it forks its children
                    preexec_fn=functools.partial(_die_with_parent, svc.death_signal),
                    close_fds=True,
                )
            except OSError as exc:
                svc.last_error = f"cannot start {svc.argv[0]}: {exc}"
                logger.warning("%s: %s; retrying in %.0fs", svc.name, svc.last_error, svc.backoff)
                self._schedule_retry(svc, now)
                return
        if svc.starts:
            svc.restarts += 1
        svc.starts += 1
        svc.started_at = now
        svc.last_error = ""
        svc.history.append(svc.proc.pid)
        logger.info("%s started (pid %d)", svc.name, svc.proc.pid)

    def _schedule_retry(self, svc: Service, now: float) -> None:
        svc.next_start = now + svc.backoff
        svc.backoff = min(svc.backoff * 2, self.max_backoff)

    def poll(self) -> None:
        """One supervision pass: reap exited children, start what should be running."""
        for svc in self.services:
            if svc.proc is not None and svc.proc.poll() is not None:
                now = self.clock()
                svc.last_exit = svc.proc.returncode
                if now - svc.started_at > 30:
                    svc.backoff = 1.0
                logger.warning(
                    "%s (pid %d) exited with %s; restarting in %.0fs",
                    svc.name,
                    svc.proc.pid,
                    svc.last_exit,
                    svc.backoff,
                )
                svc.proc = None
                self._schedule_retry(svc, now)
            if svc.proc is None:
                self._start(svc)
        self.write_health()

    def health(self) -> dict[str, Any]:
        services = {
            s.name: {
                "pid": s.proc.pid if s.running and s.proc else None,
                "running": s.running,
                "restarts": s.restarts,
                "lastExit": s.last_exit,
                "error": s.last_error,
            }
            for s in self.services
        }
        return {
            "pid": os.getpid(),
            "ready": all(s.running for s in self.services),
            "services": services,
        }

    def write_health(self) -> None:
        text = json.dumps(self.health(), sort_keys=True)
        if text == self._last_health:
            return
        tmp = self.run_dir / "health.json.tmp"
        tmp.write_text(text + "\n")
        os.replace(tmp, self.run_dir / "health.json")
        self._last_health = text

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every child (BIRD then tells its peers); SIGKILL what is left after grace."""
        live = [s for s in reversed(self.services) if s.running and s.proc]
        for s in live:
            assert s.proc is not None
            s.proc.terminate()
        deadline = time.monotonic() + grace
        for s in live:
            assert s.proc is not None
            try:
                s.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(5)
            logger.info("%s stopped", s.name)
            s.proc = None
        self.write_health()
