"""ADD / CHECK / DEL / DEL-again of the calico plugin in real namespaces with a real etcd."""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client, NotFound
from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import Node, ip_json
from tests.nsnet import ping, tcp_roundtrip

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_add_check_del(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
    etcd: EtcdClient,
    tmp_path: Path,
) -> None:
    node = make_node("node1")
    pod_ns = make_netns()
    log_file = tmp_path / "log" / "cni.log"
    conf = node.conf(log_file_path=str(log_file))
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=c1"
    r = node.run("ADD", conf, container_id="c1", netns=f"/var/run/netns/{pod_ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    assert r.stderr == ""  # log_level info: nothing on stderr, a line in the log file
    assert r.out is not None
    ip = r.out["ips"][0]["address"].split("/")[0]
    assert r.out["ips"][0]["address"].endswith("/32")
    assert r.out["interfaces"][r.out["ips"][0]["interface"]]["name"] == "eth0"
    host_if = r.out["interfaces"][0]["name"]
    assert host_if.startswith("cali")
    assert len(host_if) == 15

    # the pod answers from the node's namespace: ICMP and TCP
    assert ping(node.netns, ip)
    assert tcp_roundtrip(node.netns, pod_ns, ip) == b"echo:hello"

    wep = datastore.get("WorkloadEndpoint", "node1-k8s-web--1-eth0", "ns1")
    assert wep["spec"]["ipNetworks"] == [f"{ip}/32"]
    assert wep["spec"]["interfaceName"] == host_if
    assert wep["spec"]["profiles"] == ["kns.ns1"]
    assert wep["metadata"]["labels"]["projectcalico.org/namespace"] == "ns1"
    routes = ip_json(node.netns, "route", "show", "dev", host_if)
    assert routes[0]["dst"] == ip
    assert routes[0]["protocol"] == "80"

    conf_check = {**conf, "prevResult": r.out}
    r2 = node.run(
        "CHECK", conf_check, container_id="c1", netns=f"/var/run/netns/{pod_ns}", args=args
    )
    assert r2.rc == 0, r2.stdout + r2.stderr

    r3 = node.run("DEL", conf_check, container_id="c1", netns=f"/var/run/netns/{pod_ns}", args=args)
    assert r3.rc == 0, r3.stdout + r3.stderr
    assert [link["ifname"] for link in ip_json(node.netns, "link", "show", "type", "veth")] == [
        "uplink0",
        "eth0",
    ]
    assert ip_json(pod_ns, "link", "show", "type", "veth") == []
    with pytest.raises(NotFound):
        datastore.get("WorkloadEndpoint", "node1-k8s-web--1-eth0", "ns1")
    assert IPAMClient(etcd).ip_info(ip) is None

    # runtimes call DEL again, the second time without a netns
    r4 = node.run("DEL", conf, container_id="c1", netns="", args=args)
    assert r4.rc == 0, r4.stdout + r4.stderr
    log = log_file.read_text().splitlines()
    assert len(log) == 3
    assert f"calico-cni ADD c1: ['{ip}/32'] on {host_if}" in log[0]
    assert f"calico-cni DEL c1: removed {host_if}" in log[1]


def test_ipv4_dataplane_as_ip_would_build_it(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
) -> None:
    """IPv4-only ADD uses rtnetlink from the plugin process: every attribute as `ip` sets it."""
    node = make_node("node1")
    pod_ns = make_netns()
    r = node.run("ADD", node.conf(mtu=1400), container_id="n1", netns=f"/var/run/netns/{pod_ns}")
    assert r.rc == 0, r.stdout + r.stderr
    ip = r.answer["ips"][0]["address"].split("/")[0]
    host_if = r.answer["interfaces"][0]["name"]
    [host] = ip_json(node.netns, "-d", "link", "show", "dev", host_if)
    assert host["address"] == "ee:ee:ee:ee:ee:ee"
    assert host["mtu"] == 1400
    assert "UP" in host["flags"]
    assert host["linkinfo"]["info_kind"] == "veth"
    [route] = ip_json(node.netns, "route", "show", "dev", host_if)
    assert (route["dst"], route["scope"], route["protocol"]) == (ip, "link", "80")
    [pod] = ip_json(pod_ns, "addr", "show", "dev", "eth0")
    assert pod["mtu"] == 1400
    assert "UP" in pod["flags"]
    assert pod["address"] == r.answer["interfaces"][1]["mac"]
    v4 = [(a["local"], a["prefixlen"]) for a in pod["addr_info"] if a["family"] == "inet"]
    assert v4 == [(ip, 32)]
    routes = {(x["dst"], x.get("gateway"), x.get("scope")) for x in ip_json(pod_ns, "route")}
    assert routes == {("169.254.1.1", None, "link"), ("default", "169.254.1.1", None)}
    wep = datastore.get("WorkloadEndpoint", "node1-cni-n1-eth0", "default")
    assert wep["spec"]["mac"] == pod["address"]
    assert ping(node.netns, ip)
    # a stale veth of the same name (an earlier sandbox) is replaced
    again = make_netns()
    r2 = node.run("ADD", node.conf(), container_id="n1", netns=f"/var/run/netns/{again}")
    assert r2.rc == 0, r2.stdout + r2.stderr
    assert ip_json(pod_ns, "link", "show", "type", "veth") == []
    assert ping(node.netns, r2.answer["ips"][0]["address"].split("/")[0])


def test_host_route_already_programmed_by_the_agent(make_node, make_netns, pool):
    """The agent may add the pod's host route first (it watches the endpoint); ADD must not fail
    with EEXIST on it: the host route is a `route replace`, and a repeat is harmless."""
    node = make_node("node1")
    pod_ns = make_netns()
    r = node.run("ADD", node.conf(), container_id="r1", netns=f"/var/run/netns/{pod_ns}")
    assert r.rc == 0, r.stdout + r.stderr
    ip = r.out["ips"][0]["address"].split("/")[0]
    host_if = r.out["interfaces"][0]["name"]
    code = (
        "import sys, socket\n"
        "from calico.cni import netlink\n"
        "idx = socket.if_nametoindex(sys.argv[1])\n"
        "with netlink.Netlink() as nl:\n"
        "    nl.add_route(idx, sys.argv[2], 32, proto=80, replace=True)\n"
        "    try:\n"
        "        nl.add_route(idx, sys.argv[2], 32, proto=80)\n"
        "    except netlink.NetlinkError as exc:\n"
        "        print('exclusive add:', exc.errno)\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", node.netns, sys.executable, "-c", code, host_if, ip],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"exclusive add: {errno.EEXIST}"
    assert [x["dst"] for x in ip_json(node.netns, "route", "show", "dev", host_if)] == [ip]
