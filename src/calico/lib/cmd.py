"""The one place that runs external commands (the Felix cmd-shim seam).

Everything that execs ``ip``, ``nft``, ``bird`` or ``nsenter`` goes through this module, so tests
can inject a fake runner and the lint rules on subprocess calls (ruff S603/S607) have their only
exemptions here. :func:`run` is the usual form (text, captured, checked); :func:`run_process`,
:func:`start` and :func:`exec_replace` are for the callers that need subprocess's own options
(bytes, an environment, a log file, passed descriptors), a long-running child, or an exec.

Commands are named as the caller wrote them (``ip``, not ``/usr/sbin/ip``) and found on ``PATH``,
as an administrator running them by hand would; a caller that must not depend on ``PATH``
resolves the path itself (``shutil.which``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


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
    proc = subprocess.run(  # noqa: S603 - the module every command goes through
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise CmdError(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def run_process(
    argv: Sequence[str], *, check: bool, **options: Any
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run(argv, check=check, **options)``, for a caller that needs its options."""
    return subprocess.run(list(argv), check=check, **options)  # noqa: S603 - see the module doc


def start(argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` as a child process (``subprocess.Popen``'s options); the caller waits."""
    return subprocess.Popen(list(argv), **options)  # noqa: S603 - see the module doc


def exec_replace(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace this process with ``argv`` (found on ``PATH``), with environment ``env``."""
    os.execvpe(argv[0], list(argv), env)


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
