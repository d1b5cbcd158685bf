"""``calicoctl delete node NAME`` cleans up what the node leaves, as Calico's calicoctl does: its
endpoints' and tunnel addresses (and their handles), its WorkloadEndpoints, its block affinities
(empty blocks deleted, a block another node borrowed from kept without affinity), its BGPPeers and
``node.NAME`` configurations, then the Node; another node's state is untouched; run again it
says the node does not exist. Real calicoctl, real etcd."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.ipam import keys
from calico.ipam.client import IPAMClient

pytestmark = pytest.mark.etcd

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


def res(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def wep(node: str, pod: str, ip: str) -> dict[str, Any]:
    name = f"{node}-k8s-{pod}-eth0"
    return res("WorkloadEndpoint", name, {
        "orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
        "interfaceName": f"cali{pod}", "ipNetworks": [f"{ip}/32"], "containerID": pod,
    }, namespace="default")  # fmt: skip


def calicoctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_"))}
    return subprocess.run([CALICOCTL, *args], capture_output=True, text=True, timeout=60,
                          env={**env, "ETCD_ENDPOINTS": endpoint}, check=False)  # fmt: skip


def test_delete_node_cleans_up_after_it(etcd: EtcdClient, datastore: Client) -> None:
    ds, ipam = datastore, IPAMClient(etcd)
    ds.create(res("IPPool", "p", {"cidr": "10.70.0.0/24", "blockSize": 29}))
    for n in ("n1", "n2"):
        ds.create(res("Node", n, {"bgp": {"ipv4Address": f"10.0.0.{n[1]}/24"}}))
    # n1: two pods and a VXLAN tunnel address, all from its own block(s)
    pod_ips = []
    for pod in ("a", "b"):
        (ip,) = ipam.auto_assign(handle_id=f"k8s-pod-network.{pod}", host="n1")
        ds.create(wep("n1", pod, ip))
        pod_ips.append(ip)
    (tunnel,) = ipam.auto_assign(handle_id="vxlan-tunnel-addr-n1", host="n1")
    node = ds.get("Node", "n1")
    node["spec"]["ipv4VXLANTunnelAddr"] = tunnel
    ds.update(node)
    n1_blocks = {str(c) for c in ipam.host_blocks("n1")}
    # n2 borrows the last address of one of n1's blocks (so that block cannot go)
    shared = sorted(n1_blocks)[0]
    borrowed = str(list(ipaddress.ip_network(shared).hosts())[-1])
    ipam.assign_ip(borrowed, handle_id="k8s-pod-network.c", host="n2")
    ds.create(wep("n2", "c", borrowed))
    ds.create(res("BGPPeer", "n1-peer", {"node": "n1", "peerIP": "10.0.0.9", "asNumber": 64512}))
    ds.create(res("BGPPeer", "global", {"peerIP": "10.0.0.8", "asNumber": 64512}))
    ds.create(res("FelixConfiguration", "node.n1", {"logSeverityScreen": "Debug"}))
    ds.create(res("BGPConfiguration", "node.n1", {"logSeverityScreen": "Debug"}))

    proc = calicoctl(etcd.endpoints_text(), "delete", "node", "n1")
    assert proc.returncode == 0, proc.stderr
    assert "Successfully deleted 1 'Node' resource(s)" in proc.stdout

    assert {n["metadata"]["name"] for n in ds.list("Node")} == {"n2"}
    assert [w["spec"]["node"] for w in ds.list("WorkloadEndpoint")] == ["n2"]
    handles = {kv.key.removeprefix(keys.HANDLE_PREFIX) for kv in etcd.get_prefix(
        keys.HANDLE_PREFIX)[0]}  # fmt: skip
    assert handles == {"k8s-pod-network.c"}  # n1's pods' and tunnel handles are gone
    assert etcd.get_prefix(f"{keys.HOST_PREFIX}n1/")[0] == []  # no affinity left
    blocks = {b.cidr: b for b in ipam.blocks()}
    for cidr in n1_blocks - {shared}:
        assert ipaddress.ip_network(cidr) not in blocks  # empty: deleted
    kept = blocks[ipaddress.ip_network(shared)]
    assert kept.affinity is None  # in use by n2: kept, no longer n1's
    assert [ip for ip, _ in kept.allocated()] == [borrowed]
    assert {p["metadata"]["name"] for p in ds.list("BGPPeer")} == {"global"}
    assert ds.list("FelixConfiguration") == []
    assert ds.list("BGPConfiguration") == []
    check = calicoctl(etcd.endpoints_text(), "ipam", "check")
    assert check.returncode == 0, check.stdout
    again = calicoctl(etcd.endpoints_text(), "delete", "node", "n1")
    assert again.returncode == 1
    assert "resource does not exist: Node(n1)" in again.stderr
