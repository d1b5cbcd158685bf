"""calicoctl ipam show / release / check against a real etcd."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from calico.cli.main import cli
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.ipam.client import IPAMClient

pytestmark = pytest.mark.etcd


def run(etcd_server: EtcdServer, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli, list(args), env={"ETCD_ENDPOINTS": etcd_server.endpoint, "DATASTORE_TYPE": "etcdv3"}
    )
    return res.exit_code, res.output


@pytest.fixture
def setup(etcd: EtcdClient, datastore: Client) -> tuple[str, str]:
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.80.0.0/24", "blockSize": 26},
        },
        validate=False,
    )
    ipam = IPAMClient(etcd)
    [used] = ipam.auto_assign(
        handle_id="net.c1", host="n1", attrs={"node": "n1", "namespace": "ns", "pod": "web"}
    )
    [leak] = ipam.auto_assign(handle_id="net.c2", host="n1", attrs={"node": "n1"})
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": "n1-k8s-web-eth0", "namespace": "ns"},
            "spec": {"ipNetworks": [f"{used}/32"]},
        },
        validate=False,
    )
    return used, leak


def test_show(etcd_server: EtcdServer, setup: tuple[str, str]) -> None:
    used, _ = setup
    code, out = run(etcd_server, "ipam", "show")
    assert code == 0, out
    assert "| IP Pool  | 10.80.0.0/24 | 256       | 2 (1%)     | 254 (99%) |" in out
    code, out = run(etcd_server, "ipam", "show", "--show-blocks")
    assert "| Block    | 10.80.0." in out
    assert "| 64        | 2 (3%)     | 62 (97%)  |" in out
    code, out = run(etcd_server, "ipam", "show", f"--ip={used}")
    assert code == 0
    assert f"IP {used} is in use" in out
    assert "Handle: net.c1" in out
    assert "  pod: web" in out
    code, out = run(etcd_server, "ipam", "show", "--ip=10.80.0.250")
    assert (code, out.strip()) == (0, "IP 10.80.0.250 is not assigned")
    code, out = run(etcd_server, "ipam", "show", "--ip=banana")
    assert code == 1
    assert "--ip: 'banana' is not a valid IP address" in out


def test_check_finds_leak_then_release_fixes_it(
    etcd_server: EtcdServer, setup: tuple[str, str]
) -> None:
    _, leak = setup
    code, out = run(etcd_server, "ipam", "check")
    assert code == 1
    assert "Found 1 IPs that are allocated in IPAM but not in use:" in out
    assert f"  {leak} (block 10.80.0." in out
    assert "handle net.c2" in out
    assert "Check complete; found 1 problems." in out
    code, out = run(etcd_server, "ipam", "release", f"--ip={leak}")
    assert (code, out.strip()) == (0, f"Successfully released IP address {leak}")
    code, out = run(etcd_server, "ipam", "release", f"--ip={leak}")
    assert code == 1
    assert f"IP address {leak} is not assigned" in out
    code, out = run(etcd_server, "ipam", "check")
    assert code == 0, out
    assert "Check complete; found 0 problems." in out


def test_unreachable_datastore_is_a_clean_error() -> None:
    res = CliRunner().invoke(cli, ["ipam", "show"], env={"ETCD_ENDPOINTS": "http://127.0.0.1:1"})
    assert res.exit_code == 1
    assert "Failed:" in res.output
