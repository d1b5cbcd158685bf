"""The CNI payload as install-cni puts it on a host, built here from this machine's own Debian
python3.11 (what the cni image carries): the bundled runtime runs alone, and a real ADD/DEL through
the installed launchers configures a pod in namespaces we made, with a real etcd."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.cni import install
from calico.datastore.client import Client
from calico.datastore.etcd_server import EtcdServer
from tests.integration.cni.conftest import Node, ip_json
from tests.integration.images.conftest import install_payload
from tests.nsnet import Forwarder, ping

pytestmark = [pytest.mark.netns, pytest.mark.etcd, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def host_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host bin dir filled by install-cni from a payload built like the image's."""
    d = tmp_path_factory.mktemp("cni-payload")
    bin_dir = d / "opt/cni/bin"
    done = install_payload(d, {"CNI_BIN_DIR": str(bin_dir), "CNI_NET_DIR": str(d / "net.d")})
    kind = "compiled" if install.compiler() else "Python"
    assert f"{bin_dir}/calico ({kind} launcher)" in done
    assert install.launcher_kind(bin_dir / "calico") == kind.lower()
    return bin_dir


@pytest.mark.parametrize("plugin", ["calico", ".calico-py"])
def test_add_and_del_through_the_bundled_runtime(
    host_bin: Path,
    plugin: str,
    make_netns: Callable[[], str],
    etcd_server: EtcdServer,
    datastore: Client,
) -> None:
    pool = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "pool1"},
            "spec": {"cidr": "10.66.0.0/16", "blockSize": 26}}  # fmt: skip
    datastore.create(pool, validate=False)
    node_ns, pod_ns = make_netns(), make_netns()
    # a node as the CNI tests make one: forwarding on, an uplink with an address and a default
    # route (proxy ARP for 169.254.1.1 answers only with a route out of another interface)
    subprocess.run(["ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                   check=True)  # fmt: skip
    subprocess.run(["ip", "-n", node_ns, "-batch", "-"], check=True, text=True, input=(
        "link add eth0 type veth peer name uplink0\nlink set eth0 up\nlink set uplink0 up\n"
        "addr add 10.99.0.1/24 dev eth0\nroute add default via 10.99.0.254 dev eth0 onlink\n"
    ))  # fmt: skip
    fwd = Forwarder(node_ns, etcd_server.port)
    node = Node("node1", node_ns, host_bin, etcd_server.endpoint, fwd)
    try:
        conf: dict[str, Any] = node.conf()
        # the host's PATH only: nothing of the test's venv can help the plugin along
        node.extra_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        r = node.run("ADD", conf, container_id="c1", netns=f"/var/run/netns/{pod_ns}",
                     plugin=plugin)  # fmt: skip
        assert r.rc == 0, r.stdout + r.stderr
        assert r.out is not None
        ip = r.out["ips"][0]["address"].split("/")[0]
        assert ip.startswith("10.66.")
        assert ping(node_ns, ip)
        r = node.run("DEL", conf, container_id="c1", netns=f"/var/run/netns/{pod_ns}",
                     plugin=plugin)  # fmt: skip
        assert r.rc == 0, r.stdout + r.stderr
        veths = [link["ifname"] for link in ip_json(node_ns, "link", "show", "type", "veth")]
        assert veths == ["uplink0", "eth0"]
    finally:
        fwd.close()
