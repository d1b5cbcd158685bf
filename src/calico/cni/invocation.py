"""One CNI invocation: run a handler on (command, stdin, env) and turn the outcome into what the
runtime reads: the result JSON or the spec's error JSON on stdout, an exit code, messages on stderr,
and lines for the config's ``log_file_path``.

Used by both plugins in-process (:func:`serve`) and by the CNI server (:func:`execute`, one call per
thread: the message sinks are thread-local).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from calico.cni.netconf import (
    ERR_IPAM,
    ERR_TRY_AGAIN,
    ERR_UNEXPECTED,
    SUPPORTED_VERSIONS,
    CNIError,
)
from calico.datastore.backend import StoreError, Unavailable
from calico.ipam.errors import IPAMError

Handler = Callable[[str, bytes, Mapping[str, str]], "dict[str, Any] | None"]


def serve(handler: Handler) -> int:
    """Read stdin, run ``handler`` and print its result or the spec's error JSON; the exit code."""
    data = sys.stdin.buffer.read()
    rc, out, err = execute(handler, os.environ.get("CNI_COMMAND", ""), data, os.environ)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


_sink = threading.local()


def warn(msg: str) -> None:
    """A message for the runtime's log: the plugin's stderr (in the server: that call's reply),
    and the config's ``log_file_path`` when set."""
    lines: list[str] | None = getattr(_sink, "lines", None)
    if lines is None:
        sys.stderr.write(msg + "\n")
    else:
        lines.append(msg + "\n")
    note(msg)


def note(msg: str) -> None:
    """A line for ``log_file_path`` only (what a successful call did)."""
    log: list[str] | None = getattr(_sink, "log", None)
    if log is not None:
        log.append(msg)


def mark(label: str) -> None:
    """Record a phase boundary of this call (the server logs them: ``served ... [ipam 3.1]``)."""
    marks: list[tuple[str, int]] | None = getattr(_sink, "marks", None)
    if marks is not None:
        marks.append((label, time.perf_counter_ns()))


def phases() -> str:
    """This call's phases so far: ``"ipam 3.1, link 0.2, ..."`` (ms since the previous mark)."""
    marks: list[tuple[str, int]] = getattr(_sink, "marks", None) or []
    out = []
    for (_, t0), (label, t1) in itertools.pairwise(marks):
        out.append(f"{label} {(t1 - t0) / 1e6:.1f}")
    return ", ".join(out)


def execute(
    handler: Handler, command: str, data: bytes, env: Mapping[str, str]
) -> tuple[int, str, str]:
    """One CNI call: (exit code, stdout text, stderr text). Used in-process and by the server."""
    _sink.lines, _sink.log = [], []
    _sink.marks = [("start", time.perf_counter_ns())]
    try:
        rc, out = _execute(handler, command, data, env)
        _write_log_file(data, _sink.log)
        return rc, out, "".join(_sink.lines)
    finally:
        _sink.lines = _sink.log = None


def _write_log_file(data: bytes, lines: list[str]) -> None:
    """Append this call's lines to the config's ``log_file_path`` (Calico's option), if any."""
    if not lines:
        return
    try:
        path = json.loads(data).get("log_file_path")
    except (ValueError, AttributeError):
        return
    if not isinstance(path, str) or not path:
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as f:
            f.writelines(f"{stamp} [{os.getpid()}] {line}\n" for line in lines)
    except OSError:
        pass  # logging must never fail a CNI call


def _execute(
    handler: Handler, command: str, data: bytes, env: Mapping[str, str]
) -> tuple[int, str]:
    try:
        out = handler(command, data, env)
    except CNIError as exc:
        err = exc
    except Unavailable as exc:
        err = CNIError(ERR_TRY_AGAIN, f"datastore unavailable: {exc}")
    except IPAMError as exc:
        err = CNIError(ERR_IPAM, f"IPAM: {exc}")
    except StoreError as exc:
        err = CNIError(ERR_TRY_AGAIN, f"datastore: {exc}")
    except Exception as exc:  # still the spec's error JSON, never a bare traceback
        err = CNIError(ERR_UNEXPECTED, f"unexpected error: {type(exc).__name__}: {exc}")
    else:
        return 0, (json.dumps(out) + "\n") if out is not None else ""
    warn(f"calico: {command}: {err.msg}")
    return 1, json.dumps(err.to_json(_error_version(data))) + "\n"


def _error_version(data: bytes) -> str:
    """The cniVersion the caller asked for (also when we do not support it: the runtime reads
    the error in its own version), else the newest we speak."""
    try:
        v = json.loads(data).get("cniVersion")
    except (ValueError, AttributeError):
        return SUPPORTED_VERSIONS[-1]
    return v if isinstance(v, str) and v else SUPPORTED_VERSIONS[-1]
