"""Reaching the policy agents from calicoctl: which address answers for a node, and one call.

Order (:func:`calico.lib.control.resolve`): ``--agent NODE=ADDRESS`` or a template with
``{node}``/``{node_ip}``, ``$CALICO_AGENTS``, then this node's own socket
(``$CALICO_RUN_DIR/felix-control.sock``). This node's name is ``NODENAME``, else the name
calico-node cached in the run dir, else the hostname (as ``calicoctl node status``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calico.cli import node_info
from calico.lib import control


class AgentError(Exception):
    """A node's agent could not be reached or did not answer; the message says which and why."""


class Agents:
    def __init__(self, agents: tuple[str, ...], nodes: dict[str, dict[str, Any]]) -> None:
        run_dir = Path(os.environ.get("CALICO_RUN_DIR") or control.DEFAULT_RUN_DIR)
        self.local = node_info.node_name(os.environ, run_dir)
        self.agents = ",".join(agents)
        self.nodes = nodes
        control.parse_agents(self.agents)  # a bad --agent fails before anything else

    def address(self, node: str) -> str | None:
        bgp = ((self.nodes.get(node) or {}).get("spec") or {}).get("bgp") or {}
        node_ip = str(bgp.get("ipv4Address") or "").split("/")[0] or None
        return control.resolve(node, local_node=self.local, agents=self.agents, node_ip=node_ip)

    def unreachable(self, node: str) -> str:
        return (
            f"node {node}: no way to reach its agent from here (this is node {self.local}): "
            f"run calicoctl on {node}, or give --agent {node}=SOCKET|tcp://HOST:PORT, or a "
            "template such as --agent 'tcp://{node_ip}:PORT' for agents with "
            "FELIX_CONTROLPORT set (also $CALICO_AGENTS)"
        )

    def call(
        self, node: str, method: str, params: dict[str, Any], *, timeout: float = 30.0
    ) -> dict[str, Any]:
        address = self.address(node)
        if address is None:
            raise AgentError(self.unreachable(node))
        try:
            answer: dict[str, Any] = control.call(address, method, params, timeout=timeout)
        except control.Unreachable as exc:
            raise AgentError(f"node {node}: {exc} (is calico-felix running there?)") from None
        except control.ControlError as exc:
            raise AgentError(f"node {node}: {exc}") from None
        return answer
