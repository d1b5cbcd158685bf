"""The one place that runs external commands (the Felix cmd-shim seam).

Everything that execs ``ip``, ``nft``, ``bird`` or ``nsenter`` goes through :func:`run`, so tests
can inject a fake runner and the lint rule on subprocess calls has a single exemption.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class CmdError(Exception):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(argv)}: exit {returncode}: {self.stderr}")


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float | None = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise CmdError on a non-zero exit when ``check``."""
    proc = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise CmdError(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs in the named network namespace (``None``: this one).

    Only ``None`` means "this namespace": an empty name is refused, so a name that failed to
    reach us never turns into a command in the caller's (possibly the root) namespace.
    """
    if netns is None:
        return list(argv)
    if not netns or "/" in netns or netns in (".", ".."):
        raise ValueError(f"network namespace name {netns!r} is not a namespace name")
    return ["ip", "netns", "exec", netns, *argv]
