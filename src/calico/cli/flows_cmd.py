"""``calicoctl flows``: this node's flow logs (what its agent logged at verdict points).

Where the records are, first found: ``--file`` (a ``flows.log`` or its directory), then the
file the running agent reports in ``<CALICO_RUN_DIR>/felix-status.json``, then
``$FELIX_FLOWLOGSFILEDIRECTORY``, ``$CALICO_LOG_DIR/flowlogs``, ``/var/log/calico/flowlogs``.
Flow logs stay on the node that logged them: ``--node N`` on another node is an error that says
so (``calico-lab flows`` gathers every node's).

When this node's agent answers on its control socket (``$CALICO_RUN_DIR/felix-control.sock``),
it is first asked to write the records of the interval in progress (``flows-flush``), so what is
shown is current; ``--follow`` then takes new records from its ``flows`` stream as they are
written. Without the socket (no agent, or a copy of someone's files) the files are read, and
``--follow`` tails them (across rotations) until interrupted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from calico.cli import failures, flow_view, node_info

DEFAULT_RUN_DIR = "/var/run/calico"
DEFAULT_DIR = "/var/log/calico/flowlogs"
FILENAME = "flows.log"


class FlowsError(Exception):
    """A ``calicoctl flows`` failure, already in words."""


def flow_file(env: Mapping[str, str], explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        return path / FILENAME if path.is_dir() else path
    run_dir = Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)
    status = node_info.felix_status(run_dir)
    reported = (status.get("flow_logs") or {}).get("file") if status else None
    if reported:
        return Path(reported)
    if env.get("FELIX_FLOWLOGSFILEDIRECTORY"):
        return Path(env["FELIX_FLOWLOGSFILEDIRECTORY"]) / FILENAME
    if env.get("CALICO_LOG_DIR"):
        return Path(env["CALICO_LOG_DIR"]) / "flowlogs" / FILENAME
    return Path(DEFAULT_DIR) / FILENAME


def parse_since(text: str | None) -> float | None:
    if text is None:
        return None
    from calico.model import fields

    try:
        return fields.seconds(text, "--since")
    except fields.FieldError as exc:
        raise FlowsError(f"--since: {exc.reason}") from None


def check_node(env: Mapping[str, str], node: str | None, explicit: str | None) -> None:
    if node is None or explicit:
        return
    here = node_info.node_name(env, Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR))
    if here != node:
        raise FlowsError(
            f"--node {node}: this is node {here}; flow logs are kept on the node that logged "
            "them (run calicoctl flows there; calico-lab flows gathers every node's)"
        )


def records(path: Path) -> Iterator[dict[str, Any]]:
    from calico.lib import jsonlines

    return jsonlines.read(path)


def _emit(recs: list[dict[str, Any]], output: str, *, header: bool) -> None:
    if output == "json":
        for rec in recs:
            click.echo(json.dumps(rec, sort_keys=True))
    elif recs or header:
        text = flow_view.table([flow_view.row(r) for r in recs], header=header)
        if text:
            click.echo(text)


def _local_agent(env: Mapping[str, str]) -> dict[str, Any] | None:
    """Ask this node's agent to write what it holds now; None when no agent answers."""
    from calico.lib import control

    try:
        answer = control.call(control.socket_path(env), "flows-flush", {}, timeout=10)
    except control.ControlError:
        return None
    return answer if isinstance(answer, dict) else None


def _follow_agent(
    env: Mapping[str, str], path: Path, flt: flow_view.Filter, output: str, since: int
) -> None:
    """The files as of the flush, then the agent's records written after it, as they come."""
    from calico.lib import control

    _emit(list(flow_view.select(records(path), flt)), output, header=True)
    stream = control.stream(control.socket_path(env), "flows", {"follow": True, "since": since})
    try:
        for item in stream:
            _emit(list(flow_view.select([item["record"]], flt)), output, header=False)
    except KeyboardInterrupt:
        return
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # closes the connection: the agent ends the stream


@click.command()
@click.option("--node", default=None, help="only records logged by this node (this node)")
@click.option("--follow", "-F", is_flag=True, help="keep printing records as they are written")
@click.option("--action", type=click.Choice(["deny", "allow"]), default=None)
@click.option("--since", default=None, metavar="DURATION", help="e.g. 10m, 1h30m")
@click.option("--file", "file_", default=None, metavar="PATH", help="a flows.log or its directory")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              help="json: one record per line")  # fmt: skip
@failures.fails_cleanly(FlowsError)
def flows(
    node: str | None,
    follow: bool,
    action: str | None,
    since: str | None,
    file_: str | None,
    output: str,
) -> None:
    """Show the flows this node's agent logged: who talked to whom, the verdict, and the tier,
    policy and rule that decided it (and, with staged policies, what they would decide)."""
    env = dict(os.environ)
    check_node(env, node, file_)
    path = flow_file(env, file_)
    flt = flow_view.Filter(node=node, action=action, since=parse_since(since))
    agent = None if file_ else _local_agent(env)
    if agent is not None:
        path = Path(agent.get("file") or path)
    if not path.exists() and not follow and agent is None:
        raise FlowsError(f"no flow logs at {path} (is the agent running with flow logs on?)")
    if not follow:
        _emit(list(flow_view.select(records(path), flt)), output, header=True)
        return
    if agent is not None:
        _follow_agent(env, path, flt, output, int(agent.get("seq") or 0))
        return
    from calico.lib import jsonlines

    # The rotated files once, then the current one from its start and as it grows.
    old = [r for p in jsonlines.rotated(path) for r in jsonlines.read_file(p)]
    follower = jsonlines.Follower(path, from_start=True)
    _emit(list(flow_view.select(old + follower.poll(), flt)), output, header=True)
    try:
        while True:
            time.sleep(0.5)
            _emit(list(flow_view.select(follower.poll(), flt)), output, header=False)
    except KeyboardInterrupt:
        return
