"""Rendering BIRD 2 config from the model; every render must pass ``bird -p``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from calico.bgp import birdctl, model, render
from calico.cli import node_cmd

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="needs bird")

RR = model.BirdModel(
    node_name="n1",
    router_id="10.0.0.1",
    local_as=64512,
    rr_cluster_id="224.0.0.1",
    peers=(
        model.Peer("Mesh", "10.0.0.2", 64512, rr_client=True),
        model.Peer("Global", "10.0.0.254", 65000, port=1179),
        model.Peer("Node", "10.0.0.3", 64512),
    ),
    pools=("192.168.0.0/16", "10.244.0.0/16"),
    blocks=("192.168.1.0/26", "192.168.9.64/26"),
)


def test_render_has_calico_protocols_filters_and_blackholes() -> None:
    text = render.render(RR)
    assert "router id 10.0.0.1;" in text
    assert "protocol bgp Mesh_10_0_0_2 from bgp_template {" in text
    assert "neighbor 10.0.0.254 port 1179 as 65000;" in text
    assert "protocol bgp Node_10_0_0_3 from bgp_template {" in text
    assert text.count("rr client;") == 1
    assert "rr cluster id 224.0.0.1;" in text
    assert "route 192.168.1.0/26 blackhole;" in text
    assert "route 192.168.9.64/26 blackhole;" in text
    # the block is exported, nothing beneath it; anything else inside a pool is exported
    assert "if ( net = 192.168.1.0/26 ) then accept;" in text
    assert "if ( net ~ 192.168.1.0/26 ) then reject;" in text
    assert "if ( net ~ 10.244.0.0/16 ) then accept;" in text
    assert "local as 64512;" in text
    assert "source address 10.0.0.1;" in text


def test_render_is_deterministic() -> None:
    assert render.render(RR) == render.render(RR)


@pytest.mark.parametrize(
    ("level", "expect"),
    [
        ("Debug", "log stderr all;"),
        ("Info", "log stderr { info, remote, warning, error, auth, fatal, bug };"),
        ("Warning", "log stderr { warning, error, auth, fatal, bug };"),
        ("None", "log stderr { bug };"),
    ],
)
def test_log_severity(level: str, expect: str) -> None:
    m = model.BirdModel(node_name="n", router_id="10.0.0.1", local_as=1, log_severity=level)
    assert expect in render.render(m)


@pytest.mark.bird
@needs_bird
@pytest.mark.parametrize(
    "m",
    [
        RR,
        model.BirdModel(node_name="lonely", router_id="10.0.0.9", local_as=65001),
        model.BirdModel(node_name="d", router_id="10.0.0.9", local_as=65001, log_severity="Debug"),
    ],
)
def test_bird_accepts_every_render(m: model.BirdModel, tmp_path: Path) -> None:
    path = tmp_path / "bird.cfg"
    assert render.install(render.render(m), path) is True
    assert render.install(render.render(m), path) is False  # unchanged: not rewritten


@pytest.mark.bird
@needs_bird
def test_rejected_config_leaves_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "bird.cfg"
    good = render.render(RR)
    render.install(good, path)
    with pytest.raises(render.RenderError, match=r"bird -p rejected .*:\d+:\d+"):
        render.install(good + "\nprotocol bgp broken {\n", path)
    assert path.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bird.cfg"]  # no temp file left


SHOW_PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
calico_blocks Static  master4    up     12:49:12.129
kernel1    Kernel     master4    up     12:49:12.129
Mesh_10_99_0_2 BGP        ---        up     12:49:16.012  Established
Node_10_0_0_9 BGP        ---        start  12:49:12.129  Active        Socket: Connection refused
Global_10_0_0_254 BGP        ---        start  12:49:12.129  Connect
"""


def test_parse_show_protocols() -> None:
    rows = birdctl.parse_protocols(SHOW_PROTOCOLS)
    assert [r.name for r in rows] == [
        "calico_blocks",
        "kernel1",
        "Mesh_10_99_0_2",
        "Node_10_0_0_9",
        "Global_10_0_0_254",
    ]
    assert rows[2].state == "up"
    assert rows[2].info == "Established"


def test_node_status_table_like_calico() -> None:
    rows = node_cmd.peer_rows(node_cmd.parse_protocols(SHOW_PROTOCOLS))
    assert rows == [
        ["10.99.0.2", "node-to-node mesh", "up", "12:49:16.012", "Established"],
        ["10.0.0.9", "node specific", "start", "12:49:12.129", "Active Socket: Connection refused"],
        ["10.0.0.254", "global", "start", "12:49:12.129", "Connect"],
    ]
    table = node_cmd.format_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], rows)
    lines = table.splitlines()
    assert lines[0] == lines[2] == lines[-1]
    assert lines[1].startswith("| PEER ADDRESS |     PEER TYPE     | STATE |")
    assert lines[3] == (
        "| 10.99.0.2    | node-to-node mesh | up    | 12:49:16.012 | Established"
        "                       |"
    )


def test_node_status_table_matches_calicos_example() -> None:
    text = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
Mesh_172_17_8_102 BGP        ---        up     23:30:04  Established
"""
    rows = node_cmd.peer_rows(node_cmd.parse_protocols(text))
    table = node_cmd.format_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], rows)
    assert table == (
        "+--------------+-------------------+-------+----------+-------------+\n"
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |\n"
        "+--------------+-------------------+-------+----------+-------------+\n"
        "| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |\n"
        "+--------------+-------------------+-------+----------+-------------+"
    )


@pytest.mark.bird
@needs_bird
def test_listen_port_render(tmp_path: Path) -> None:
    m = model.BirdModel(
        node_name="n",
        router_id="10.0.0.1",
        local_as=64512,
        listen_port=1790,
        peers=(model.Peer("Mesh", "10.0.0.2", 64512, port=1790),),
    )
    text = render.render(m)
    assert "local port 1790 as 64512;" in text
    assert "neighbor 10.0.0.2 port 1790 as 64512;" in text
    render.install(text, tmp_path / "bird.cfg")


@pytest.mark.bird
@needs_bird
def test_ipv6_render(tmp_path: Path) -> None:
    m = model.BirdModel(
        node_name="n",
        router_id="10.0.0.1",
        local_as=64512,
        ipv6_address="fd00::1",
        peers6=(model.Peer("Mesh", "fd00::2", 64512),),
        pools6=("fd80:24e2::/64",),
        blocks6=("fd80:24e2::/122",),
    )
    text = render.render(m)
    assert "protocol bgp Mesh_fd00__2 from bgp_template6 {" in text
    assert "source address fd00::1;" in text
    assert "route fd80:24e2::/122 blackhole;" in text
    render.install(text, tmp_path / "bird.cfg")
    assert "bgp_template6" not in render.render(RR)


def test_node_status_ipv6_names() -> None:
    protos = [
        ["Mesh_fd00__2", "BGP", "---", "up", "10:00:00", "Established"],
        ["Node_fd00_1__2", "BGP", "---", "up", "10:00:00", "Established"],
        ["Global_10_0_0_254", "BGP", "---", "up", "10:00:00", "Established"],
    ]
    assert [r[0] for r in node_cmd.peer_rows(protos)] == ["fd00::2", "fd00:1::2", "10.0.0.254"]
