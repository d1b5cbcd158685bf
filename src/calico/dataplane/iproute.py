"""The drivers' seam to iproute2: ``ip`` and ``bridge`` (JSON read-back, ``-batch`` writes).

Drivers take a ``Runner``; the real one runs the tools (in a named network namespace, or in the
agent's own), tests pass a fake that records batches and answers reads.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from calico.lib import cmd


class Runner(Protocol):
    def run(self, argv: list[str], *, input: str | None = None) -> str: ...


class IPRoute2:
    """Runs ``ip`` / ``bridge`` (raises ``cmd.CmdError`` on a non-zero exit)."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns

    def run(self, argv: list[str], *, input: str | None = None) -> str:
        return cmd.run(cmd.netns_argv(self._netns, argv), input=input).stdout


def read_json(runner: Runner, argv: list[str]) -> list[dict[str, Any]]:
    """``argv`` (a ``-j`` read) decoded; a missing device reads as nothing."""
    try:
        raw = runner.run(argv)
    except cmd.CmdError as exc:
        if "does not exist" in exc.stderr or "Cannot find device" in exc.stderr:
            return []
        raise
    data = json.loads(raw or "[]")
    return [x for x in data if isinstance(x, dict)] if isinstance(data, list) else []


def batch(runner: Runner, tool: str, cmds: list[str]) -> None:
    """One ``<tool> -force -batch -`` for ``cmds`` (every line is tried; CmdError if any failed)."""
    if cmds:
        runner.run([tool, "-force", "-batch", "-"], input="\n".join(cmds) + "\n")
