"""100 concurrent ADDs on three nodes sharing one etcd, then 100 DELs: no duplicates, no leaks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from calico.cli.main import cli
from calico.cni import install
from calico.datastore.etcd_server import EtcdServer
from tests.integration.cni.conftest import Node, PluginRun
from tests.integration.cni.test_cni_server import ServerProc
from tests.nsnet import ping

pytestmark = [pytest.mark.netns, pytest.mark.etcd, pytest.mark.slow]

PODS = 100


def calicoctl(etcd_server: EtcdServer, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli, list(args), env={"ETCD_ENDPOINTS": etcd_server.endpoint, "DATASTORE_TYPE": "etcdv3"}
    )
    return res.exit_code, res.output


@pytest.mark.parametrize("cni_server", [False, True], ids=["in-process", "cni-server"])
def test_100_concurrent_adds_on_3_nodes(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    etcd_server: EtcdServer,
    tmp_path: Path,
    cni_server: bool,
) -> None:
    nodes = [make_node(f"node-{i}") for i in range(3)]
    pods = [(nodes[i % 3], make_netns(), f"pod-{i}") for i in range(PODS)]
    servers: list[ServerProc] = []
    if cni_server:  # one CNI server per node namespace, found through the {netns} socket template
        template = str(tmp_path / "cni-{netns}.sock")
        shared = tmp_path / "shared-bin"
        install.install_binaries(shared, socket_path=template)
        for i, node in enumerate(nodes):
            node.bin_dir = shared
            servers.append(ServerProc(node.netns, template, tmp_path / f"server{i}.log"))
    try:
        run_scale(nodes, pods, etcd_server)
    finally:
        for s in servers:
            s.stop()
    for node, s in zip(nodes, servers, strict=False):  # every call served, none fell back
        assert len(s.lines()) == 2 * sum(1 for pod in pods if pod[0] is node)
        assert all(line.startswith("served calico") for line in s.lines())


def run_scale(
    nodes: list[Node], pods: list[tuple[Node, str, str]], etcd_server: EtcdServer
) -> None:
    def call(command: str, item: tuple[Node, str, str]) -> PluginRun:
        node, ns, name = item
        return node.run(
            command,
            node.conf(),
            container_id=f"cid{name}",
            netns=f"/var/run/netns/{ns}",
            args=f"K8S_POD_NAMESPACE=scale;K8S_POD_NAME={name}",
            timeout=120,
        )

    with ThreadPoolExecutor(max_workers=16) as pool_exec:
        runs = list(pool_exec.map(functools.partial(call, "ADD"), pods))
    failed = [r.stdout + r.stderr for r in runs if r.rc != 0]
    assert failed == []
    ips = [r.out["ips"][0]["address"].split("/")[0] for r in runs if r.out]
    assert len(ips) == PODS
    assert len(set(ips)) == PODS, "an address was handed out twice"

    # a sample of pods answers from their node
    for (node, _, _), ip in list(zip(pods, ips, strict=True))[:: PODS // 5]:
        assert ping(node.netns, ip)
    code, out = calicoctl(etcd_server, "ipam", "show", "--show-blocks")
    assert code == 0, out
    assert "| 100 (0%)" in out
    assert calicoctl(etcd_server, "ipam", "check")[0] == 0

    with ThreadPoolExecutor(max_workers=16) as pool_exec:
        dels = list(pool_exec.map(functools.partial(call, "DEL"), pods))
    assert [r.stdout + r.stderr for r in dels if r.rc != 0] == []
    code, out = calicoctl(etcd_server, "ipam", "show")
    assert code == 0, out
    assert "| IP Pool  | 10.65.0.0/16 | 65536     | 0 (0%)" in out
    code, out = calicoctl(etcd_server, "ipam", "check")
    assert code == 0, out
    assert "Found 0 IPs that are allocated in IPAM but not in use" in out
