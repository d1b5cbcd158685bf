"""What ``calicoctl node status`` shows besides BGP: tunnel addresses and the agent's problems.

* The node's name: ``NODENAME``, else ``<CALICO_RUN_DIR>/nodename`` (calico-node writes it, as
  Calico caches its name in /var/lib/calico/nodename), else the hostname.
* Its tunnel addresses, from its Node resource: ``spec.bgp.ipv4IPIPTunnelAddr``,
  ``spec.ipv4VXLANTunnelAddr`` and ``spec.vxlanTunnelMACAddr``.
* The problems the agent reports in ``<CALICO_RUN_DIR>/felix-status.json`` (a kernel without the
  ``ipip`` module for an IPIP pool, ...).
* Which parts calico-node runs (``health.json``), so a node without BIRD (networking backend
  ``vxlan`` or ``none``) is not reported as a BIRD failure.

Like node_cmd, this module may not import calico.node or calico.bgp.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FELIX_STATUS = "felix-status.json"


def node_name(env: Mapping[str, str], run_dir: Path) -> str:
    if env.get("NODENAME"):
        return env["NODENAME"].strip()
    try:
        cached = (run_dir / "nodename").read_text().strip()
    except OSError:
        cached = ""
    return cached or socket.gethostname().lower()


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def services(run_dir: Path) -> dict[str, Any] | None:
    """calico-node's supervised services from health.json (None when it cannot be read)."""
    health = _json(run_dir / "health.json")
    found = (health or {}).get("services")
    return found if isinstance(found, dict) else None


def felix_status(run_dir: Path) -> dict[str, Any] | None:
    """The agent's felix-status.json (None when it cannot be read)."""
    return _json(run_dir / FELIX_STATUS)


def felix_problems(run_dir: Path) -> list[str]:
    problems = (_json(run_dir / FELIX_STATUS) or {}).get("problems") or []
    return [str(p) for p in problems] if isinstance(problems, list) else []


def tunnel_rows(node: Mapping[str, Any]) -> list[list[str]]:
    """[tunnel, address, MAC] rows for the tunnels this Node has an address for."""
    spec = node.get("spec") or {}
    rows = []
    ipip = (spec.get("bgp") or {}).get("ipv4IPIPTunnelAddr")
    if ipip:
        rows.append(["IPIP (tunl0)", str(ipip), ""])
    vxlan = spec.get("ipv4VXLANTunnelAddr")
    if vxlan:
        rows.append(["VXLAN (vxlan.calico)", str(vxlan), str(spec.get("vxlanTunnelMACAddr") or "")])
    return rows


def read_node(name: str, config_file: str | None) -> tuple[dict[str, Any] | None, str]:
    """This node's Node resource, or (None, why not)."""
    from calico.datastore import config
    from calico.datastore.backend import StoreError
    from calico.datastore.client import Client

    try:
        client = Client(config.load(config_file).backend(timeout=5))
        return client.get("Node", name), ""
    except (StoreError, ValueError, OSError) as exc:
        return None, str(exc)
