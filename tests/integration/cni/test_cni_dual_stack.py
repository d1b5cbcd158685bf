"""Dual-stack and IPv6-only pods take IPv4's path: rtnetlink from the plugin, no ``ip`` exec.

ADD and DEL run with a PATH that holds no ``ip`` or ``nsenter`` (so any exec would fail the call),
in-process and through the CNI server; the result is read back with ``ip -j`` attribute by
attribute, traffic flows in both families, CHECK passes and then catches damage, DEL leaves
nothing behind.
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

NO_TOOLS = "/nonexistent"  # the plugin may exec nothing during ADD/DEL


def _family(addrs: list[dict[str, Any]], fam: str) -> list[tuple[str, int, str]]:
    return [(a["local"], a["prefixlen"], a.get("scope", "")) for a in addrs if a["family"] == fam]


def _assert_dataplane(node_ns: str, pod_ns: str, out: dict[str, Any], v4: bool) -> list[str]:
    """The pod as ADD must build it, read back with `ip -j`; returns its addresses."""
    host_if = out["interfaces"][0]["name"]
    addrs = [e["address"].split("/")[0] for e in out["ips"]]
    ip6 = next(a for a in addrs if ":" in a)
    [link] = ip_json(node_ns, "-d", "link", "show", "dev", host_if)
    assert link["inet6_addr_gen_mode"] == "none"  # no kernel link-local beside ours
    [host] = ip_json(node_ns, "addr", "show", "dev", host_if)
    assert host["address"] == "ee:ee:ee:ee:ee:ee"
    assert "UP" in host["flags"]
    assert _family(host["addr_info"], "inet6") == [("fe80::ecee:eeff:feee:eeee", 64, "link")]
    assert not any(a.get("tentative") for a in host["addr_info"])
    assert _family(host["addr_info"], "inet") == []  # the host veth has no IPv4 address
    host_routes = ip_json(node_ns, "-6", "route", "show", "dev", host_if)
    assert [(r["dst"], r["protocol"]) for r in host_routes if r["dst"] == ip6] == [(ip6, "80")]
    [pod] = ip_json(pod_ns, "addr", "show", "dev", "eth0")
    assert pod["address"] == out["interfaces"][1]["mac"]
    pod6 = [a for a in _family(pod["addr_info"], "inet6") if a[2] == "global"]
    assert pod6 == [(ip6, 128, "global")]
    assert not any(a.get("tentative") for a in pod["addr_info"] if a["local"] == ip6)
    [default6] = ip_json(pod_ns, "-6", "route", "show", "default")
    assert (default6["gateway"], default6["dev"]) == ("fe80::ecee:eeff:feee:eeee", "eth0")
    routes4 = {(x["dst"], x.get("gateway")) for x in ip_json(pod_ns, "route")}
    if v4:
        ip4 = next(a for a in addrs if ":" not in a)
        assert _family(pod["addr_info"], "inet") == [(ip4, 32, "global")]
        assert routes4 == {("169.254.1.1", None), ("default", "169.254.1.1")}
        [r4] = ip_json(node_ns, "route", "show", "dev", host_if)
        assert (r4["dst"], r4["scope"], r4["protocol"]) == (ip4, "link", "80")
    else:
        assert routes4 == set()
    return addrs


@pytest.mark.parametrize("served", [False, True], ids=["in-process", "server"])
def test_dual_stack_add_check_del(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    pool6: dict[str, Any],
    etcd: EtcdClient,
    tmp_path: Path,
    served: bool,
) -> None:
    node = make_node("node1")
    node.extra_env["PATH"] = NO_TOOLS
    srv = ServerProc(node.netns, tmp_path / "cni.sock", tmp_path / "server.log") if served else None
    try:
        pod_ns = make_netns()
        netns = f"/var/run/netns/{pod_ns}"
        conf = node.conf(ipam={"type": "calico-ipam", "assign_ipv6": "true"})
        r = node.run("ADD", conf, container_id="ds1", netns=netns)
        assert r.rc == 0, r.stdout + r.stderr
        assert [e["address"].endswith("/32") for e in r.answer["ips"]] == [True, False]
        assert r.answer["routes"] == [
            {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
            {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"},
        ]
        assert "dns" not in r.answer  # nothing configured: omitted
        addrs = _assert_dataplane(node.netns, pod_ns, r.answer, v4=True)
        for ip in addrs:
            assert ping(node.netns, ip), ip
            assert tcp_roundtrip(node.netns, pod_ns, ip) == b"echo:hello"
        node.extra_env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"  # CHECK reads with `ip -j`
        chk = node.run("CHECK", {**conf, "prevResult": r.out}, container_id="ds1", netns=netns)
        assert chk.rc == 0, chk.stdout + chk.stderr
        subprocess.run(["ip", "-n", pod_ns, "-6", "route", "del", "default"], check=True)
        chk = node.run("CHECK", {**conf, "prevResult": r.out}, container_id="ds1", netns=netns)
        assert (chk.rc, chk.answer["code"]) == (1, 102)
        assert "no IPv6 default route" in chk.answer["msg"]
        node.extra_env["PATH"] = NO_TOOLS
        d = node.run("DEL", conf, container_id="ds1", netns=netns)
        assert d.rc == 0, d.stdout + d.stderr
    finally:
        if srv is not None:
            srv.stop()
    assert [link["ifname"] for link in ip_json(node.netns, "link", "show", "type", "veth")] == [
        "uplink0",
        "eth0",
    ]
    ipam = IPAMClient(etcd)
    assert all(ipam.ip_info(ip) is None for ip in addrs)
    if srv is not None:
        assert srv.lines() == [
            "served calico ADD ds1 rc=0",
            "served calico CHECK ds1 rc=0",
            "served calico CHECK ds1 rc=1",
            "served calico DEL ds1 rc=0",
        ]


def test_ipv6_only_pod(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool6: dict[str, Any],
    etcd: EtcdClient,
) -> None:
    node = make_node("node1")
    node.extra_env["PATH"] = NO_TOOLS
    pod_ns = make_netns()
    conf = node.conf(ipam={"type": "calico-ipam", "assign_ipv4": "false", "assign_ipv6": "true"})
    r = node.run("ADD", conf, container_id="v6", netns=f"/var/run/netns/{pod_ns}")
    assert r.rc == 0, r.stdout + r.stderr
    [ip6] = _assert_dataplane(node.netns, pod_ns, r.answer, v4=False)
    assert ping(node.netns, ip6)
    assert node.run("DEL", conf, container_id="v6", netns=f"/var/run/netns/{pod_ns}").rc == 0
    assert IPAMClient(etcd).ip_info(ip6) is None
    assert ip_json(pod_ns, "link", "show", "type", "veth") == []
