"""The plugin talks to an etcd that requires client certificates (etcd_*_file in the config)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient, TLSFiles
from calico.datastore.etcd_server import EtcdServer, ServerTLS, free_port
from tests.integration.cli.test_cli_tls import make_certs
from tests.integration.cni.conftest import Node
from tests.nsnet import Forwarder, tcp_roundtrip

pytestmark = [
    pytest.mark.netns,
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]


def test_add_del_over_mtls(tmp_path: Path, make_netns: Callable[[], str], bin_dir: Path) -> None:
    d = tmp_path / "tls"
    d.mkdir()
    make_certs(d)
    client_tls = TLSFiles(str(d / "ca.crt"), str(d / "client.crt"), str(d / "client.key"))
    server = EtcdServer(
        d / "etcd", port=free_port(), peer_port=free_port(),
        tls=ServerTLS(str(d / "server.crt"), str(d / "server.key"), str(d / "ca.crt"),
                      client_cert_auth=True),
        client_tls=client_tls,
    )  # fmt: skip
    server.start()
    host = make_netns()
    fwd = Forwarder(host, server.port)
    try:
        Client(EtcdClient([server.endpoint], tls=client_tls)).create(
            {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
             "spec": {"cidr": "10.67.0.0/24"}}, validate=False)  # fmt: skip
        node = Node("node1", host, bin_dir, server.endpoint, fwd)
        subprocess.run(
            ["ip", "-n", host, "-batch", "-"],
            check=True,
            text=True,
            input=(
                "link add eth0 type veth peer name uplink0\nlink set eth0 up\nlink set uplink0 up\n"
                "addr add 10.99.0.1/24 dev eth0\n"
                "route add default via 10.99.0.254 dev eth0 onlink\n"
            ),
        )
        conf = node.conf(
            etcd_ca_cert_file=str(d / "ca.crt"),
            etcd_cert_file=str(d / "client.crt"),
            etcd_key_file=str(d / "client.key"),
        )
        assert conf["etcd_endpoints"].startswith("https://")
        pod = make_netns()
        r = node.run("ADD", conf, container_id="t1", netns=f"/var/run/netns/{pod}")
        assert r.rc == 0, r.stdout + r.stderr
        ip = r.answer["ips"][0]["address"].split("/")[0]
        assert tcp_roundtrip(host, pod, ip) == b"echo:hello"
        # without the client certificate etcd refuses: a clean "try again" error
        bare = node.conf()
        r2 = node.run("ADD", bare, container_id="t2", netns=f"/var/run/netns/{pod}")
        assert r2.rc == 1
        assert r2.answer["code"] == 11
        assert node.run("DEL", conf, container_id="t1", netns=f"/var/run/netns/{pod}").rc == 0
    finally:
        fwd.close()
        server.stop()
