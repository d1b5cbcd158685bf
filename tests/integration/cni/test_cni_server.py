"""The CNI server: launchers hand calls to it over a Unix socket; anything odd runs in-process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import Node, PluginRun
from tests.nsnet import ping

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


class ServerProc:
    """``python -m calico.cni.server`` in ``netns``; ``socket_path`` may hold ``{netns}``."""

    def __init__(
        self, netns: str, socket_path: Path | str, log: Path, *, wrap: tuple[str, ...] = ()
    ) -> None:
        self.log = log
        if "{netns}" in str(socket_path):
            ino = subprocess.run(["ip", "netns", "exec", netns, "stat", "-L", "-c", "%i",
                                  "/proc/self/ns/net"], capture_output=True, text=True,
                                 check=True).stdout.strip()  # fmt: skip
            socket_path = str(socket_path).replace("{netns}", ino)
        socket_path = Path(socket_path)
        self.socket_path = socket_path
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, *wrap, sys.executable, "-m", "calico.cni.server",
                 "--socket", str(socket_path)], stderr=f)  # fmt: skip
        for _ in range(200):
            if socket_path.exists():
                return
            time.sleep(0.02)
        raise RuntimeError(f"CNI server did not start: {log.read_text()}")

    def lines(self) -> list[str]:
        """The server's log without the timings ("served calico ADD c1 rc=0 (12.3 ms)") and
        without the indented lines that say why a call failed."""
        return [
            line.split(" (")[0]
            for line in self.log.read_text().splitlines()
            if not line.startswith("  ")
        ]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def server(make_node: Callable[[str], Node], tmp_path: Path) -> Iterator[tuple[Node, ServerProc]]:
    node = make_node("node1")
    srv = ServerProc(node.netns, tmp_path / "cni.sock", tmp_path / "server.log")
    yield node, srv
    srv.stop()


@pytest.mark.parametrize("launcher", ["compiled", "python"])
def test_calls_go_through_the_server(
    server: tuple[Node, ServerProc],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    etcd: EtcdClient,
) -> None:
    node, srv = server
    ns = make_netns()
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    conf = node.conf()
    r = node.run("ADD", conf, container_id="s1", netns=f"/var/run/netns/{ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    ip = r.answer["ips"][0]["address"].split("/")[0]
    assert ping(node.netns, ip)
    chk = node.run(
        "CHECK",
        {**conf, "prevResult": r.out},
        container_id="s1",
        netns=f"/var/run/netns/{ns}",
        args=args,
    )
    assert chk.rc == 0, chk.stdout
    bad = node.run("ADD", {**conf, "mtu": "x"}, container_id="s2", netns=f"/var/run/netns/{ns}")
    assert (bad.rc, bad.answer["code"]) == (1, 7)
    assert "mtu" in bad.stderr  # the server's reply carries the call's stderr
    ipam = node.run(
        "ADD", conf, container_id="s3", netns=f"/var/run/netns/{ns}", plugin="calico-ipam"
    )
    assert ipam.rc == 0
    assert node.run("DEL", conf, container_id="s3", netns="", plugin="calico-ipam").rc == 0
    d = node.run("DEL", conf, container_id="s1", netns=f"/var/run/netns/{ns}", args=args)
    assert d.rc == 0, d.stdout
    assert IPAMClient(etcd).ip_info(ip) is None
    # a delegated IPAM plugin is exec'd by the caller itself, with its own environment
    hl = node.conf(
        ipam={
            "type": "host-local",
            "subnet": "10.124.0.0/24",
            "dataDir": str(srv.log.parent / "hl"),
        }
    )
    args = "IgnoreUnknown=1;" + args  # host-local, like every Go plugin, needs it
    r = node.run("ADD", hl, container_id="h1", netns=f"/var/run/netns/{ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    assert r.answer["ips"][0]["address"].startswith("10.124.0.")
    assert node.run("DEL", hl, container_id="h1", netns="", args=args).rc == 0
    assert srv.lines() == [
        "served calico ADD s1 rc=0",
        "served calico CHECK s1 rc=0",
        "served calico ADD s2 rc=1",
        "served calico-ipam ADD s3 rc=0",
        "served calico-ipam DEL s3 rc=0",
        "served calico DEL s1 rc=0",
        "fallback ADD h1",
        "fallback DEL h1",
    ]
    # a failed call's reason is in the server's log too (its caller may be gone)
    assert "  calico: ADD: mtu: expected an integer" in srv.log.read_text()


def test_concurrent_calls_through_the_server(
    server: tuple[Node, ServerProc], make_netns: Callable[[], str], pool: dict[str, Any]
) -> None:
    node, srv = server
    pods = [make_netns() for _ in range(24)]

    def add(i: int) -> PluginRun:
        return node.run("ADD", node.conf(), container_id=f"k{i}", netns=f"/var/run/netns/{pods[i]}")

    with ThreadPoolExecutor(max_workers=12) as ex:
        runs = list(ex.map(add, range(len(pods))))
    assert [r.stdout for r in runs if r.rc != 0] == []
    ips = {r.answer["ips"][0]["address"] for r in runs}
    assert len(ips) == len(pods)
    with ThreadPoolExecutor(max_workers=12) as ex:
        dels = list(
            ex.map(
                lambda i: node.run(
                    "DEL", node.conf(), container_id=f"k{i}", netns=f"/var/run/netns/{pods[i]}"
                ),
                range(len(pods)),
            )
        )
    assert [r.stdout for r in dels if r.rc != 0] == []
    assert sum(line.startswith("served calico ADD") for line in srv.lines()) == len(pods)


@pytest.mark.parametrize("launcher", ["compiled", "python"])
def test_falls_back_when_server_is_elsewhere_or_gone(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    tmp_path: Path,
) -> None:
    node = make_node("node1")
    other = make_node("node2")
    # a server listening on node1's socket path but running in node2's namespace
    srv = ServerProc(other.netns, tmp_path / "cni.sock", tmp_path / "server.log")
    try:
        ns = make_netns()
        r = node.run("ADD", node.conf(), container_id="f1", netns=f"/var/run/netns/{ns}")
        assert r.rc == 0, r.stdout + r.stderr
        assert srv.lines() == ["fallback ADD f1"]
        assert ping(node.netns, r.answer["ips"][0]["address"].split("/")[0])
        # host side went into node1's namespace, not node2's
        links = subprocess.run(
            ["ip", "-n", other.netns, "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert "cali" not in links
    finally:
        srv.stop()
    # the server is gone but its socket file may remain: calls still work, in-process
    (tmp_path / "cni.sock").touch()
    r = node.run("DEL", node.conf(), container_id="f1", netns="")
    assert r.rc == 0, r.stdout + r.stderr


def test_per_namespace_socket_template(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Two nodes share one bin dir and one socket template; each launcher finds its own server."""
    from calico.cni import install

    nodes = [make_node("node1"), make_node("node2")]
    template = str(tmp_path / "cni-{netns}.sock")
    shared = tmp_path / "shared-bin"
    install.install_binaries(shared, socket_path=template)
    servers = []
    try:
        for i, node in enumerate(nodes):
            node.bin_dir = shared
            ino = subprocess.run(["ip", "netns", "exec", node.netns, "stat", "-L", "-c", "%i",
                                  "/proc/self/ns/net"], capture_output=True, text=True,
                                 check=True).stdout.strip()  # fmt: skip
            servers.append(ServerProc(node.netns, Path(template.replace("{netns}", ino)),
                                      tmp_path / f"server{i}.log"))  # fmt: skip
        for i, node in enumerate(nodes):
            ns = make_netns()
            r = node.run("ADD", node.conf(), container_id=f"n{i}", netns=f"/var/run/netns/{ns}")
            assert r.rc == 0, r.stdout + r.stderr
            assert ping(node.netns, r.answer["ips"][0]["address"].split("/")[0])
        assert [s.lines() for s in servers] == [
            ["served calico ADD n0 rc=0"],
            ["served calico ADD n1 rc=0"],
        ]
    finally:
        for s in servers:
            s.stop()


def _links(netns: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout


def test_background_veth_delete_never_hits_the_next_sandbox(
    server: tuple[Node, ServerProc], make_netns: Callable[[], str], pool: dict[str, Any]
) -> None:
    """The server finishes a DEL's veth teardown after replying; an ADD of the same pod right
    after (same host veth name, maybe the same address) waits for it and keeps its own veth."""
    node, srv = server
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=again"
    first, second = make_netns(), make_netns()
    r = node.run("ADD", node.conf(), container_id="b1", netns=f"/var/run/netns/{first}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    host_if = r.answer["interfaces"][0]["name"]
    for i in range(3):  # DEL then ADD at once, a few times over
        d = node.run("DEL", node.conf(), container_id=f"b{i + 1}", netns="", args=args)
        assert d.rc == 0, d.stdout + d.stderr
        ns = second if i % 2 == 0 else first
        r = node.run(
            "ADD", node.conf(), container_id=f"b{i + 2}", netns=f"/var/run/netns/{ns}", args=args
        )
        assert r.rc == 0, r.stdout + r.stderr
        assert r.answer["interfaces"][0]["name"] == host_if
    time.sleep(0.5)  # any background delete is long done
    assert host_if in _links(node.netns)
    assert ping(node.netns, r.answer["ips"][0]["address"].split("/")[0])
    # and a DEL's veth does go away, after the reply
    d = node.run("DEL", node.conf(), container_id="b4", netns="", args=args)
    assert d.rc == 0
    for _ in range(100):
        if host_if not in _links(node.netns):
            break
        time.sleep(0.05)
    assert host_if not in _links(node.netns)
    assert [line for line in srv.lines() if "failed" in line] == []
