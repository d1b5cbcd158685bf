"""Hosts on two subnets behind a router that knows no pod address (a cloud VPC), each running
calico-node with real BIRD (the agent is off: these tests are about what calico-node and BIRD do).

* iBGP sessions between hosts on different subnets come up (multihop through the router).
* Without encapsulation, the off-subnet host's block is routed via the router — and pod traffic to
  it fails there: nothing leaks, nothing is delivered. The same-subnet host's pods are reachable.
* ``calicoctl apply`` of the pool with ``ipipMode: CrossSubnet``: BIRD withdraws only the
  off-subnet routes (the agent's to tunnel) and keeps the same-subnet ones; every node gets an
  IPIP tunnel address. ``vxlanMode: Always``: BIRD programs no remote block of the pool at all;
  IPIP addresses give way to VXLAN ones (and MACs). ``Never`` again: routes back, addresses
  released; ``calicoctl ipam check`` is clean. No component is restarted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer

from .bgp_fabric import (
    BGP_E2E_MARKS,
    VENV_BIN,
    Fabric,
    Host,
    running_fabric,
    sessions_with,
    tcp_echo,
    wait_for,
)

pytestmark = BGP_E2E_MARKS

POOL = """apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pods
spec:
  cidr: 192.168.0.0/16
  ipipMode: {ipip}
  vxlanMode: {vxlan}
  natOutgoing: true
"""


def calicoctl(port: int, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "ETCD_ENDPOINTS": f"http://127.0.0.1:{port}"}
    out = subprocess.run(
        [str(VENV_BIN / "calicoctl"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def set_modes(port: int, *, ipip: str = "Never", vxlan: str = "Never") -> None:
    calicoctl(port, "apply", "-f", "-", stdin=POOL.format(ipip=ipip, vxlan=vxlan))


def bird_route(h: Host, dst: str) -> dict[str, Any] | None:
    r = h.routes().get(dst)
    return r if r is not None and r.get("protocol") == "bird" else None


def tunnel_addrs(ds: Client) -> dict[str, tuple[str, str, str]]:
    out = {}
    for n in ds.list("Node"):
        spec = n["spec"]
        out[n["metadata"]["name"]] = (
            str((spec.get("bgp") or {}).get("ipv4IPIPTunnelAddr") or ""),
            str(spec.get("ipv4VXLANTunnelAddr") or ""),
            str(spec.get("vxlanTunnelMACAddr") or ""),
        )
    return out


def _dump(fab: Fabric) -> str:
    return "\n".join(f"== {h.name}\n{h.node_status()}\n{h.log_tail()}" for h in fab.hosts)


def test_two_subnets_sessions_and_live_mode_switch(
    make_netns: Callable[[], str],
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd: EtcdClient,
    datastore: Client,
) -> None:
    port = etcd_server.port
    set_modes(port)  # the pool exists before the nodes start: no default pool
    with running_fabric(make_netns, tmp_path, port, etcd, 3, subnets=2) as fab:
        h1, h2, h3 = fab.hosts  # h1 10.99.0.1, h2 10.99.1.2 (the other subnet), h3 10.99.0.3
        assert (h1.ip, h2.ip, h3.ip) == ("10.99.0.1", "10.99.1.2", "10.99.0.3")
        for h in fab.hosts:
            fab.start(h)
        pods = {
            h.name: fab.add_pod(make_netns, h, h.block.replace(".0/26", ".2")) for h in fab.hosts
        }
        try:
            # sessions across the router come up, like those on one subnet
            for h in fab.hosts:
                others = sorted(o.ip for o in fab.hosts if o is not h)
                wait_for(f"{h.name} sessions", sessions_with(h, others), 90)
            node = datastore.get("Node", "host2")["spec"]["bgp"]
            assert node["ipv4Address"] == "10.99.1.2/24"  # the subnet is stored with the address

            # no encapsulation: same subnet direct; the other subnet via the router, which drops
            direct = wait_for("h1 -> h3 block", lambda: bird_route(h1, h3.block))
            assert direct["gateway"] == h3.ip
            via_router = wait_for("h1 -> h2 block", lambda: bird_route(h1, h2.block))
            assert via_router["gateway"] == "10.99.0.254"
            assert wait_for("pod h1 -> pod h3", lambda: tcp_echo(pods["host1"], "192.168.3.2"))
            assert not tcp_echo(pods["host1"], "192.168.2.2")
            assert tunnel_addrs(datastore) == {h.name: ("", "", "") for h in fab.hosts}

            # CrossSubnet: BIRD keeps the same-subnet route only; every node gets an IPIP address
            set_modes(port, ipip="CrossSubnet")
            wait_for("h1 -> h2 block withdrawn", lambda: bird_route(h1, h2.block) is None, 30)
            wait_for(
                "h2 -> h1, h3 withdrawn",
                lambda: not any(bird_route(h2, b) for b in (h1.block, h3.block)),
                30,
            )
            assert bird_route(h1, h3.block) is not None
            assert bird_route(h3, h1.block) is not None
            ipip = wait_for(
                "IPIP tunnel addresses",
                lambda: (
                    all(t[0] for t in tunnel_addrs(datastore).values()) and tunnel_addrs(datastore)
                ),
                30,
            )
            assert len({t[0] for t in ipip.values()}) == 3
            assert tcp_echo(pods["host1"], "192.168.3.2")

            # VXLAN Always: no remote block of the pool is BIRD's; IPIP addresses give way to VXLAN
            set_modes(port, vxlan="Always")
            wait_for("h1 -> h3 block withdrawn", lambda: bird_route(h1, h3.block) is None, 30)
            assert h1.routes()[h1.block]["type"] == "blackhole"  # its own block stays
            vxlan = wait_for(
                "VXLAN tunnel addresses",
                lambda: (
                    all(t[1] and t[2] and not t[0] for t in tunnel_addrs(datastore).values())
                    and tunnel_addrs(datastore)
                ),
                30,
            )
            status = h1.node_status()
            assert f"| VXLAN (vxlan.calico) | {vxlan['host1'][1]} " in status, status

            # Never again: BIRD's routes are back, the addresses are released
            set_modes(port)
            wait_for(
                "h1 -> h2, h3 routes back",
                lambda: bird_route(h1, h2.block) and bird_route(h1, h3.block),
                30,
            )
            wait_for(
                "tunnel addresses released",
                lambda: tunnel_addrs(datastore) == {h.name: ("", "", "") for h in fab.hosts},
                30,
            )
            check = calicoctl(port, "ipam", "check")
            assert "found 0 problems" in check, check
            assert all(h.proc is not None and h.proc.poll() is None for h in fab.hosts)
        except AssertionError:
            print(_dump(fab))
            raise
