"""calico-ipam on its own, as a runtime or another main plugin calls it (ADD, CHECK, DEL, DEL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import Node

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_calico_ipam_plugin(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    pool6: dict[str, Any],
    etcd: EtcdClient,
    version: str,
) -> None:
    node = make_node("node1")
    ns = make_netns()
    conf = {
        "cniVersion": version,
        "name": "other",
        "type": "whatever",
        "etcd_endpoints": node.endpoint,
        "nodename": "node1",
        "ipam": {"type": "calico-ipam", "assign_ipv6": "true"},
        "dns": {"nameservers": ["1.1.1.1"]},
    }
    args = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"
    r = node.run(
        "ADD",
        conf,
        container_id="p1",
        netns=f"/var/run/netns/{ns}",
        args=args,
        plugin="calico-ipam",
    )
    assert r.rc == 0, r.stdout + r.stderr
    assert "interfaces" not in r.answer
    assert r.answer["dns"] == {"nameservers": ["1.1.1.1"]}
    addrs = [e["address"] for e in r.answer["ips"]]
    assert addrs[0].startswith("10.65.")
    assert addrs[0].endswith("/32")
    assert addrs[1].startswith("fd65::")
    assert addrs[1].endswith("/128")
    info = IPAMClient(etcd).ip_info(addrs[0].split("/")[0])
    assert info is not None
    assert info["handle_id"] == "other.p1"
    assert info["attributes"] == {"node": "node1", "namespace": "ns", "pod": "p"}
    assert (
        node.run(
            "ADD",
            conf,
            container_id="p1",
            netns=f"/var/run/netns/{ns}",
            args=args,
            plugin="calico-ipam",
        ).answer["ips"]
        == r.answer["ips"]
    )  # a repeated ADD: same IPs
    chk = node.run(
        "CHECK",
        {**conf, "cniVersion": "1.0.0", "prevResult": r.out},
        container_id="p1",
        netns=f"/var/run/netns/{ns}",
        plugin="calico-ipam",
    )
    assert chk.rc == 0, chk.stdout + chk.stderr
    d = node.run("DEL", conf, container_id="p1", netns=f"/var/run/netns/{ns}", plugin="calico-ipam")
    assert d.rc == 0, d.stdout + d.stderr
    assert IPAMClient(etcd).ips_by_handle("other.p1") == []
    chk = node.run(
        "CHECK",
        {**conf, "cniVersion": "1.0.0", "prevResult": r.out},
        container_id="p1",
        netns=f"/var/run/netns/{ns}",
        plugin="calico-ipam",
    )
    assert chk.rc == 1
    assert chk.answer["code"] == 102
    again = node.run("DEL", conf, container_id="p1", netns="", plugin="calico-ipam")
    assert again.rc == 0
