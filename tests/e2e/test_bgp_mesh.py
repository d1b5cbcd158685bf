"""Three hosts with calico-node and real BIRD in a full mesh: sessions, routes, pod traffic,
BIRD restarted by calico-node after a kill, routes withdrawn when a host's calico-node stops."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer

from .bgp_fabric import (
    BGP_E2E_MARKS,
    VENV_BIN,
    Fabric,
    echoes,
    no_route_to,
    ours,
    route_to,
    routes_to_all,
    running_fabric,
    sessions_with,
    tcp_echo,
    wait_for,
)

pytestmark = BGP_E2E_MARKS


@pytest.fixture
def fabric(
    make_netns: Callable[[], str], tmp_path: Path, etcd_server: EtcdServer, etcd: EtcdClient
) -> Iterator[Fabric]:
    with running_fabric(make_netns, tmp_path, etcd_server.port, etcd, 3) as fab:
        yield fab


def _dump(fab: Fabric) -> str:
    return "\n".join(f"== {h.name}\n{h.node_status()}\n{h.log_tail()}" for h in fab.hosts)


def test_bgp_mesh_three_hosts(
    fabric: Fabric, make_netns: Callable[[], str], datastore: Client
) -> None:
    fab = fabric
    for h in fab.hosts:
        fab.start(h)
    pods = {h.name: fab.add_pod(make_netns, h, h.block.replace(".0/26", ".2")) for h in fab.hosts}
    try:
        _check_start_up(fab, datastore)
        _check_mesh_routes(fab)
        _check_pod_traffic(fab, pods)
        _check_borrowed_address(fab, make_netns, pods)
        _check_calicoctl_wide(fab)
        _check_bird_killed(fab, pods)
        _check_bird_stopped(fab, pods)
        _check_node_stopped(fab, pods)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_dump(fab)}") from None


def _check_start_up(fab: Fabric, datastore: Client) -> None:
    """Start-up wrote the Node resources (autodetected eth0 addresses) and the default pool;
    every host has an Established session to both others; BIRD is ready."""
    h1 = fab.hosts[0]
    wait_for("Node resources", lambda: len(datastore.list("Node")) == 3, 30)
    nodes = {n["metadata"]["name"]: n for n in datastore.list("Node")}
    assert nodes["host2"]["spec"]["bgp"]["ipv4Address"] == "10.99.0.2/24"
    assert [p["spec"]["cidr"] for p in datastore.list("IPPool")] == ["192.168.0.0/16"]

    for h in fab.hosts:
        others = sorted(o.ip for o in fab.hosts if o is not h)
        wait_for(f"{h.name} sessions", sessions_with(h, others), 60)
    ready = subprocess.run(
        # in host1's namespace, as every calico-node process a test starts
        ["ip", "netns", "exec", ours(h1.netns), str(VENV_BIN / "calico-node"), "--bird-ready"],
        env=h1.env(fab.etcd_port),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ready.returncode == 0, ready.stderr
    status = h1.node_status()
    assert "Calico process is running." in status
    assert "| 10.99.0.2    | node-to-node mesh | up    |" in status


def _check_mesh_routes(fab: Fabric) -> None:
    """Each host routes the others' blocks via their address (proto bird); its own is
    blackholed."""
    for h in fab.hosts:
        routes = wait_for(
            f"{h.name} routes",
            routes_to_all(h, [o.block for o in fab.hosts]),
            30,
        )
        assert routes[h.block]["type"] == "blackhole"
        assert routes[h.block]["protocol"] == "bird"
        for o in fab.hosts:
            if o is not h:
                assert routes[o.block]["gateway"] == o.ip
                assert routes[o.block]["protocol"] == "bird"


def _check_pod_traffic(fab: Fabric, pods: dict[str, str]) -> None:
    """Pods on different hosts reach each other (real TCP through three kernels)."""
    for src in fab.hosts:
        for dst in fab.hosts:
            if src is not dst:
                ip = dst.pods[0][1]
                wait_for(f"{src.name} pod -> {ip}", echoes(pods[src.name], ip), 15)


def _check_borrowed_address(
    fab: Fabric, make_netns: Callable[[], str], pods: dict[str, str]
) -> None:
    """A pod on host3 with an IP from host1's block: host3's BIRD learns the /32 from the kernel
    and exports it; it beats host1's blackhole for the block."""
    h1, h2, h3 = fab.hosts
    borrowed = "192.168.1.9"
    fab.add_pod(make_netns, h3, borrowed)
    for h in (h1, h2):
        r = wait_for(f"{h.name} /32 route", route_to(h, borrowed), 20)
        assert r["gateway"] == h3.ip
        assert r["protocol"] == "bird"
    wait_for("host1 pod -> borrowed", lambda: tcp_echo(pods["host1"], borrowed), 15)
    wait_for("host2 pod -> borrowed", lambda: tcp_echo(pods["host2"], borrowed), 15)
    assert "192.168.1.0/26" in h1.routes()  # the block itself is still blackholed there


def _check_calicoctl_wide(fab: Fabric) -> None:
    """calicoctl get nodes -o wide shows each node's address and AS."""
    wide = subprocess.run(
        [str(VENV_BIN / "calicoctl"), "get", "nodes", "-o", "wide"],
        env={**os.environ, "ETCD_ENDPOINTS": f"http://127.0.0.1:{fab.etcd_port}"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for h in fab.hosts:
        line = next(x for x in wide.splitlines() if x.startswith(h.name + " "))
        assert f"{h.ip}/24" in line, wide
        assert "64512" in line, wide


def _check_bird_killed(fab: Fabric, pods: dict[str, str]) -> None:
    """Kill BIRD on host2: calico-node restarts it, sessions and routes come back."""
    h1, h2, h3 = fab.hosts
    old_pid = h2.health()["services"]["bird"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_for(
        "bird restarted",
        lambda: (
            (h2.health()["services"]["bird"]["pid"] or old_pid) != old_pid
            and h2.health()["services"]["bird"]["restarts"] >= 1
        ),
        30,
    )
    wait_for("host2 sessions back", lambda: sorted(h2.established()) == [h1.ip, h3.ip], 60)
    wait_for("host1 route to host2 block", lambda: h2.block in h1.routes(), 30)
    wait_for("pod host1 -> host2 again", lambda: tcp_echo(pods["host1"], h2.pods[0][1]), 30)
    # (host1 kept host2's routes meanwhile: graceful restart; host2 kept its own: persist)


def _check_bird_stopped(fab: Fabric, pods: dict[str, str]) -> None:
    """Stop BIRD on host2 cleanly: peers withdraw its block at once; calico-node starts BIRD
    again and the routes come back."""
    h1, h2, h3 = fab.hosts
    bird = h2.health()["services"]["bird"]
    os.kill(bird["pid"], signal.SIGTERM)
    wait_for("host1 withdrew host2's block", lambda: h2.block not in h1.routes(), 10, 0.05)
    wait_for("bird started again", lambda: h2.health()["services"]["bird"]["restarts"] >= 2, 30)
    wait_for("host2's block back on host1", lambda: h2.block in h1.routes(), 30)
    assert h1.routes()[h2.block]["gateway"] == h2.ip
    wait_for("pod host1 -> host2 after restart", lambda: tcp_echo(pods["host1"], h2.pods[0][1]))
    # host2's restarted BIRD must be peering with host3 again before host3 goes: routes it
    # kept from its previous run are otherwise only pruned after BIRD's graceful-restart wait
    wait_for("host2 sessions back again", lambda: sorted(h2.established()) == [h1.ip, h3.ip], 60)


def _check_node_stopped(fab: Fabric, pods: dict[str, str]) -> None:
    """Stop calico-node on host3: its BIRD says goodbye, the others withdraw its block."""
    h1, h2, h3 = fab.hosts
    fab.stop(h3)
    for h in (h1, h2):
        wait_for(f"{h.name} withdrew host3's block", no_route_to(h, h3.block), 30)
    assert not tcp_echo(pods["host1"], h3.pods[0][1])
    assert tcp_echo(pods["host1"], h2.pods[0][1])
