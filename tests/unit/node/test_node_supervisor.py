"""The supervisor restarts children that die (after a back-off), tolerates missing binaries,
waits for a start precondition, and reports health."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from calico.node.supervisor import Service, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def running(svc: Service) -> bool:
    """Read afresh each time: the child's state changes between two reads of the property."""
    return svc.running


def _wait_exit(svc: Service) -> None:
    assert svc.proc is not None
    svc.proc.wait(5)


def test_restart_backoff_missing_binary_and_precondition(tmp_path: Path) -> None:
    clock = Clock()
    flag = tmp_path / "cfg"
    sleeper = Service("sleeper", ["sleep", "30"])
    missing = Service("missing", [str(tmp_path / "no-such-binary")])
    gated = Service("gated", ["sleep", "30"], ready_to_start=flag.exists)
    sup = Supervisor(
        [sleeper, missing, gated], run_dir=tmp_path, log_dir=tmp_path / "log", clock=clock
    )
    try:
        sup.poll()
        assert running(sleeper)
        assert not running(gated)
        assert not running(missing)
        assert "cannot start" in missing.last_error
        health = json.loads((tmp_path / "health.json").read_text())
        assert health["ready"] is False
        assert health["services"]["sleeper"]["running"] is True
        assert health["services"]["missing"]["error"].startswith("cannot start")

        first = sleeper.proc.pid if sleeper.proc else 0
        os.kill(first, signal.SIGKILL)
        _wait_exit(sleeper)
        sup.poll()  # reaped; restart scheduled 1 s later
        assert not running(sleeper)
        assert sleeper.last_exit == -signal.SIGKILL
        clock.now += 1.01
        flag.write_text("x")
        sup.poll()
        assert running(sleeper)
        assert sleeper.proc is not None
        assert sleeper.proc.pid != first
        assert sleeper.restarts == 1
        assert running(gated)

        # back-off doubles while it keeps dying quickly
        assert sleeper.proc is not None
        sleeper.proc.kill()
        _wait_exit(sleeper)
        sup.poll()
        clock.now += 1.01
        sup.poll()
        assert not running(sleeper)  # now 2 s
        clock.now += 1.0
        sup.poll()
        assert running(sleeper)
        assert sleeper.restarts == 2
        assert (tmp_path / "log" / "sleeper" / "current").exists()
    finally:
        sup.stop(grace=2)
    assert not running(sleeper)
    assert not running(gated)
    assert json.loads((tmp_path / "health.json").read_text())["services"]["gated"]["pid"] is None


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    stubborn = Service("stubborn", ["sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"])
    sup = Supervisor([stubborn], run_dir=tmp_path, log_dir=tmp_path)
    sup.poll()
    proc = stubborn.proc
    assert proc is not None
    time.sleep(0.2)  # let the shell install its trap
    t0 = time.monotonic()
    sup.stop(grace=0.5)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - t0 < 5


PARENT = """
import sys, time
from pathlib import Path
from calico.node.supervisor import Service, Supervisor
sig = int(sys.argv[2])
svc = Service("child", ["sh", "-c", "trap '' TERM; echo $$ > " + sys.argv[1] + "; exec sleep 60"],
              death_signal=sig)
Supervisor([svc], run_dir=Path(sys.argv[3]), log_dir=Path(sys.argv[3])).poll()
time.sleep(60)
"""


def _orphan_after_parent_killed(tmp_path: Path, sig: int) -> tuple[int, bool]:
    """Start a supervisor whose child ignores SIGTERM, kill -9 the supervisor; (child pid, whether
    the child still runs a moment later)."""
    import subprocess
    import sys

    pid_file = tmp_path / f"child-{sig}.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(pid_file), str(sig), str(tmp_path)]
    )
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    time.sleep(0.2)  # the child's trap is in place before it execs sleep (which keeps it)
    child = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    time.sleep(0.5)
    try:
        os.kill(child, 0)
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        alive = state not in ("Z", "X")
    except (ProcessLookupError, FileNotFoundError):
        alive = False
    return child, alive


def test_a_child_gets_its_death_signal_when_calico_node_dies(tmp_path: Path) -> None:
    """BIRD is given SIGKILL (a crashed calico-node must not make it send its peers a Cease);
    the others SIGTERM: a child that ignores SIGTERM outlives a killed parent, with SIGKILL not."""
    child, alive = _orphan_after_parent_killed(tmp_path, signal.SIGKILL)
    assert not alive
    child, alive = _orphan_after_parent_killed(tmp_path, signal.SIGTERM)
    try:
        assert alive  # it ignored the SIGTERM it got: the signal is what the test says
    finally:
        os.kill(child, signal.SIGKILL)
