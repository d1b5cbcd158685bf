"""Issue #16: podman (CNI backend) drives our plugin for containers outside Kubernetes.

Podman runs in a box (the node's network namespace + a private mount namespace, see
``runtimes``), with its own storage, run directory, containers.conf and a conflist whose only
plugin is ours. Two containers get pool addresses and talk (ICMP and TCP); their endpoints carry
Calico's ``cni`` identity (podman sends ``K8S_POD_NAME`` without ``K8S_POD_NAMESPACE``) and the
network's Profile; a restart gives a working address; removing them leaves ``calicoctl ipam check``
clean. Skipped, with the reason, when podman, runc or busybox-static is not installed.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from calico.cli.main import cli
from calico.datastore.client import Client
from calico.datastore.etcd_server import EtcdServer
from tests.integration.cni.conftest import Node
from tests.integration.cni.runtimes import (
    ULIMITS,
    Box,
    busybox_rootfs_tar,
    conflist,
    missing,
    write_json,
)

WHY_NOT = missing("podman", "runc", "/bin/busybox")
pytestmark = [
    pytest.mark.netns,
    pytest.mark.etcd,
    pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT),
]
NET = "calt-podnet"
IMAGE = "localhost/calt-busybox:latest"


class Podman:
    """podman in a box, with everything of its own under ``root``."""

    def __init__(self, box: Box, root: Path, *, plugin_dir: Path, conf_dir: Path) -> None:
        self.box = box
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "containers.conf"
        conf.write_text(
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{root}/events.log"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}"]\n'
            f'network_config_dir = "{conf_dir}"\n'
            f'default_network = "{NET}"\n'
        )
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF": str(conf)}
        self.base = ("podman", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                     "--storage-driver", "vfs")  # fmt: skip

    def __call__(self, *args: str, check: bool = True) -> str:
        return self.box.run(*self.base, *args, env=self.env, check=check).stdout.strip()

    def ip(self, name: str) -> str:
        template = f'{{{{(index .NetworkSettings.Networks "{NET}").IPAddress}}}}'
        return self("inspect", "--format", template, name)

    def container_id(self, name: str) -> str:
        return self("inspect", "--format", "{{.Id}}", name)


def calicoctl(etcd_server: EtcdServer, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli, list(args), env={"ETCD_ENDPOINTS": etcd_server.endpoint, "DATASTORE_TYPE": "etcdv3"}
    )
    return res.exit_code, res.output


def test_podman_containers_on_our_network(
    make_node: Callable[[str], Node],
    pool: dict[str, Any],
    etcd_server: EtcdServer,
    datastore: Client,
    tmp_path: Path,
) -> None:
    node = make_node("node1")
    conf_dir = tmp_path / "net.d"
    plugin = {"type": "calico", "etcd_endpoints": node.endpoint, "nodename": "node1",
              "ipam": {"type": "calico-ipam"}}  # fmt: skip
    write_json(conf_dir / f"{NET}.conflist", conflist(NET, plugin))
    box = Box(node.netns)
    short = Path(tempfile.mkdtemp(prefix="calt-pm-"))  # podman's runroot: at most 50 characters
    podman = Podman(box, short, plugin_dir=node.bin_dir, conf_dir=conf_dir)
    try:
        podman("import", str(busybox_rootfs_tar(tmp_path)), IMAGE)
        for name in ("c1", "c2"):
            podman("run", "-d", "--name", name, "--network", NET, *ULIMITS, IMAGE, "sleep", "600")
        ip1, ip2 = podman.ip("c1"), podman.ip("c2")
        pool_net = ipaddress.ip_network(pool["spec"]["cidr"])
        assert ipaddress.ip_address(ip1) in pool_net
        assert ipaddress.ip_address(ip2) in pool_net
        assert ip1 != ip2
        _assert_talk(podman, "c1", "c2", ip2)
        _assert_cni_identity(podman, datastore, etcd_server, {"c1": ip1, "c2": ip2})
        podman("restart", "--time", "1", "c2")  # a new sandbox: DEL, then ADD
        ip2 = podman.ip("c2")
        assert ipaddress.ip_address(ip2) in pool_net
        _assert_talk(podman, "c1", "c2", ip2)
        podman("rm", "--force", "--time", "1", "c1", "c2")
        assert datastore.list("WorkloadEndpoint") == []
        rc, out = calicoctl(etcd_server, "ipam", "check")
        assert rc == 0, out
    finally:
        podman("rm", "--force", "--all", "--time", "1", check=False)
        box.close()
        shutil.rmtree(short, ignore_errors=True)


def _assert_talk(podman: Podman, client: str, server: str, server_ip: str) -> None:
    """ICMP and TCP from ``client`` to ``server``'s address."""
    podman("exec", client, "ping", "-c", "1", "-W", "5", server_ip)
    podman("exec", "-d", server, "sh", "-c", "echo hello-from-server | nc -l -p 8080")
    for _ in range(50):  # until the listener is up
        got = podman("exec", client, "sh", "-c", f"nc -w 2 {server_ip} 8080 </dev/null",
                     check=False)  # fmt: skip
        if got == "hello-from-server":
            return
    raise AssertionError(f"no TCP answer from {server} at {server_ip}")


def _assert_cni_identity(
    podman: Podman, datastore: Client, etcd_server: EtcdServer, ips: dict[str, str]
) -> None:
    """Calico's identity for non-Kubernetes containers: orchestrator cni, workload = container
    id, namespace default, the network's Profile (created by the plugin)."""
    weps = {w["spec"]["workload"]: w for w in datastore.list("WorkloadEndpoint")}
    ids = {name: podman.container_id(name) for name in ips}
    assert sorted(weps) == sorted(ids.values())
    for name, cid in ids.items():
        wep = weps[cid]
        assert wep["metadata"]["name"] == f"node1-cni-{cid}-eth0"
        assert wep["metadata"]["namespace"] == "default"
        assert wep["metadata"]["labels"]["projectcalico.org/orchestrator"] == "cni"
        assert wep["spec"]["orchestrator"] == "cni"
        assert wep["spec"]["profiles"] == [NET]
        assert wep["spec"]["ipNetworks"] == [f"{ips[name]}/32"]
    profile = datastore.get("Profile", NET)
    assert profile["spec"]["labelsToApply"] == {NET: ""}
    rc, out = calicoctl(etcd_server, "get", "workloadendpoints", "--all-namespaces")
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE"]
    rows = sorted(line.split() for line in lines[1:] if line.strip())
    want = [["default", cid, "node1", f"{ips[n]}/32", weps[cid]["spec"]["interfaceName"]]
            for n, cid in ids.items()]  # fmt: skip
    assert rows == sorted(want)
