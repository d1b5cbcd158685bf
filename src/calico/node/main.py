"""calico-node: one per host. Start-up (register the Node, pools, ClusterInformation, CNI), then
supervise the parts as child processes until SIGTERM::

    calico-node ─┬─ calico-felix                       (policy agent; unless CALICO_DISABLE_FELIX)
                 ├─ calico-node --allocate-tunnel-addrs (IPIP/VXLAN addresses; backend not none)
                 ├─ calico-bgp                         (datastore -> bird.cfg; backend bird)
                 ├─ bird -f -R -c bird.cfg -s bird.ctl (started once bird.cfg exists; backend bird;
                 │                                      -R: graceful restart recovery)
                 └─ python -m calico.cni.server        (when CNI_BIN_DIR or CALICO_CNI_SERVER is
                                                        set: the CNI launchers hand calls to it;
                                                        socket CALICO_CNI_SOCKET if set; unless
                                                        CALICO_DISABLE_CNI_SERVER)

Per-host paths come from the environment so several hosts can share one filesystem:
``CALICO_RUN_DIR`` (default /var/run/calico: bird.cfg, bird.ctl, calico-node.pid, health.json,
nodename, the agent's felix-status.json) and ``CALICO_LOG_DIR`` (default /var/log/calico).
``calico-node --startup`` runs start-up only. ``CALICO_NETWORKING_BACKEND``: ``bird`` (default),
``vxlan`` (no BIRD, no calico-bgp: the agent routes everything through VXLAN) or ``none``
(policy only: no BGP, no tunnel addresses). Problems the agent reports in felix-status.json are
logged here as they appear and go (:mod:`calico.node.readiness`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from calico.datastore import config as ds_config
from calico.datastore.backend import StoreError
from calico.datastore.client import DatastoreError
from calico.node import readiness, startup
from calico.node.supervisor import Service, Supervisor

logger = logging.getLogger("calico.node")

DEFAULT_RUN_DIR = "/var/run/calico"
DEFAULT_LOG_DIR = "/var/log/calico"


def run_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)


def log_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("CALICO_LOG_DIR") or DEFAULT_LOG_DIR)


def _exe(name: str) -> str:
    """Our own entry points live next to this interpreter (a venv's bin/); else search PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def services(env: Mapping[str, str], settings: startup.NodeSettings) -> list[Service]:
    rd = run_dir(env)
    child_env = {**env, "NODENAME": settings.name, "CALICO_RUN_DIR": str(rd)}
    out: list[Service] = []
    if not startup.truthy(env.get("CALICO_DISABLE_FELIX")):
        out.append(Service("felix", [_exe("calico-felix")], env=child_env))
    if settings.backend != "none":
        out.append(
            Service(
                "allocate-tunnel-addrs",
                [_exe("calico-node"), "--allocate-tunnel-addrs"],
                env=child_env,
            )
        )
    if settings.backend == "bird":
        cfg = rd / "bird.cfg"
        out.append(Service("bgp", [_exe("calico-bgp")], env=child_env))
        out.append(
            Service(
                "bird",
                [
                    env.get("CALICO_BIRD_BIN", "bird"),
                    "-f",
                    "-R",  # graceful restart recovery: keep the kernel's routes until BGP is back
                    "-c",
                    str(cfg),
                    "-s",
                    str(rd / "bird.ctl"),
                ],
                ready_to_start=cfg.exists,
                env=child_env,
                # calico-node crashed: no Cease to the peers (they keep our routes, graceful
                # restart), the kernel keeps BIRD's; an orderly stop still sends SIGTERM
                death_signal=signal.SIGKILL,
            )
        )
    wanted = env.get("CNI_BIN_DIR") or startup.truthy(env.get("CALICO_CNI_SERVER"))
    if wanted and not startup.truthy(env.get("CALICO_DISABLE_CNI_SERVER")):
        # listens on the launchers' default socket (per network namespace); optional: without
        # it each CNI call runs in its own process
        argv = [sys.executable, "-m", "calico.cni.server"]
        if env.get("CALICO_CNI_SOCKET"):  # the template the launchers were installed with
            argv += ["--socket", env["CALICO_CNI_SOCKET"]]
        out.append(Service("cni", argv, env=child_env))
    return out


def running_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is a live calico-node."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"calico-node" in cmdline or b"calico.node" in cmdline else None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="calico-node", description=__doc__.split("\n")[0])
    parser.add_argument("--startup", action="store_true", help="run start-up only, then exit")
    parser.add_argument("--bird-ready", action="store_true", help="readiness: BIRD up, peers up")
    parser.add_argument(
        "--felix-ready", action="store_true", help="readiness: felix running, in sync, no problems"
    )
    parser.add_argument(
        "--allocate-tunnel-addrs",
        action="store_true",
        help="keep this node's IPIP/VXLAN tunnel addresses right (a calico-node child service)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.bird_ready or args.felix_ready:
        problems = readiness.readiness(
            run_dir(os.environ), bird=args.bird_ready, felix=args.felix_ready
        )
        for line in problems:
            print(f"calico/node is not ready: {line}", file=sys.stderr)
        sys.exit(1 if problems else 0)
    logging.basicConfig(
        level=os.environ.get("CALICO_NODE_LOGLEVEL", "INFO").upper(),
        format="%(asctime)s [%(levelname)s] calico-node: %(message)s",
    )
    env = dict(os.environ)
    if args.allocate_tunnel_addrs:
        _allocate_tunnel_addrs(env)
        return
    other = running_pid(run_dir(env) / "calico-node.pid")
    if not args.startup and other is not None and other != os.getpid():
        print(
            f"calico-node: already running with run dir {run_dir(env)} (pid {other})",
            file=sys.stderr,
        )
        sys.exit(1)
    try:
        settings = startup.settings_from_env(env)
        client = ds_config.load(env=env).client()
        startup.run_startup(client, env)
    except (ValueError, DatastoreError) as exc:  # StartupError, ConfigError, ValidationError, ...
        print(f"calico-node: {exc}", file=sys.stderr)
        sys.exit(1)
    except StoreError as exc:
        print(f"calico-node: datastore error: {exc}", file=sys.stderr)
        sys.exit(1)
    if args.startup:
        return
    _run(env, settings)


def _run(env: Mapping[str, str], settings: startup.NodeSettings) -> None:
    """Start the services and supervise them until SIGTERM or SIGINT."""
    rd, ld = run_dir(env), log_dir(env)
    rd.mkdir(parents=True, exist_ok=True)
    ld.mkdir(parents=True, exist_ok=True)
    (rd / "nodename").write_text(f"{settings.name}\n")  # Calico caches it so (for calicoctl)
    pid_file = rd / "calico-node.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    sup = Supervisor(services(env, settings), run_dir=rd, log_dir=ld)
    felix_problems = readiness.ProblemLog(rd)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logger.info(
        "calico-node %s running: %s",
        settings.name,
        ", ".join(s.name for s in sup.services) or "no services",
    )
    try:
        while not stop.is_set():
            sup.poll()
            felix_problems.poll()
            stop.wait(0.5)
    finally:
        sup.stop()
        try:
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except OSError:
            pass
        logger.info("calico-node stopped")


def _allocate_tunnel_addrs(env: Mapping[str, str]) -> None:
    """The ``allocate-tunnel-addrs`` service: run until SIGTERM (see calico.node.tunnels_watch)."""
    from calico.node import tunnels_watch

    try:
        name = startup.settings_from_env(env).name
        cfg = ds_config.load(env=env)
        cfg.backend().close()  # checks the configuration
    except ValueError as exc:
        print(f"calico-node: {exc}", file=sys.stderr)
        sys.exit(1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tunnels_watch.run(cfg.backend, name, stop)
