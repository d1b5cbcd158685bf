"""Encapsulated pools with real BIRD: what BIRD programs into the kernel and what it tells peers.

Two hosts, A (10.0.0.1/24) and B (10.0.0.2/24), each a namespace running BIRD with the config
calico-bgp renders for it, peer over a veth. B owns a block in each of four pools (IPIP Always,
VXLAN CrossSubnet, VXLAN Always, none). A must program B's block of the plain pool and of the
CrossSubnet pool (same subnet: BIRD's, as without encapsulation), never those of the Always pools
(the agent's tunnel routes), and keep its own blackhole for its block in an Always pool.
Switching a pool's mode and reconfiguring BIRD adds or withdraws the kernel route at once.
B's tunnel routes (the agent's, ``proto 80`` on ``vxlan.calico``) never reach A; a workload's
borrowed /32 on a ``cali`` interface does."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calico.bgp import birdctl, model, render

pytestmark = [pytest.mark.bird, pytest.mark.netns, pytest.mark.timeout(90)]

NODES = {
    "a": {"spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}},
    "b": {"spec": {"bgp": {"ipv4Address": "10.0.0.2/24"}}},
}
BLOCKS = {"a": ["10.1.0.64/26"], "b": ["10.1.0.0/26", "10.2.0.0/26", "10.3.0.0/26", "10.4.0.0/26"]}


def pools(**modes: tuple[str, str]) -> list[dict[str, Any]]:
    """``p1=("ipipMode", "Always")`` -> pool 10.1.0.0/16 with that mode (default: none)."""
    out = []
    for i in range(1, 5):
        field, mode = modes.get(f"p{i}", ("ipipMode", "Never"))
        out.append({"spec": {"cidr": f"10.{i}.0.0/16", field: mode}})
    return out


DEFAULT_MODES = {
    "p1": ("ipipMode", "Always"),
    "p2": ("vxlanMode", "CrossSubnet"),
    "p3": ("vxlanMode", "Always"),
}


@dataclass
class Host:
    name: str
    ns: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> Path:
        return self.dir / "bird.ctl"

    def configure(self, pool_list: list[dict[str, Any]]) -> None:
        m = model.build(
            self.name,
            nodes=NODES,
            pools=pool_list,
            affinities={b: {"state": "confirmed"} for b in BLOCKS[self.name]},
        )
        if render.install(render.render(m), self.dir / "bird.cfg") and self.sock.exists():
            birdctl.configure(self.sock)

    def routes(self) -> dict[str, dict[str, Any]]:
        out = sh("ip", "-n", self.ns, "-j", "-4", "route", "show").stdout
        return {r["dst"]: r for r in json.loads(out or "[]")}

    def bird_routes(self, prefix: str) -> str:
        """``birdc show route for PREFIX all`` (its text, "Network not found" included)."""
        cmd = ["birdc", "-s", str(self.sock), "show", "route", "for", prefix, "all"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return out.stdout


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, timeout=30)


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def pair(make_netns: Callable[[], str], tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    a, b = Host("a", make_netns(), tmp_path / "a"), Host("b", make_netns(), tmp_path / "b")
    sh("ip", "-n", a.ns, "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", b.ns)
    for h, ip in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
        sh("ip", "-n", h.ns, "addr", "add", ip, "dev", "eth0")
        sh("ip", "-n", h.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", h.ns, "link", "set", "lo", "up")
        h.dir.mkdir()
        h.configure(pools(**DEFAULT_MODES))
        bird = ["bird", "-f", "-c", str(h.dir / "bird.cfg"), "-s", str(h.sock)]
        h.proc = subprocess.Popen(
            ["ip", "netns", "exec", h.ns, *bird],
            stderr=subprocess.DEVNULL,
        )
    try:
        for h in (a, b):
            wait_for(f"BIRD on {h.name}", h.sock.exists)
            wait_for(
                f"{h.name}'s session",
                lambda h=h: any(  # type: ignore[misc]
                    p.info.startswith("Established")
                    for p in birdctl.protocols(h.sock)
                    if p.proto == "BGP"
                ),
            )
        yield a, b
    finally:
        for h in (a, b):
            if h.proc is not None:
                h.proc.terminate()
                h.proc.wait(10)


def test_kernel_routes_per_pool_mode(pair: tuple[Host, Host]) -> None:
    a, _ = pair
    # B's blocks: plain pool and same-subnet CrossSubnet pool are BIRD's; the Always ones are not
    routes = wait_for("B's routable blocks on A", lambda: _has(a, "10.2.0.0/26", "10.4.0.0/26"))
    assert routes["10.4.0.0/26"]["gateway"] == "10.0.0.2"
    assert routes["10.4.0.0/26"]["protocol"] == "bird"
    assert routes["10.2.0.0/26"]["gateway"] == "10.0.0.2"
    assert "10.1.0.0/26" not in routes  # IPIP Always
    assert "10.3.0.0/26" not in routes  # VXLAN Always
    # BIRD did learn them: only the kernel export leaves them out
    assert "10.1.0.0/26" in a.bird_routes("10.1.0.0/26")
    assert "10.3.0.0/26" in a.bird_routes("10.3.0.0/26")
    # A's own block in the Always pool keeps its blackhole (traffic to unused addresses dropped)
    assert routes["10.1.0.64/26"]["type"] == "blackhole"


def test_switching_modes_adds_and_withdraws_kernel_routes(pair: tuple[Host, Host]) -> None:
    a, _ = pair
    wait_for("B's routable blocks on A", lambda: _has(a, "10.2.0.0/26", "10.4.0.0/26"))
    # plain pool -> VXLAN Always; IPIP Always -> Never: live, by a BIRD reconfigure
    a.configure(
        pools(**{**DEFAULT_MODES, "p4": ("vxlanMode", "Always"), "p1": ("ipipMode", "Never")})
    )
    wait_for("10.4.0.0/26 withdrawn", lambda: "10.4.0.0/26" not in a.routes())
    routes = wait_for("10.1.0.0/26 programmed", lambda: _has(a, "10.1.0.0/26"))
    assert routes["10.1.0.0/26"]["gateway"] == "10.0.0.2"
    assert "10.2.0.0/26" in routes


def test_tunnel_routes_are_never_reexported_borrowed_addresses_are(pair: tuple[Host, Host]) -> None:
    a, b = pair
    ns = b.ns
    # what the agent does for a remote block of a VXLAN pool, on B
    sh("ip", "-n", ns, "link", "add", "vxlan.calico", "type", "vxlan", "id", "4096")
    sh("ip", "-n", ns, "link", "set", "vxlan.calico", "up")
    onlink = "10.4.5.0/26 via 10.4.9.9 dev vxlan.calico onlink proto 80"
    sh("ip", "-n", ns, "route", "add", *onlink.split())
    sh("ip", "-n", ns, "route", "add", "10.4.6.7/32", "dev", "vxlan.calico", "proto", "80")
    # what the CNI plugin does for a workload whose address is borrowed from another host's block
    sh("ip", "-n", ns, "link", "add", "calitest0", "type", "veth", "peer", "calitestp")
    sh("ip", "-n", ns, "link", "set", "calitestp", "up")
    sh("ip", "-n", ns, "link", "set", "calitest0", "up")
    sh("ip", "-n", ns, "route", "add", "10.4.7.8/32", "dev", "calitest0", "proto", "80")

    routes = wait_for("the borrowed /32 on A", lambda: _has(a, "10.4.7.8"))
    assert routes["10.4.7.8"]["gateway"] == "10.0.0.2"
    # B's BIRD learned the tunnel routes from its kernel, so the export filter is what stops them
    wait_for("B learns its tunnel routes", lambda: "10.4.5.0/26" in b.bird_routes("10.4.5.0/26"))
    assert "10.4.6.7/32" in b.bird_routes("10.4.6.7/32")
    time.sleep(3)  # a scan or two more: nothing follows
    assert "10.4.5.0/26" not in a.routes()
    assert "10.4.6.7" not in a.routes()
    assert "10.4.5.0/26" not in a.bird_routes("10.4.5.0/26")


def _has(h: Host, *dsts: str) -> dict[str, dict[str, Any]] | None:
    routes = h.routes()
    return routes if all(d in routes for d in dsts) else None
