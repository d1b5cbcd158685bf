"""Bad input and failures: the spec's error JSON with the right code, quickly, leaving nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import Node, ip_json

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


@pytest.mark.parametrize(
    ("mutate", "code", "text"),
    [
        (lambda c: c.pop("ipam"), 7, "ipam: missing"),
        (lambda c: c.update(cniVersion="9.9.9"), 1, "cniVersion: '9.9.9' is not supported"),
        (lambda c: c.update(mtu="big"), 7, "mtu: expected an integer from 68 to 65535, got 'big'"),
        (lambda c: c.update(mtu=70000), 7, "got 70000"),
        (
            lambda c: c.update(ipam={"type": "calico-ipam", "assign_ipv4": "maybe"}),
            7,
            "ipam.assign_ipv4",
        ),
        (lambda c: c.update(datastore_type="consul"), 7, "datastore_type: 'consul'"),
        (lambda c: c.pop("name"), 7, "name:"),
    ],
)
def test_bad_config(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    mutate: Callable[[dict[str, Any]], object],
    code: int,
    text: str,
) -> None:
    node = make_node("node1")
    ns = make_netns()
    conf = node.conf()
    mutate(conf)
    r = node.run("ADD", conf, container_id="c1", netns=f"/var/run/netns/{ns}")
    assert r.rc == 1
    assert r.answer["code"] == code
    assert text in r.answer["msg"]
    assert r.answer["cniVersion"] == conf["cniVersion"]  # "9.9.9" too: the version asked for
    assert [link["ifname"] for link in ip_json(ns, "link")] == ["lo"]


def test_bad_json_and_env(make_node: Callable[[str], Node], make_netns: Callable[[], str]) -> None:
    node = make_node("node1")
    ns = make_netns()
    r = node.run("ADD", node.conf(), container_id="", netns=f"/var/run/netns/{ns}")
    assert (r.rc, r.answer["code"]) == (1, 4)
    assert "CNI_CONTAINERID" in r.answer["msg"]
    r = node.run("ADD", node.conf(), container_id="c", netns="")
    assert (r.rc, r.answer["code"]) == (1, 4)
    r = node.run("FROB", node.conf(), container_id="c", netns="")
    assert (r.rc, r.answer["code"]) == (1, 4)
    r = node.run("ADD", node.conf(), container_id="c", netns="/var/run/netns/calt-nope")
    assert (r.rc, r.answer["code"]) == (1, 3)
    assert "no such network namespace" in r.answer["msg"]
    v = node.run("VERSION", {"cniVersion": "0.4.0"})
    assert v.out == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    }


def test_pool_exhaustion_is_a_quick_clear_error(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    datastore: Client,
    etcd: EtcdClient,
) -> None:
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "tiny"},
            "spec": {"cidr": "10.66.0.0/31", "blockSize": 31},
        },
        validate=False,
    )
    node = make_node("node1")
    got = []
    for i in range(2):
        ns = make_netns()
        r = node.run("ADD", node.conf(), container_id=f"c{i}", netns=f"/var/run/netns/{ns}")
        assert r.rc == 0, r.stdout
        got.append(r.answer["ips"][0]["address"])
    ns = make_netns()
    start = time.monotonic()
    r = node.run("ADD", node.conf(), container_id="c3", netns=f"/var/run/netns/{ns}", timeout=30)
    assert time.monotonic() - start < 10
    assert r.rc == 1
    assert r.answer["code"] == 100
    assert "no more free IPv4 addresses" in r.answer["msg"]
    assert "10.66.0.0/31" in r.answer["msg"]
    assert [link["ifname"] for link in ip_json(ns, "link")] == ["lo"]
    assert IPAMClient(etcd).ips_by_handle("net1.c3") == []


def test_etcd_unreachable_is_try_again(
    make_node: Callable[[str], Node], make_netns: Callable[[], str], pool: dict[str, Any]
) -> None:
    node = make_node("node1")
    ns = make_netns()
    conf = node.conf(etcd_endpoints="http://127.0.0.1:1")
    r = node.run("ADD", conf, container_id="c1", netns=f"/var/run/netns/{ns}")
    assert r.rc == 1
    assert r.answer["code"] == 11
    assert "datastore unavailable" in r.answer["msg"]


def test_dataplane_failure_undoes_everything(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
    etcd: EtcdClient,
) -> None:
    import subprocess

    node = make_node("node1")
    ns = make_netns()
    # the pod already has an eth0, so the veth's pod end cannot be created there
    subprocess.run(
        ["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "x0"], check=True
    )
    r = node.run(
        "ADD",
        node.conf(),
        container_id="c1",
        netns=f"/var/run/netns/{ns}",
        args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
    )
    assert r.rc == 1
    assert r.answer["code"] == 101
    assert "File exists" in r.answer["msg"]
    assert [link["ifname"] for link in ip_json(node.netns, "link")] == ["lo", "uplink0", "eth0"]
    assert IPAMClient(etcd).ips_by_handle("net1.c1") == []
    assert datastore.list("WorkloadEndpoint") == []


def test_bad_calls_write_nothing(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    etcd: EtcdClient,
) -> None:
    """No container ID, an unknown CNI_ARGS key without IgnoreUnknown: code 4, and neither an
    address, an endpoint, a Profile nor a link was made."""
    node = make_node("node1")
    ns = make_netns()
    netns = f"/var/run/netns/{ns}"
    before = etcd.revision()
    for container_id, args, field in [
        ("", "", "CNI_CONTAINERID"),
        ("c1", "FOO=bar", "FOO"),
        ("c1", "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;EXTRA=1", "EXTRA"),
        ("-c1", "", "containerID '-c1'"),  # Calico refuses a name segment beginning with '-'
        # the agent refuses an endpoint whose name breaks the resource-name rule: refused here
        ("Ctr_1", "", "containerID 'Ctr_1'"),
    ]:
        r = node.run("ADD", node.conf(), container_id=container_id, netns=netns, args=args)
        assert (r.rc, r.answer["code"]) == (1, 4), r.stdout
        assert field in r.answer["msg"]
        assert r.answer["cniVersion"] == "1.0.0"
    assert etcd.revision() == before
    assert [link["ifname"] for link in ip_json(ns, "link")] == ["lo"]
    assert [link["ifname"] for link in ip_json(node.netns, "link")] == ["lo", "uplink0", "eth0"]
