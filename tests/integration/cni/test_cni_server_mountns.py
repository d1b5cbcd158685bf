"""Issue #19: a CNI server in a mount namespace of its own (a containerised calico-node) serves
calls whose paths only the caller's mount namespace has, e.g. containerd's pod netns bind mounts.

The server runs in the node's network namespace but its own mount namespace, with a tmpfs over
``/var/run/netns`` (it sees no named namespace at all); each call's CNI_NETNS is a bind mount
made only in that call's private mount namespace. The launchers pass their root directory with
the request, so the server resolves CNI_NETNS as the caller does: ADD, CHECK and DEL are served,
and the pod works.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import Node, ip_json
from tests.integration.cni.test_cni_server import ServerProc
from tests.nsnet import ping, tcp_roundtrip

pytestmark = [pytest.mark.netns, pytest.mark.etcd]

# a private mount namespace for the server, /var/run/netns hidden under a tmpfs (only there)
HIDE_NETNS = ("unshare", "-m", "--propagation", "private", "--", "sh", "-c",
              'mount -t tmpfs calt-hidden /var/run/netns && exec "$@"', "sh")  # fmt: skip


def caller_only(pod: str, path: Path) -> tuple[str, ...]:
    """Run the plugin in a private mount namespace where ``path`` is the pod's netns."""
    script = f'mount --bind /var/run/netns/{pod} {path} && exec "$@"'
    return ("unshare", "-m", "--propagation", "private", "--", "sh", "-c", script, "sh")


@pytest.mark.parametrize("launcher", ["compiled", "python"])
def test_served_from_another_mount_namespace(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    etcd: EtcdClient,
    tmp_path: Path,
    launcher: str,
) -> None:
    node = make_node("node1")
    srv = ServerProc(node.netns, tmp_path / "cni.sock", tmp_path / "server.log", wrap=HIDE_NETNS)
    try:
        pod = make_netns()
        hidden = tmp_path / "pod-netns"
        hidden.touch()  # a plain empty file everywhere but in the caller's mount namespace
        for path in (f"/var/run/netns/{pod}", str(hidden)):  # the server cannot open either
            seen = subprocess.run(
                ["nsenter", f"--mount=/proc/{srv.proc.pid}/ns/mnt", "nsenter", f"--net={path}",
                 "true"], capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert seen.returncode != 0, path
        wrap = caller_only(pod, hidden)
        conf = node.conf()
        args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=m1"
        r = node.run("ADD", conf, container_id="m1", netns=str(hidden), args=args, wrap=wrap)
        assert r.rc == 0, r.stdout + r.stderr
        ip = r.answer["ips"][0]["address"].split("/")[0]
        [eth0] = ip_json(pod, "addr", "show", "dev", "eth0")
        assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == [ip]
        assert ping(node.netns, ip)
        assert tcp_roundtrip(node.netns, pod, ip) == b"echo:hello"
        chk = node.run("CHECK", {**conf, "prevResult": r.out}, container_id="m1",
                       netns=str(hidden), args=args, wrap=wrap)  # fmt: skip
        assert chk.rc == 0, chk.stdout + chk.stderr
        d = node.run("DEL", conf, container_id="m1", netns=str(hidden), args=args, wrap=wrap)
        assert d.rc == 0, d.stdout + d.stderr
    finally:
        srv.stop()
    assert IPAMClient(etcd).ip_info(ip) is None
    assert srv.lines() == [
        "served calico ADD m1 rc=0",
        "served calico CHECK m1 rc=0",
        "served calico DEL m1 rc=0",
    ]
