"""Tunnel addresses against a real etcd: allocation through IPAM (handle, attributes), release when
the mode goes off, replacement, an address released or taken behind our back, nodeSelector, two
nodes at once, and ``calicoctl ipam check`` clean after each."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.ipam.client import IPAMClient
from calico.node import tunnels
from calico.node.tunnels import IPIP, VXLAN, TunnelAllocator

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

BIN = Path(sys.executable).parent


def put_pool(ds: Client, name: str, cidr: str, **spec: Any) -> None:
    ds.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec},
        }
    )


def make_node(ds: Client, name: str, labels: dict[str, str] | None = None, **spec: Any) -> None:
    ds.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 65001}, **spec},
        }
    )


def ipip_of(ds: Client, name: str) -> str:
    return tunnels.get_address(ds.get("Node", name), IPIP)


def in_net(addr: str, cidr: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr)


def ipam_check(etcd_server: EtcdServer) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ETCD_ENDPOINTS": etcd_server.endpoint}
    return subprocess.run(
        [str(BIN / "calicoctl"), "ipam", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def assert_ipam_clean(etcd_server: EtcdServer) -> None:
    out = ipam_check(etcd_server)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "found 0 problems" in out.stdout


def test_allocate_keep_release(
    etcd: EtcdClient, datastore: Client, etcd_server: EtcdServer
) -> None:
    make_node(datastore, "n1", labels={"rack": "1"})
    put_pool(datastore, "p", "10.60.0.0/16", ipipMode="Always")
    alloc = TunnelAllocator(etcd, "n1")

    [change] = alloc.reconcile()
    addr = ipip_of(datastore, "n1")
    assert change == tunnels.Change("IPIP", "", addr)
    assert in_net(addr, "10.60.0.0/16")
    info = IPAMClient(etcd).ip_info(addr)
    assert info is not None
    assert info["handle_id"] == "ipip-tunnel-addr-n1"
    assert info["attributes"] == {"node": "n1", "type": "ipipTunnelAddress"}
    node = datastore.get("Node", "n1")
    assert node["spec"]["bgp"]["asNumber"] == 65001  # fields we do not own are kept
    assert node["metadata"]["labels"] == {"rack": "1"}
    assert "ipv4VXLANTunnelAddr" not in node["spec"]
    assert_ipam_clean(etcd_server)

    rv = node["metadata"]["resourceVersion"]
    assert alloc.reconcile() == []  # settled: nothing written
    assert datastore.get("Node", "n1")["metadata"]["resourceVersion"] == rv

    put_pool(datastore, "p", "10.60.0.0/16", ipipMode="Never")
    assert alloc.reconcile() == [tunnels.Change("IPIP", addr, "")]
    assert ipip_of(datastore, "n1") == ""
    assert IPAMClient(etcd).ip_info(addr) is None
    assert IPAMClient(etcd).handle_blocks("ipip-tunnel-addr-n1") == {}
    assert datastore.get("Node", "n1")["spec"]["bgp"] == {
        "ipv4Address": "10.0.0.1/24",
        "asNumber": 65001,
    }
    assert_ipam_clean(etcd_server)


def test_replaced_when_no_longer_in_a_wanted_pool(etcd: EtcdClient, datastore: Client) -> None:
    make_node(datastore, "n1")
    put_pool(datastore, "old", "10.61.0.0/16", ipipMode="CrossSubnet")
    alloc = TunnelAllocator(etcd, "n1")
    alloc.reconcile()
    old = ipip_of(datastore, "n1")
    assert in_net(old, "10.61.0.0/16")

    put_pool(datastore, "old", "10.61.0.0/16", ipipMode="Never")
    put_pool(datastore, "new", "10.62.0.0/16", ipipMode="Always")
    assert alloc.reconcile() == [tunnels.Change("IPIP", old, ipip_of(datastore, "n1"))]
    assert in_net(ipip_of(datastore, "n1"), "10.62.0.0/16")
    assert IPAMClient(etcd).ip_info(old) is None
    assert IPAMClient(etcd).ips_by_handle("ipip-tunnel-addr-n1") == [ipip_of(datastore, "n1")]

    # a disabled pool gives no new addresses
    put_pool(datastore, "new", "10.62.0.0/16", ipipMode="Always", disabled=True)
    alloc.reconcile()
    assert ipip_of(datastore, "n1") == ""


def test_vxlan_address_and_mac(
    etcd: EtcdClient, datastore: Client, etcd_server: EtcdServer
) -> None:
    make_node(datastore, "n1")
    put_pool(datastore, "v", "10.63.0.0/16", vxlanMode="Always")
    alloc = TunnelAllocator(etcd, "n1")
    [change] = alloc.reconcile()
    spec = datastore.get("Node", "n1")["spec"]
    assert change.tunnel == "VXLAN"
    assert in_net(spec["ipv4VXLANTunnelAddr"], "10.63.0.0/16")
    assert spec["vxlanTunnelMACAddr"] == tunnels.derive_mac("n1")
    assert "ipv4IPIPTunnelAddr" not in spec["bgp"]
    info = IPAMClient(etcd).ip_info(spec["ipv4VXLANTunnelAddr"])
    assert info is not None
    assert info["handle_id"] == "vxlan-tunnel-addr-n1"
    assert info["attributes"]["type"] == "vxlanTunnelAddress"
    assert_ipam_clean(etcd_server)

    # IPIP and VXLAN pools side by side: one address each
    put_pool(datastore, "i", "10.64.0.0/16", ipipMode="Always")
    alloc.reconcile()
    assert in_net(ipip_of(datastore, "n1"), "10.64.0.0/16")
    assert datastore.get("Node", "n1")["spec"]["ipv4VXLANTunnelAddr"] == spec["ipv4VXLANTunnelAddr"]

    put_pool(datastore, "v", "10.63.0.0/16", vxlanMode="Never")
    alloc.reconcile()
    spec = datastore.get("Node", "n1")["spec"]
    assert "ipv4VXLANTunnelAddr" not in spec
    assert "vxlanTunnelMACAddr" not in spec  # ours (derived): removed with the address
    assert_ipam_clean(etcd_server)


def test_admin_mac_is_kept(etcd: EtcdClient, datastore: Client) -> None:
    make_node(datastore, "n1", vxlanTunnelMACAddr="66:00:00:00:00:01")
    put_pool(datastore, "v", "10.63.0.0/16", vxlanMode="CrossSubnet")
    alloc = TunnelAllocator(etcd, "n1")
    alloc.reconcile()
    assert datastore.get("Node", "n1")["spec"]["vxlanTunnelMACAddr"] == "66:00:00:00:00:01"
    put_pool(datastore, "v", "10.63.0.0/16", vxlanMode="Never")
    alloc.reconcile()
    assert datastore.get("Node", "n1")["spec"] == {
        "bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 65001},
        "vxlanTunnelMACAddr": "66:00:00:00:00:01",
    }


def test_node_selector_and_label_changes(etcd: EtcdClient, datastore: Client) -> None:
    make_node(datastore, "n1")
    put_pool(datastore, "zoned", "10.65.0.0/16", ipipMode="Always", nodeSelector="zone == 'a'")
    alloc = TunnelAllocator(etcd, "n1")
    assert alloc.reconcile() == []
    node = datastore.get("Node", "n1")
    node["metadata"]["labels"] = {"zone": "a"}
    datastore.update(node)
    alloc.reconcile()
    assert in_net(ipip_of(datastore, "n1"), "10.65.0.0/16")
    node = datastore.get("Node", "n1")
    node["metadata"]["labels"] = {"zone": "b"}
    datastore.update(node)
    alloc.reconcile()
    assert ipip_of(datastore, "n1") == ""


def test_address_released_or_taken_behind_our_back(etcd: EtcdClient, datastore: Client) -> None:
    make_node(datastore, "n1")
    put_pool(datastore, "p", "10.66.0.0/16", ipipMode="Always")
    alloc = TunnelAllocator(etcd, "n1")
    alloc.reconcile()
    addr = ipip_of(datastore, "n1")
    ipam = IPAMClient(etcd)

    # `calicoctl ipam release` of our address: the same address is claimed again
    assert ipam.release_ips([addr]) == []
    assert alloc.reconcile() == []
    assert ipip_of(datastore, "n1") == addr
    assert ipam.ips_by_handle("ipip-tunnel-addr-n1") == [addr]

    # someone else holds it now: we move to another address and leave theirs alone
    ipam.release_ips([addr])
    ipam.assign_ip(addr, handle_id="k8s-pod-network.c1", host="n2")
    [change] = alloc.reconcile()
    assert change.old == addr
    assert change.new not in ("", addr)
    assert ipam.ip_info(addr)["handle_id"] == "k8s-pod-network.c1"  # type: ignore[index]

    # an extra address under our handle (a crash between allocation and the Node write) goes
    stray = ipam.auto_assign(handle_id="ipip-tunnel-addr-n1", host="n1")[0]
    alloc.reconcile()
    assert ipam.ips_by_handle("ipip-tunnel-addr-n1") == [change.new]
    assert ipam.ip_info(stray) is None


def test_two_nodes_allocating_at_once(
    etcd: EtcdClient, datastore: Client, etcd_server: EtcdServer
) -> None:
    """Many nodes race through the same small pool: every address distinct, IPAM consistent."""
    names = [f"n{i}" for i in range(8)]
    for n in names:
        make_node(datastore, n)
    put_pool(datastore, "small", "10.67.0.0/26", ipipMode="Always", blockSize=29)
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def run(name: str) -> None:
        client = EtcdClient([etcd_server.endpoint])
        try:
            start.wait()
            TunnelAllocator(client, name).reconcile()
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    addrs = [ipip_of(datastore, n) for n in names]
    assert all(in_net(a, "10.67.0.0/26") for a in addrs)
    assert len(set(addrs)) == len(names)
    assert_ipam_clean(etcd_server)


def test_missing_pool_room_is_logged_and_retried(etcd: EtcdClient, datastore: Client) -> None:
    make_node(datastore, "n1")
    make_node(datastore, "n2")
    put_pool(datastore, "tiny", "10.68.0.0/32", ipipMode="Always", blockSize=32)
    assert tunnels.reconcile_logged(TunnelAllocator(etcd, "n1"))
    assert not tunnels.reconcile_logged(TunnelAllocator(etcd, "n2"))  # the pool is full
    assert ipip_of(datastore, "n2") == ""


def wait_for(what: str, pred: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def calicoctl(etcd_server: EtcdServer, *args: str, stdin: str = "") -> None:
    env = {**os.environ, "ETCD_ENDPOINTS": etcd_server.endpoint}
    out = subprocess.run(
        [str(BIN / "calicoctl"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


POOL_YAML = """apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: live
spec:
  cidr: 10.69.0.0/16
  ipipMode: {ipip}
  vxlanMode: {vxlan}
"""


def test_live_switch_with_calicoctl_apply(
    etcd_server: EtcdServer, datastore: Client, tmp_path: Path
) -> None:
    """``calico-node --allocate-tunnel-addrs`` follows `calicoctl apply` of a pool's mode."""
    make_node(datastore, "n1")
    env = {
        **os.environ,
        "ETCD_ENDPOINTS": etcd_server.endpoint,
        "NODENAME": "n1",
        "CALICO_RUN_DIR": str(tmp_path),
    }
    with open(tmp_path / "tunnels.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "calico-node"), "--allocate-tunnel-addrs"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        calicoctl(
            etcd_server, "apply", "-f", "-", stdin=POOL_YAML.format(ipip="Always", vxlan="Never")
        )
        addr = wait_for("an IPIP address", lambda: ipip_of(datastore, "n1"))
        assert in_net(addr, "10.69.0.0/16")

        calicoctl(
            etcd_server,
            "apply",
            "-f",
            "-",
            stdin=POOL_YAML.format(ipip="Never", vxlan="CrossSubnet"),
        )
        vxlan = wait_for(
            "IPIP -> VXLAN",
            lambda: (
                not ipip_of(datastore, "n1")
                and tunnels.get_address(datastore.get("Node", "n1"), VXLAN)
            ),
        )
        assert in_net(vxlan, "10.69.0.0/16")
        assert IPAMClient(datastore.etcd).ip_info(addr) is None or addr == vxlan

        calicoctl(etcd_server, "delete", "ippool", "live")
        wait_for(
            "the VXLAN address released",
            lambda: "ipv4VXLANTunnelAddr" not in datastore.get("Node", "n1")["spec"],
        )
        assert IPAMClient(datastore.etcd).blocks() == [] or all(
            b.in_use == 0 for b in IPAMClient(datastore.etcd).blocks()
        )
        assert_ipam_clean(etcd_server)
        assert proc.poll() is None
    finally:
        proc.terminate()
        rc = proc.wait(15)
    assert rc == 0, (tmp_path / "tunnels.log").read_text()
