"""Encapsulated pools in the BIRD config: the kernel protocol leaves the agent's (tunnelled) routes
alone — every route of an Always pool, the off-subnet ones of a CrossSubnet pool — and only a
workload's borrowed /32 (on a cali interface) or a peer's route leaves this host inside a pool.
Every render goes through ``bird -p``; what BIRD then does with real routes is tested in
tests/integration/bgp/test_bgp_encap_routes.py."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from calico.bgp import model, render

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="needs bird")

NODES = {
    "n1": {"spec": {"bgp": {"ipv4Address": "10.99.0.1/24"}}},
    "n2": {"spec": {"bgp": {"ipv4Address": "10.99.1.2/24"}}},
}


def pool(cidr: str, *, ipip: str = "Never", vxlan: str = "Never", **spec: Any) -> dict[str, Any]:
    return {"spec": {"cidr": cidr, "ipipMode": ipip, "vxlanMode": vxlan, **spec}}


def build(pools: list[dict[str, Any]], address: str = "10.99.0.1/24") -> model.BirdModel:
    nodes = {**NODES, "n1": {"spec": {"bgp": {"ipv4Address": address}}}}
    return model.build("n1", nodes=nodes, pools=pools, affinities={"10.1.0.0/26": {}})


def kernel_filter(text: str) -> str:
    start = text.index("filter calico_kernel_programming {")
    return text[start : text.index("\n}\n", start)]


def test_encap_pools_and_subnet_in_the_model() -> None:
    m = build(
        [
            pool("10.1.0.0/16", ipip="Always"),
            pool("10.2.0.0/16", vxlan="CrossSubnet"),
            pool("10.3.0.0/16"),
            pool("10.4.0.0/16", ipip="CrossSubnet", disabled=True),  # its addresses keep the mode
            pool("fd00:1::/64", vxlan="Always"),  # IPv6 is never tunnelled by the agent
        ]
    )
    assert m.subnet == "10.99.0.0/24"
    assert m.encap_pools == (
        ("10.1.0.0/16", "Always"),
        ("10.2.0.0/16", "CrossSubnet"),
        ("10.4.0.0/16", "CrossSubnet"),
    )
    assert build([], address="10.99.0.1").subnet == "10.99.0.1/32"  # no prefix: only itself


def test_no_encapsulation_renders_no_kernel_exceptions() -> None:
    text = render.render(build([pool("10.1.0.0/16")]))
    assert "bgp_next_hop" not in text
    assert "source = RTS_BGP" in text  # the export filter's
    assert "source = RTS_BGP" not in kernel_filter(text)


def test_always_and_crosssubnet_kernel_filter() -> None:
    text = render.render(
        build([pool("10.1.0.0/16", ipip="Always"), pool("10.2.0.0/16", vxlan="CrossSubnet")])
    )
    kf = kernel_filter(text)
    assert "if ( net ~ 10.1.0.0/16 ) then reject;" in kf
    assert re.search(
        r"if \( net ~ 10\.2\.0\.0/16 \) then \{[^\n]*\n\s+if \( bgp_next_hop !~ 10\.99\.0\.0/24 \) "
        r"then reject;",
        kf,
    )
    assert kf.index("source = RTS_BGP") < kf.index("10.1.0.0/16")  # only routes from peers


def test_export_filter_only_cali_routes_and_peers_routes_inside_pools() -> None:
    text = render.render(build([pool("10.1.0.0/16", ipip="Always")]))
    start = text.index("filter calico_export_to_bgp_peers {")
    ef = text[start : text.index("\n}\n", start)]
    assert 'if ( ifname ~ "cali*" ) then {' in ef
    assert "if ( source = RTS_BGP ) then {" in ef
    assert ef.rstrip().endswith("reject;")
    assert '-"vxlan.calico", -"tunl0"' in text  # tunnel devices are not connected routes to BIRD


MODES = ("Always", "CrossSubnet", "Never")


@pytest.mark.bird
@needs_bird
@pytest.mark.parametrize(("pool_a", "pool_b"), list(itertools.product(MODES, MODES)), ids=str)
@pytest.mark.parametrize("encap", ["ipip", "vxlan"])
def test_bird_accepts_every_mode_combination(
    pool_a: str, pool_b: str, encap: str, tmp_path: Path
) -> None:
    """Two pools, each Always/CrossSubnet/Never, with IPIP or VXLAN (BIRD sees them alike)."""
    pools = [pool("10.1.0.0/16", **{encap: pool_a}), pool("10.2.0.0/16", **{encap: pool_b})]
    m = build(pools)
    text = render.render(m)
    render.install(text, tmp_path / "bird.cfg")
    kf = kernel_filter(text)
    for cidr, mode in (("10.1.0.0/16", pool_a), ("10.2.0.0/16", pool_b)):
        assert (f"net ~ {cidr}" in kf) == (mode != "Never")
    assert ("bgp_next_hop" in kf) == ("CrossSubnet" in (pool_a, pool_b))


@pytest.mark.bird
@needs_bird
def test_bird_accepts_encapsulation_with_ipv6_and_no_pools(tmp_path: Path) -> None:
    nodes = {"n1": {"spec": {"bgp": {"ipv4Address": "10.99.0.1/24", "ipv6Address": "fd99::1/64"}}}}
    pools = [pool("10.1.0.0/16", ipip="CrossSubnet"), pool("fd80::/64", vxlan="Always")]
    m = model.build("n1", nodes=nodes, pools=pools)
    text = render.render(m)
    assert "export filter calico_kernel_programming6;" in text
    render.install(text, tmp_path / "bird.cfg")
    render.install(render.render(build([])), tmp_path / "empty.cfg")
