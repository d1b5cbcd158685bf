"""Readiness (``calico-node --bird-ready`` / ``--felix-ready``) and the agent's reported problems.

The agent (calico-felix) rewrites ``$CALICO_RUN_DIR/felix-status.json`` atomically::

    {"problems": ["IPPool p1 wants IPIP but this kernel has no 'ipip' module", ...],
     "in_sync": true, "applies": 12}

``--felix-ready`` fails while felix is not running, while that file says it is not in sync yet,
or while it lists problems (each is printed); ``--bird-ready`` fails until every BGP session is
Established. :class:`ProblemLog` is how calico-node puts the agent's problems in its own log:
each new problem once when it appears, and a line when it is gone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger("calico.node")

FELIX_STATUS = "felix-status.json"


def felix_status(run_dir: Path) -> dict[str, Any] | None:
    """The agent's status file, or None when there is none (yet) or it does not parse."""
    try:
        data = json.loads((run_dir / FELIX_STATUS).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def felix_problems(run_dir: Path) -> list[str]:
    status = felix_status(run_dir) or {}
    problems = status.get("problems") or []
    return [str(p) for p in problems] if isinstance(problems, list) else []


def readiness(run_dir: Path, *, bird: bool, felix: bool) -> list[str]:
    """Calico's ``-bird-ready`` / ``-felix-ready`` checks: the reasons this node is not ready."""
    from calico.bgp import birdctl

    try:
        health = json.loads((run_dir / "health.json").read_text())
    except (OSError, ValueError):
        return ["calico-node is not running (no health.json)"]
    services: Mapping[str, Any] = health.get("services", {})
    problems = []
    for name, wanted in (("felix", felix), ("bird", bird)):
        if wanted and not services.get(name, {}).get("running"):
            problems.append(f"{name} is not running")
    if felix and not problems:
        status = felix_status(run_dir)
        if status is not None and status.get("in_sync") is False:
            problems.append("Felix is not ready: not in sync with the datastore yet")
        problems += [f"Felix is not ready: {p}" for p in felix_problems(run_dir)]
    if bird and not any(p.startswith("bird ") for p in problems):
        try:
            protos = birdctl.protocols(run_dir / "bird.ctl")
        except birdctl.BirdError as exc:
            return [*problems, f"BIRD is not ready: {exc}"]
        for p in protos:
            if p.proto == "BGP" and p.info.split()[:1] != ["Established"]:
                addr = p.name.partition("_")[2].replace("_", ".")
                problems.append(f"BIRD is not ready: BGP not established with {addr}")
    return problems


class ProblemLog:
    """Logs the agent's problems as they appear and disappear (read when the file changes)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / FELIX_STATUS
        self._stamp: tuple[int, int] | None = None
        self.current: list[str] = []

    def poll(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        now = felix_problems(self.path.parent) if stamp else []
        for p in now:
            if p not in self.current:
                logger.error("calico-felix reports a problem: %s", p)
        for p in self.current:
            if p not in now:
                logger.info("calico-felix problem resolved: %s", p)
        self.current = now
