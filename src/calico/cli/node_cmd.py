"""``calicoctl node run`` and ``calicoctl node status``.

``node run`` starts calico-node on this host and waits until its start-up has finished: as the
``calico-py/node`` container under docker or podman when one of them has the image (the guide's
form; :mod:`calico.cli.node_container`, ``--engine``, ``--node-image``), else as a background
process with the same environment variables (saying why). ``--init-system`` runs the process in
the foreground instead (for systemd). ``node status`` reads ``<CALICO_RUN_DIR>/calico-node.pid``
and asks BIRD over ``<CALICO_RUN_DIR>/bird.ctl`` (``birdc show protocols``), printing Calico's
table (when the node runs BIRD), then this node's tunnel addresses and the problems the agent
reports (:mod:`calico.cli.node_info`).

This module must not import calico.node or calico.bgp (the layers forbid it), so it starts
calico-node by its entry point and parses ``birdc`` output itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from calico.lib import cmd as lib_cmd

DEFAULT_RUN_DIR = "/var/run/calico"
DEFAULT_LOG_DIR = "/var/log/calico"
PEER_TYPES = {"Mesh": "node-to-node mesh", "Global": "global", "Node": "node specific"}


def _run_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)


def node_pid(run_dir: Path) -> int | None:
    """The pid of the calico-node recorded in run_dir, if that process is alive."""
    try:
        pid = int((run_dir / "calico-node.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"calico-node" in cmdline or b"calico.node" in cmdline else None


@click.group()
def node() -> None:
    """Run calico-node on this host and show its status."""


def _node_env(ctx: click.Context, opts: Mapping[str, Any]) -> dict[str, str]:
    from calico.datastore import config as ds_config

    env = dict(os.environ)
    cfg = ds_config.load((ctx.find_root().obj or {}).get("config_file"), env)
    env["ETCD_ENDPOINTS"] = cfg.endpoints
    for var, value in (
        ("ETCD_CA_CERT_FILE", cfg.ca_cert_file),
        ("ETCD_CERT_FILE", cfg.cert_file),
        ("ETCD_KEY_FILE", cfg.key_file),
    ):
        if value:
            env[var] = value
    mapping = {
        "name": "NODENAME",
        "ip": "IP",
        "ip6": "IP6",
        "as_number": "AS",
        "ip_autodetection_method": "IP_AUTODETECTION_METHOD",
        "ip6_autodetection_method": "IP6_AUTODETECTION_METHOD",
        "backend": "CALICO_NETWORKING_BACKEND",
        "log_dir": "CALICO_LOG_DIR",
    }
    for opt, var in mapping.items():
        if opts.get(opt) is not None:
            env[var] = str(opts[opt])
    if opts.get("no_default_ippools"):
        env["NO_DEFAULT_POOLS"] = "true"
    return env


def _calico_node_argv() -> list[str]:
    local = Path(sys.executable).parent / "calico-node"
    if local.exists():
        return [str(local)]
    found = shutil.which("calico-node")
    return [found] if found else [sys.executable, "-m", "calico.node"]


@node.command("run")
@click.option("--name", default=None, help="node name (default: $NODENAME or the hostname)")
@click.option("--ip", default=None, help="IPv4 address, 'autodetect' or 'none'")
@click.option("--ip6", default=None, help="IPv6 address, 'autodetect' or 'none'")
@click.option("--as", "as_number", default=None, help="this node's AS number")
@click.option(
    "--ip-autodetection-method", default=None, help="first-found, interface=, can-reach=…"
)
@click.option("--ip6-autodetection-method", default=None)
@click.option("--backend", type=click.Choice(["bird", "vxlan", "none"]), default=None)
@click.option("--log-dir", default=None, help="default $CALICO_LOG_DIR or /var/log/calico")
@click.option("--no-default-ippools", is_flag=True, help="do not create the default IP pools")
@click.option("--init-system", is_flag=True, help="run in the foreground (for systemd)")
@click.option(
    "--node-image", default=None, help="calico-node image (default calico-py/node:<version>)"
)
@click.option(
    "--engine",
    envvar="CALICO_NODE_ENGINE",
    default="auto",
    show_default=True,
    help="auto, docker, podman, or none (a host process)",
)
@click.option("--dryrun", is_flag=True, help="print what would run, start nothing")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for start-up")
@click.pass_context
def run(
    ctx: click.Context,
    /,
    init_system: bool,
    dryrun: bool,
    timeout: float,
    node_image: str | None,
    engine: str,
    **opts: Any,
) -> None:
    """Start calico-node on this host: the calico-py/node container, or a host process."""
    from calico.datastore import config as ds_config

    try:
        env = _node_env(ctx, opts)
    except ds_config.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not init_system and _run_container(env, engine, node_image, dryrun=dryrun, timeout=timeout):
        return
    argv = _calico_node_argv()
    shown = {k: v for k, v in env.items() if k not in os.environ or os.environ[k] != v}
    if dryrun:
        for k, v in sorted(shown.items()):
            click.echo(f"{k}={v}")
        click.echo(" ".join(argv))
        return
    run_dir = _run_dir(env)
    pid = node_pid(run_dir)
    if pid is not None:
        raise click.ClickException(f"calico-node is already running on this host (pid {pid})")
    if init_system:
        os.execve(argv[0], argv, env)
    _start_background(argv, env, run_dir, timeout)


def _run_container(
    env: dict[str, str], engine: str, image: str | None, *, dryrun: bool, timeout: float
) -> bool:
    """The container form (calico.cli.node_container); False when the process form is to run."""
    from calico.cli import node_container as nc

    image = image or nc.DEFAULT_IMAGE
    try:
        choice = nc.choose(engine, image)
    except nc.EngineError as exc:
        raise click.ClickException(str(exc)) from None
    if choice.engine is None:
        if engine != "none":
            click.echo(f"Running calico-node as a host process: {choice.reason}", err=True)
        return False
    argv = nc.run_argv(choice.engine, image, env, modules=Path(nc.MODULES).is_dir())
    if dryrun:
        click.echo(nc.show(argv))
        return True
    run_dir = _run_dir(env)
    pid = node_pid(run_dir)
    if pid is not None:
        raise click.ClickException(f"calico-node is already running on this host (pid {pid})")
    for d in nc.host_dirs(env):  # podman refuses to mount a missing directory
        Path(d).mkdir(parents=True, exist_ok=True)
    click.echo(f"Running the {image} container with {Path(choice.engine).name}...")
    try:
        nc.start(argv, started=lambda: node_pid(run_dir) is not None, timeout=timeout)
    except nc.EngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("Calico node started successfully.")
    return True


def _start_background(
    argv: Sequence[str], env: dict[str, str], run_dir: Path, timeout: float
) -> None:
    log_dir = Path(env.get("CALICO_LOG_DIR") or DEFAULT_LOG_DIR) / "node"
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "current"
    offset = log_file.stat().st_size if log_file.exists() else 0
    with open(log_file, "ab") as log:
        proc = lib_cmd.start(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    click.echo(f"Running calico-node (pid {proc.pid}); log: {log_file}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_bytes()[offset:].decode(errors="replace").strip()
            raise click.ClickException(f"calico-node exited with {proc.returncode}:\n{tail}")
        if node_pid(run_dir) == proc.pid:
            click.echo("Calico node started successfully.")
            return
        time.sleep(0.1)
    raise click.ClickException(
        f"calico-node did not finish start-up within {timeout:.0f}s; see {log_file}"
    )


def parse_protocols(text: str) -> list[list[str]]:
    """``birdc show protocols`` -> [name, proto, table, state, since, info] rows."""
    rows, started = [], False
    for line in text.splitlines():
        if not started:
            started = line.startswith("Name ")
            continue
        parts = line.split(None, 5)
        if len(parts) >= 5:
            info = " ".join(parts[5].split()) if len(parts) > 5 else ""
            rows.append([*parts[:5], info])
    return rows


def peer_rows(protocols: list[list[str]]) -> list[list[str]]:
    """Calico's BGP peer table rows from BIRD protocols named Mesh_/Node_/Global_<address>."""
    out = []
    for name, proto, _table, state, since, info in protocols:
        kind, _, addr = name.partition("_")
        if proto != "BGP" or kind not in PEER_TYPES or not addr:
            continue
        address = _address(addr)
        out.append([address, PEER_TYPES[kind], state, since, info])
    return out


def _address(text: str) -> str:
    """``10_0_0_2`` -> ``10.0.0.2``; ``fd00__2`` -> ``fd00::2`` (protocol names carry addresses)."""
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(text.replace("_", ".")))
    except ValueError:
        return text.replace("_", ":")


def _center(text: str, width: int) -> str:
    """Centre like Calico's table writer: an odd extra space goes to the right."""
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=False)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head = "|" + "|".join(f" {_center(h, w)} " for h, w in zip(header, widths, strict=True)) + "|"
    lines = [sep, head, sep]
    lines += [
        "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(r, widths, strict=True)) + "|"
        for r in rows
    ]
    lines.append(sep)
    return "\n".join(lines)


@node.command("status")
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show this host's calico-node, BGP sessions, tunnel addresses and reported problems."""
    from calico.cli import node_info

    run_dir = _run_dir(os.environ)
    if node_pid(run_dir) is None:
        click.echo("Calico process is not running.")
        sys.exit(1)
    click.echo("Calico process is running.\n")
    parts = node_info.services(run_dir)
    if parts is not None and "bird" not in parts:
        click.echo("BGP is not in use on this node (calico-node runs no BIRD).\n")
    elif not _bgp_status(run_dir):
        sys.exit(1)
    name = node_info.node_name(os.environ, run_dir)
    node, error = node_info.read_node(name, (ctx.find_root().obj or {}).get("config_file"))
    if node is None:
        click.echo(f"Tunnel addresses of node {name}: unknown ({error})")
    elif rows := node_info.tunnel_rows(node):
        click.echo(f"Tunnel addresses of node {name}")
        click.echo(format_table(["TUNNEL", "ADDRESS", "MAC"], rows))
    else:
        click.echo(f"Tunnel addresses of node {name}: none (no IPIP or VXLAN pool selects it)")
    problems = node_info.felix_problems(run_dir)
    if problems:
        click.echo("\nProblems reported by calico-felix:")
        for p in problems:
            click.echo(f"  - {p}")


def _bgp_status(run_dir: Path) -> bool:
    """Print Calico's BGP peer tables; False (error printed) when BIRD cannot be asked."""
    sock = run_dir / "bird.ctl"
    from calico.lib import cmd

    proc = cmd.run(["birdc", "-s", str(sock), "show", "protocols"], check=False, timeout=10)
    if proc.returncode != 0 or "Unable to connect" in proc.stdout or not sock.exists():
        click.echo(f"Error executing command: unable to connect to BIRDv4 socket: {sock}", err=True)
        return False
    rows = peer_rows(parse_protocols(proc.stdout))
    header = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]
    for version in (4, 6):
        family = [r for r in rows if (":" in r[0]) == (version == 6)]
        click.echo(f"IPv{version} BGP status")
        click.echo(format_table(header, family) if family else f"No IPv{version} peers found.")
        click.echo("")
    return True
