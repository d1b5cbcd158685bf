"""The lab's daemons: started only in lab namespaces, and a recorded PID is signalled only while it
still names a daemon the lab started (never a process that reused the PID)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from calico_lab import daemons
from calico_lab.state import LabError


@pytest.mark.parametrize("netns", ["", "calt-x", "default"])
def test_daemons_start_only_in_lab_namespaces(netns: str, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="not a lab namespace"):
        daemons.spawn(["true"], netns=netns, log_file=tmp_path / "log")
    assert not (tmp_path / "log").exists()


def test_a_recorded_pid_is_ours_only_while_it_runs_our_program(tmp_path: Path) -> None:
    log = tmp_path / "log"
    # a session leader running "one of ours" (the marker is in its command line)
    ours = daemons.spawn(["sh", "-c", "sleep 30", "calico-node"], netns=None, log_file=log)
    # what a reused PID could be: a session leader running something else, or a marked
    # process that does not lead its own session
    other = daemons.spawn(["sleep", "30"], netns=None, log_file=log)
    member = subprocess.Popen(["sh", "-c", "sleep 30", "calico-node"])
    try:
        assert daemons.alive(ours)
        assert not daemons.alive(other)
        assert not daemons.alive(member.pid)
        daemons.stop(other, grace=0.1)
        daemons.stop(member.pid, grace=0.1)
        assert subprocess.run(["kill", "-0", str(other)], check=False).returncode == 0
        assert member.poll() is None, "stop() signalled a process that is not a lab daemon"
        daemons.stop(ours, grace=2)
        assert not daemons.alive(ours)
    finally:
        member.kill()
        member.wait()
        for pid in (other, ours):  # only while still our running child (never a reused PID)
            try:
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # already reaped
