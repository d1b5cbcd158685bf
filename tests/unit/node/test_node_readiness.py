"""Readiness checks and the agent's problems (felix-status.json, in the agent's format), read by
calico-node, ``--felix-ready`` and logged as they come and go."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from calico.node import readiness


def write_health(run_dir: Path, **running: bool) -> None:
    services = {name: {"running": up} for name, up in running.items()}
    (run_dir / "health.json").write_text(json.dumps({"services": services}))


def write_felix_status(run_dir: Path, problems: list[str], *, in_sync: bool = True) -> None:
    """As the agent does: a temp file renamed over the old one."""
    tmp = run_dir / "felix-status.json.tmp"
    tmp.write_text(json.dumps({"problems": problems, "in_sync": in_sync, "applies": 3}))
    os.replace(tmp, run_dir / "felix-status.json")


PROBLEM = "IPPool ipip-pool: ipipMode Always needs the 'ipip' kernel module, which is missing"


def test_felix_ready_fails_with_the_agents_problems(tmp_path: Path) -> None:
    write_health(tmp_path, felix=True)
    assert readiness.readiness(tmp_path, bird=False, felix=True) == []  # no status file yet
    write_felix_status(tmp_path, [PROBLEM])
    assert readiness.readiness(tmp_path, bird=False, felix=True) == [
        f"Felix is not ready: {PROBLEM}"
    ]
    write_felix_status(tmp_path, [])
    assert readiness.readiness(tmp_path, bird=False, felix=True) == []


def test_felix_ready_fails_until_in_sync(tmp_path: Path) -> None:
    write_health(tmp_path, felix=True)
    write_felix_status(tmp_path, [], in_sync=False)
    assert readiness.readiness(tmp_path, bird=False, felix=True) == [
        "Felix is not ready: not in sync with the datastore yet"
    ]


def test_felix_not_running_and_no_health(tmp_path: Path) -> None:
    assert readiness.readiness(tmp_path, bird=False, felix=True) == [
        "calico-node is not running (no health.json)"
    ]
    write_health(tmp_path, felix=False)
    write_felix_status(tmp_path, [PROBLEM])
    assert readiness.readiness(tmp_path, bird=False, felix=True) == ["felix is not running"]


def test_a_broken_status_file_is_no_problem_list(tmp_path: Path) -> None:
    (tmp_path / "felix-status.json").write_text("{not json")
    assert readiness.felix_problems(tmp_path) == []
    (tmp_path / "felix-status.json").write_text('{"problems": "oops"}')
    assert readiness.felix_problems(tmp_path) == []


def test_problem_log_reports_each_change_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = readiness.ProblemLog(tmp_path)
    caplog.set_level(logging.INFO, logger="calico.node")
    log.poll()
    assert caplog.records == []
    write_felix_status(tmp_path, [PROBLEM])
    log.poll()
    log.poll()  # unchanged file: nothing more
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"calico-felix reports a problem: {PROBLEM}"]
    write_felix_status(tmp_path, [])
    log.poll()
    assert caplog.records[-1].getMessage() == f"calico-felix problem resolved: {PROBLEM}"
    assert log.current == []
