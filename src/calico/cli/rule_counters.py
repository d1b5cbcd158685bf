"""The per-node rule counters ``calicoctl get networkpolicy|globalnetworkpolicy NAME -o wide``
prints under its table: each node's agent is asked (``counters`` control method) for the named
policies' rules; a node whose agent cannot be reached from here, or does not answer, gets one
row saying so (the other nodes' counters are still shown). Packets and bytes count since the
rule was programmed on that node (they survive agent restarts; a changed rule starts again)."""

from __future__ import annotations

from typing import Any

from calico.cli import agents as agent_addrs

Resource = dict[str, Any]
HEADS = ("NODE", "POLICY", "DIRECTION", "RULE", "ACTION", "PACKETS", "BYTES")
KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")


def policy_id(policy: Resource) -> str:
    meta = policy["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


def rows(client: Any, policies: list[Resource]) -> list[list[str]]:
    ids = [policy_id(p) for p in policies]
    nodes = {n["metadata"]["name"]: n for n in client.list("Node")}
    finder = agent_addrs.Agents((), nodes)
    out: list[list[str]] = []
    for node in sorted(nodes):
        if finder.address(node) is None:
            out.append([node, "-", "-", "-", "-", "-", "(agent not reachable from here: run "
                        "calicoctl on the node or set CALICO_AGENTS)"])  # fmt: skip
            continue
        try:
            answer = finder.call(node, "counters", {"policies": ids}, timeout=10)
        except agent_addrs.AgentError as exc:
            out.append([node, "-", "-", "-", "-", "-", f"({exc})"])
            continue
        for pid in ids:
            data = answer["policies"].get(pid) or {"active": False, "rules": []}
            if not data["active"]:
                out.append([node, pid, "-", "-", "-", "-", "(not active: no endpoint here)"])
                continue
            for r in data["rules"]:
                out.append([node, pid, r["direction"], str(r["rule"]), r["action"].capitalize(),
                            str(r["packets"]), str(r["bytes"])])  # fmt: skip
    return out


def section(client: Any, policies: list[Resource]) -> str:
    table = [list(HEADS), *rows(client, policies)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADS) - 1)]
    lines = ["", "RULE COUNTERS (per node, from its agent)"]
    for row in table:
        cells = [c.ljust(widths[i] + 3) for i, c in enumerate(row[:-1])]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(lines) + "\n"
