"""Fixtures for CNI plugin tests: a "node" = a network namespace where the plugin runs (via
``ip netns exec``), the root etcd forwarded into it on 127.0.0.1, pod namespaces, installed plugins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from calico.cni import install
from calico.datastore.client import Client
from calico.datastore.etcd_server import EtcdServer
from tests.nsnet import Forwarder

DEBIAN_CNI = "/usr/lib/cni"
IP = shutil.which("ip") or "/usr/sbin/ip"  # by path: a call's PATH may hold no `ip` at all


@dataclass
class PluginRun:
    rc: int
    out: dict[str, Any] | None
    stdout: str
    stderr: str

    @property
    def answer(self) -> dict[str, Any]:
        """The JSON the plugin printed; reading it fails the test when the plugin printed none."""
        assert self.out is not None, f"the plugin printed nothing (exit {self.rc}): {self.stderr}"
        return self.out


@dataclass
class Node:
    name: str  # Calico node name
    netns: str  # the namespace the plugin runs in
    bin_dir: Path
    endpoint: str
    forwarder: Forwarder
    extra_env: dict[str, str] = field(default_factory=dict)

    def conf(self, **overrides: Any) -> dict[str, Any]:
        c = install.conf(
            etcd_endpoints=self.endpoint, nodename=self.name, name="net1", cni_version="1.0.0"
        )
        c.update(overrides)
        return c

    def run(
        self,
        command: str,
        conf: dict[str, Any],
        *,
        container_id: str = "",
        netns: str = "",
        ifname: str = "eth0",
        args: str = "",
        plugin: str = "calico",
        timeout: float = 60,
        wrap: tuple[str, ...] = (),
    ) -> PluginRun:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": f"{self.bin_dir}:{DEBIAN_CNI}",
            **self.extra_env,
        }
        proc = subprocess.run(
            [IP, "netns", "exec", self.netns, *wrap, str(self.bin_dir / plugin)],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        stdout = proc.stdout.decode()
        out = json.loads(stdout) if stdout.strip() else None
        return PluginRun(proc.returncode, out, stdout, proc.stderr.decode())


@pytest.fixture
def launcher() -> str:
    """Which launchers ``bin_dir`` holds; parametrize ``launcher`` to cover "python" too."""
    return "compiled"


@pytest.fixture
def bin_dir(tmp_path: Path, launcher: str) -> Path:
    d = tmp_path / "bin"
    # launchers try this (per-test) CNI server socket first; without a server they run in-process
    # (the compiled one by exec'ing the Python launcher .calico-py / .calico-ipam-py)
    compiled = launcher == "compiled"
    install.install_binaries(d, socket_path=str(tmp_path / "cni.sock"), compiled=compiled)
    expected = "compiled" if compiled and install.compiler() else "python"  # no cc: Python
    assert install.launcher_kind(d / "calico") == expected
    return d


@pytest.fixture
def make_node(
    make_netns: Callable[[], str], etcd_server: EtcdServer, bin_dir: Path
) -> Iterator[Callable[[str], Node]]:
    """Factory: make_node("node1") -> a Node whose namespace reaches etcd at 127.0.0.1:<port>."""
    made: list[Node] = []

    def make(name: str) -> Node:
        ns = make_netns()
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
            check=True,
        )
        # a real node has an uplink with its address and a default route; proxy ARP for
        # 169.254.1.1 answers only when the host has a route for it out of another interface
        index = len(made) + 1
        subprocess.run(
            ["ip", "-n", ns, "-batch", "-"],
            check=True,
            text=True,
            input=(
                "link add eth0 type veth peer name uplink0\n"
                "link set eth0 up\nlink set uplink0 up\n"
                f"addr add 10.99.0.{index}/24 dev eth0\n"
                f"addr add fd99::{index}/64 dev eth0 nodad\n"
                "route add default via 10.99.0.254 dev eth0 onlink\n"
                "route add ::/0 via fd99::fe dev eth0 onlink\n"
            ),
        )
        fwd = Forwarder(ns, etcd_server.port)
        node = Node(name, ns, bin_dir, etcd_server.endpoint, fwd)
        made.append(node)
        return node

    yield make
    for node in made:
        node.forwarder.close()


@pytest.fixture
def pool(datastore: Client) -> dict[str, Any]:
    return datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "pool1"},
            "spec": {"cidr": "10.65.0.0/16", "blockSize": 26, "natOutgoing": True},
        },
        validate=False,
    )


@pytest.fixture
def pool6(datastore: Client) -> dict[str, Any]:
    return datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "pool6"},
            "spec": {"cidr": "fd65::/112", "blockSize": 122},
        },
        validate=False,
    )


def ip_json(netns: str, *argv: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", *argv], capture_output=True, text=True, check=True
    ).stdout
    data: list[dict[str, Any]] = json.loads(out or "[]")
    return data
