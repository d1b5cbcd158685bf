"""``calico-lab flows``: ``calicoctl flows`` on every node of the lab (or one), merged.

Each node's flow logs stay on that node (its ``CALICO_LOG_DIR``), as on a real cluster, so the
lab runs ``calicoctl flows -o json`` inside each node's namespace, with the node's environment (its
agent then writes what it holds first, through its control socket), and merges the records by
time. ``--follow`` keeps one ``calicoctl flows --follow`` per node and prints records as any
node writes them.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any

from calico.cli import flow_view
from calico.lib import cmd
from calico_lab import execute
from calico_lab.state import LabError, LabState

Record = dict[str, Any]


def _argv(lab: LabState, node: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    ns, env = execute.target_env(lab, node)
    return ["ip", "netns", "exec", ns, "calicoctl", "flows", "-o", "json", *args], env


def _nodes(lab: LabState, node: str | None) -> list[str]:
    if node is not None:
        return [lab.node(node).name]
    if not lab.nodes:
        raise LabError(f"lab {lab.name} has no nodes")
    return [n.name for n in lab.nodes]


def _one(lab: LabState, node: str, args: list[str]) -> list[Record]:
    argv, env = _argv(lab, node, args)
    proc = cmd.run_process(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        if "no flow logs at" in proc.stderr:
            return []  # the node has logged nothing yet
        raise LabError(f"{node}: calicoctl flows: {proc.stderr.strip()}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def gather(lab: LabState, node: str | None, args: list[str]) -> list[Record]:
    """Every chosen node's records, oldest first."""
    names = _nodes(lab, node)
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        chunks = pool.map(lambda n: _one(lab, n, args), names)
        recs = [r for chunk in chunks for r in chunk]
    return sorted(recs, key=lambda r: (r.get("end_time") or 0, r.get("host") or ""))


def show(recs: list[Record], output: str, echo: Callable[[str], None]) -> None:
    if output == "json":
        for rec in recs:
            echo(json.dumps(rec, sort_keys=True))
    else:
        echo(flow_view.table([flow_view.row(r) for r in recs]))


def follow(
    lab: LabState, node: str | None, args: list[str], output: str, echo: Callable[[str], None]
) -> None:
    """Until interrupted: every node's records as they are written."""
    lines: queue.Queue[str] = queue.Queue()
    procs = []
    for name in _nodes(lab, node):
        argv, env = _argv(lab, name, [*args, "--follow"])
        proc = cmd.start(argv, env=env, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    if output != "json":
        echo(flow_view.table([]))
    try:
        while True:
            rec = json.loads(lines.get())
            if output == "json":
                echo(json.dumps(rec, sort_keys=True))
            else:
                echo(flow_view.table([flow_view.row(rec)], header=False))
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def _pump(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        if line.strip():
            out.put(line)
