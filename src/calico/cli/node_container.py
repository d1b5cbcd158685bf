"""``calicoctl node run`` in container form: the ``calico-py/node`` image under docker or podman.

As the integration guide runs ``calico/node``::

    <engine> run --net=host --privileged --pid=host --name=calico-node -d --restart=always \\
      -e ETCD_ENDPOINTS=... -e NODENAME=... -e IP= -e IP6= -e AS= -e NO_DEFAULT_POOLS= \\
      -e CALICO_NETWORKING_BACKEND=bird [-e CALICO_*=... -e FELIX_*=...] \\
      -v /var/run/calico:/var/run/calico -v /var/log/calico:/var/log/calico \\
      -v /lib/modules:/lib/modules:ro calico-py/node:<version>

``--pid=host`` (not in the guide) makes the pid calico-node writes to ``calico-node.pid`` a host
pid, so ``calicoctl node status`` and the start-up wait read it as for the process form. Every
``CALICO_*`` and ``FELIX_*`` variable of the caller is passed on; etcd TLS files are mounted
read-only under ``/etc/calico/certs`` and the variables point there. The guide's Docker-libnetwork
mounts (``/run/docker/plugins``, ``docker.sock``) have no use here.

Engine choice (``--engine``, default ``$CALICO_NODE_ENGINE`` or ``auto``): ``auto`` takes docker
when its daemon answers, else podman, and only if that engine has the image (no registry holds
it); otherwise the process form runs and the command says why. ``docker``/``podman`` insist on that
engine; ``none`` is the process form.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import calico
from calico.lib import cmd

ENGINES = ("docker", "podman")
CONTAINER = "calico-node"
DEFAULT_IMAGE = f"calico-py/node:{calico.__version__}"
# the guide's variables: always passed, empty when unset (as its systemd unit does)
GUIDE_ENV = ("ETCD_ENDPOINTS", "NODENAME", "IP", "IP6", "AS", "NO_DEFAULT_POOLS",
             "CALICO_NETWORKING_BACKEND")  # fmt: skip
OPTIONAL_ENV = ("IP_AUTODETECTION_METHOD", "IP6_AUTODETECTION_METHOD", "DATASTORE_TYPE")
PASS_PREFIXES = ("CALICO_", "FELIX_")
TLS_ENV = {"ETCD_CA_CERT_FILE": "ca.crt", "ETCD_CERT_FILE": "cert.crt", "ETCD_KEY_FILE": "key.pem"}
CERT_DIR = "/etc/calico/certs"
OURS = frozenset({"CALICO_NODE_ENGINE"})  # calicoctl's own, not calico-node's
MODULES = "/lib/modules"
DEFAULT_DIRS = {"CALICO_RUN_DIR": "/var/run/calico", "CALICO_LOG_DIR": "/var/log/calico"}


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Choice:
    engine: str | None  # path of docker/podman, or None: the process form
    reason: str  # why (printed when falling back to the process form)


def _quiet(argv: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    try:
        return cmd.run_process(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))


def usable(engine: str) -> bool:
    """The engine answers (docker: its daemon is up; podman: it works at all)."""
    return _quiet([engine, "info", "--format", "{{.Host.Arch}}" if _is_podman(engine)
                   else "{{.ServerVersion}}"]).returncode == 0  # fmt: skip


def _is_podman(engine: str) -> bool:
    return Path(engine).name.startswith("podman")


def has_image(engine: str, image: str) -> bool:
    return _quiet([engine, "image", "inspect", image]).returncode == 0


def choose(
    wanted: str,
    image: str,
    *,
    which: Callable[[str], str | None] = shutil.which,
    answers: Callable[[str], bool] = usable,
    holds: Callable[[str, str], bool] = has_image,
) -> Choice:
    """Which engine runs the node (see the module doc); raises EngineError for an explicit one
    that is missing or not answering. ``which``/``answers``/``holds``: the probes (tests)."""
    if wanted == "none":
        return Choice(None, "--engine none")
    if wanted in ENGINES:
        path = which(wanted)
        if path is None or not answers(path):
            raise EngineError(f"--engine {wanted}: {wanted} is not installed or not answering")
        return Choice(path, "")
    if wanted != "auto":
        raise EngineError(f"--engine: {wanted!r} is not one of auto, docker, podman, none")
    tried = []
    for name in ENGINES:
        path = which(name)
        if path is None:
            continue
        if not answers(path):
            tried.append(f"{name} is not answering")
        elif not holds(path, image):
            tried.append(f"{name} has no image {image} (make images; {name} load -i "
                         "build/images/node.tar)")  # fmt: skip
        else:
            return Choice(path, "")
    return Choice(None, "; ".join(tried) or "neither docker nor podman is installed")


def container_env(env: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(-e variables, read-only file mounts) for the container from the node's environment."""
    out = {name: env.get(name, "") for name in GUIDE_ENV}
    out.update({n: env[n] for n in OPTIONAL_ENV if env.get(n)})
    out.update({k: v for k, v in env.items() if k.startswith(PASS_PREFIXES) and k not in OURS})
    mounts = []
    for var, name in TLS_ENV.items():
        if env.get(var):
            out[var] = f"{CERT_DIR}/{name}"
            mounts.append((env[var], out[var]))
    return out, mounts


def host_dirs(env: Mapping[str, str]) -> list[str]:
    """The run and log directories, shared with the container at the same paths."""
    return [env.get(k) or v for k, v in DEFAULT_DIRS.items()]


def run_argv(
    engine: str,
    image: str,
    env: Mapping[str, str],
    *,
    detach: bool = True,
    modules: bool = True,
) -> list[str]:
    """The engine's command line for ``env`` (the node's environment, as for the process form).
    ``modules``: mount the host's /lib/modules (when it has one; podman refuses a missing path)."""
    variables, files = container_env(env)
    argv = [engine, "run", "--net=host", "--privileged", "--pid=host", f"--name={CONTAINER}"]
    argv += ["-d", "--restart=always"] if detach else ["--rm"]
    for name, value in variables.items():
        argv += ["-e", f"{name}={value}"]
    for d in host_dirs(env):
        argv += ["-v", f"{d}:{d}"]
    if modules:
        argv += ["-v", f"{MODULES}:{MODULES}:ro"]
    for src, dest in files:
        argv += ["-v", f"{src}:{dest}:ro"]
    return [*argv, image]


def show(argv: Sequence[str]) -> str:
    """A command line as a copy-pasteable shell command, one option per line."""
    lines, i = [shlex.join(argv[:2])], 2
    while i < len(argv):
        take = 2 if argv[i] in ("-e", "-v") and i + 1 < len(argv) else 1
        lines.append(shlex.join(argv[i : i + take]))
        i += take
    return " \\\n  ".join(lines)


def state(engine: str) -> tuple[str, int] | None:
    """The calico-node container's (state, restart count), or None when there is none."""
    proc = _quiet([engine, "inspect", "--format", "{{.State.Status}} {{.RestartCount}}", CONTAINER])
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 2 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _failed(now: tuple[str, int] | None) -> bool:
    """It exited, or exited and was restarted (the engine's restart policy hides the first)."""
    return now is not None and (now[1] > 0 or now[0] not in ("running", "created"))


def start(argv: Sequence[str], *, started: Callable[[], bool], timeout: float) -> str:
    """Run ``argv`` (detached) and wait until ``started()``; the container id. EngineError with the
    container's log when it stops (the container is then removed) or the time runs out."""
    engine = argv[0]
    current = state(engine)
    if current is not None and current[0] == "running":
        raise EngineError(f"calico-node is already running on this host (container {CONTAINER})")
    if current is not None:  # left over from an earlier run: replace it
        _quiet([engine, "rm", "-f", CONTAINER])
    proc = _quiet(argv, timeout=120)
    if proc.returncode != 0:
        raise EngineError(f"{Path(engine).name} run failed: {proc.stderr.strip()}")
    deadline = time.monotonic() + timeout
    now = state(engine)
    while time.monotonic() < deadline and not _failed(now):
        if started():
            return proc.stdout.strip()
        time.sleep(0.2)
        now = state(engine)
    logs = _quiet([engine, "logs", "--tail", "20", CONTAINER])
    tail = (logs.stdout + logs.stderr).strip()
    if not _failed(now):  # slow, not failed: leave it to finish
        raise EngineError(f"calico-node did not finish start-up within {timeout:.0f}s; it is "
                          f"still running (container {CONTAINER}):\n{tail}")  # fmt: skip
    _quiet([engine, "rm", "-f", CONTAINER])  # no restart loop left behind
    raise EngineError(f"calico-node stopped during start-up (container {CONTAINER} removed):"
                      f"\n{tail}")  # fmt: skip
