"""What ``calicoctl node status`` shows besides BGP: the node's name, tunnel addresses, the agent's
problems and whether the node runs BIRD at all."""

from __future__ import annotations

import json
from pathlib import Path

from calico.cli import node_info


def test_node_name_precedence(tmp_path: Path) -> None:
    (tmp_path / "nodename").write_text("cached\n")
    assert node_info.node_name({"NODENAME": "explicit"}, tmp_path) == "explicit"
    assert node_info.node_name({}, tmp_path) == "cached"
    assert node_info.node_name({}, tmp_path / "nowhere")  # the hostname


def test_tunnel_rows() -> None:
    node = {
        "spec": {
            "bgp": {"ipv4Address": "10.0.0.1/24", "ipv4IPIPTunnelAddr": "192.168.3.0"},
            "ipv4VXLANTunnelAddr": "10.244.1.1",
            "vxlanTunnelMACAddr": "66:12:34:56:78:9a",
        }
    }
    assert node_info.tunnel_rows(node) == [
        ["IPIP (tunl0)", "192.168.3.0", ""],
        ["VXLAN (vxlan.calico)", "10.244.1.1", "66:12:34:56:78:9a"],
    ]
    assert node_info.tunnel_rows({"spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}}) == []


def test_problems_and_services(tmp_path: Path) -> None:
    assert node_info.felix_problems(tmp_path) == []
    assert node_info.services(tmp_path) is None
    (tmp_path / "felix-status.json").write_text(
        json.dumps({"problems": ["no ipip module"], "in_sync": True, "applies": 1})
    )
    (tmp_path / "health.json").write_text(json.dumps({"services": {"felix": {"running": True}}}))
    assert node_info.felix_problems(tmp_path) == ["no ipip module"]
    assert node_info.services(tmp_path) == {"felix": {"running": True}}
