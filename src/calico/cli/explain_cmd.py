"""``calicoctl explain SRC DST --port P``: why a connection is allowed or denied, from the agents.

calicoctl resolves SRC and DST in the datastore (:mod:`calico.cli.endpoint_lookup`: the endpoint,
its node, its addresses), then asks the source node's agent about egress at SRC and the
destination node's agent about ingress at DST, over their control sockets (``explain`` method,
docs/design/agent.md). Each agent answers from the rules it has programmed; calicoctl only
combines and prints (:mod:`calico.cli.explain_text`). ``-o json`` prints both answers.

Reaching a node's agent (:func:`calico.lib.control.resolve`): ``--agent NODE=ADDRESS`` or a
template (``--agent '/run/x/{node}/felix-control.sock'``, ``--agent 'tcp://{node_ip}:9094'``),
``$CALICO_AGENTS``, or this node's own socket (``$CALICO_RUN_DIR/felix-control.sock``). A node no
agent can be reached for is an error naming it and saying how to reach it; so is anything SRC or
DST does not name. Exit 0 with a verdict, 1 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import click

from calico.cli import agents as agent_addrs
from calico.cli import endpoint_lookup, explain_text, failures
from calico.lib import control

PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP")


class ExplainError(Exception):
    """A failure whose message is what the user should read."""


def _family(src: endpoint_lookup.Endpoint, dst: endpoint_lookup.Endpoint) -> int:
    for fam in (4, 6):
        if src.address(fam) and dst.address(fam):
            return fam
    raise ExplainError(
        f"{src.arg} ({', '.join(src.addresses) or 'no address'}) and {dst.arg} "
        f"({', '.join(dst.addresses) or 'no address'}) share no address family"
    )


def _pick(ep: endpoint_lookup.Endpoint, fam: int) -> str:
    """The address the user gave, if they gave one; else the endpoint's first of ``fam``."""
    if ep.arg in ep.addresses:
        return ep.arg
    addr = ep.address(fam)
    assert addr is not None
    return addr


def explain(
    client: Any, src_arg: str, dst_arg: str, *, port: int | None, protocol: str,
    agents: tuple[str, ...],
) -> dict[str, Any]:  # fmt: skip
    """Both answers and the combined verdict (the ``-o json`` document)."""
    cache: dict[tuple[str, str | None], list[dict[str, Any]]] = {}

    def lister(kind: str, ns: str | None) -> list[dict[str, Any]]:
        if (kind, ns) not in cache:
            cache[(kind, ns)] = client.list(kind, ns)
        return cache[(kind, ns)]

    finder = agent_addrs.Agents(agents, {})
    src = endpoint_lookup.lookup(src_arg, lister)
    dst = endpoint_lookup.lookup(dst_arg, lister)
    finder.nodes = {n["metadata"]["name"]: n for n in lister("Node", None)}
    fam = _family(src, dst)
    packet: dict[str, Any] = {"src": _pick(src, fam), "dst": _pick(dst, fam), "protocol": protocol}
    if port is not None:
        packet["port"] = port
    sides = {}
    for direction, ep in (("egress", src), ("ingress", dst)):
        params = {"endpoint": {"kind": ep.kind, "name": ep.name}, "direction": direction,
                  "packet": packet}  # fmt: skip
        sides[direction] = finder.call(ep.node, "explain", params)
    allowed = all(sides[d]["verdict"]["action"] == "allow" for d in sides)
    return {
        "src": _described(src),
        "dst": _described(dst),
        "packet": sides["egress"]["packet"],
        "verdict": "allow" if allowed else "deny",
        "egress": sides["egress"],
        "ingress": sides["ingress"],
    }


def _described(ep: endpoint_lookup.Endpoint) -> dict[str, Any]:
    return {"arg": ep.arg, "kind": ep.kind, "name": ep.name, "node": ep.node,
            "addresses": list(ep.addresses)}  # fmt: skip


@click.command(
    "explain", help="Explain why SRC can or cannot reach DST (NS/POD, endpoint name or IP)."
)
@click.argument("src")
@click.argument("dst")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=None, help="destination port")
@click.option("--protocol", default="TCP", show_default=True, help=", ".join(PROTOCOLS))
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="NODE=ADDRESS|TEMPLATE",
    help="where a node's agent answers: a socket path or tcp://HOST:PORT; a template may use "
    "{node} and {node_ip} (also $CALICO_AGENTS)",
)
@failures.config_option
@failures.fails_cleanly(
    ExplainError, agent_addrs.AgentError, endpoint_lookup.EndpointNotFound, control.ControlError
)
def explain_command(
    src: str, dst: str, port: int | None, protocol: str, output: str, agents: tuple[str, ...],
    config_file: str | None,
) -> None:  # fmt: skip
    proto = protocol.upper()
    if proto not in PROTOCOLS:
        raise ExplainError(f"--protocol {protocol}: expected one of {', '.join(PROTOCOLS)}")
    if proto != "ICMP" and port is None:
        raise ExplainError(f"--port is required for {proto}")
    client = failures.datastore_config(config_file).client()
    result = explain(client, src, dst, port=port, protocol=proto, agents=agents)
    if output == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(explain_text.render(result), nl=False)
