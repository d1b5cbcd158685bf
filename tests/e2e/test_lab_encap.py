"""A 2-subnet lab with encapsulation: VXLAN CrossSubnet (the lab default) and natOutgoing off;
IPIP where the kernel has it.

These are the positive cases of issue #11 that need the agent's VXLAN routes and calico-node's
tunnel addresses and ``CALICO_IPV4POOL_*`` support. Each test first detects what it needs (the
``vxlan.calico`` device on the nodes, calico-node reading the variable, the kernel's ``ipip``
device type) and skips with that reason printed when it is missing; none of them passes
without checking what it claims.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_lab import cluster, nodes
from tests.e2e import lab_support
from tests.e2e.lab_support import PODS_ON_NODES, TARGETS, LabHandle, check, expected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

VXLAN_DEV = "vxlan.calico"
AGENT_PART = "issue #11, agent part"
NODE_PART = "issue #11, calico-node part"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with lab_support.lab_root(tmp_path_factory.mktemp("labroot")) as path:
        yield path


@pytest.fixture(scope="module")
def vx(root: Path) -> Iterator[LabHandle]:
    handle = LabHandle(lab_support.unique_name("tv"), root)
    try:
        handle.cli("up", "--nodes", "3", "--subnets", "2", "--no-nat-outgoing", "--quiet")
        handle.cli("apply", "-f", "-", input=PODS_ON_NODES)
        yield handle
    finally:
        handle.cli("down", "--quiet", check=False)


def _pool(handle: LabHandle) -> dict[str, Any]:
    with cluster.session(handle.name, lock=False) as (_, store):
        pools = store.list("ippools")
    assert len(pools) == 1, pools
    spec: dict[str, Any] = pools[0]["spec"]
    return spec


def _needs_node_var(var: str) -> None:
    if not lab_support.calico_node_reads(var):
        pytest.skip(f"calico-node does not read {var} yet ({NODE_PART})")


_missing: dict[str, str] = {}  # lab name -> why VXLAN is missing (waited for once per lab)


def _needs_vxlan(handle: LabHandle, within: float = 20.0) -> None:
    if handle.name not in _missing:
        _missing[handle.name] = ""
        deadline = time.monotonic() + within
        for node in handle.state().nodes:
            while not lab_support.has_link(node.netns, VXLAN_DEV):
                if time.monotonic() > deadline:
                    _missing[handle.name] = (
                        f"no {VXLAN_DEV} device on {node.name} after {within:.0f}s: the agent "
                        f"does not program VXLAN yet ({AGENT_PART}); cross-subnet pod traffic "
                        "has no path"
                    )
                    break
                time.sleep(0.5)
            if _missing[handle.name]:
                break
    if _missing[handle.name]:
        pytest.skip(_missing[handle.name])


def _tx_packets(ns: str, dev: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def test_cni_mtu_and_pod_interfaces_leave_room_for_vxlan(vx: LabHandle) -> None:
    st = vx.state()
    assert st.network.vxlan == "CrossSubnet"
    assert nodes.load_conflist(st, "node1")["plugins"][0]["mtu"] == 1450
    pod_if = subprocess.run(
        ["ip", "-n", st.pods["default/a"].netns, "-j", "link", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(pod_if)[0]["mtu"] == 1450


def test_the_default_pool_follows_the_flags(vx: LabHandle) -> None:
    _needs_node_var("CALICO_IPV4POOL_VXLAN")
    _needs_node_var("CALICO_IPV4POOL_NAT_OUTGOING")
    spec = _pool(vx)
    assert spec["vxlanMode"] == "CrossSubnet"
    assert spec.get("ipipMode", "Never") == "Never"
    assert spec["natOutgoing"] is False


def test_status_shows_each_nodes_vxlan_tunnel_address(vx: LabHandle) -> None:
    _needs_node_var("ipv4VXLANTunnelAddr")

    def tunnels() -> list[dict[str, str]]:
        snap = json.loads(vx.cli("status", "-o", "json").stdout)
        return [n["tunnels"] for n in snap["nodes"]]

    deadline = time.monotonic() + 30
    while not all(t["vxlan"] and t["vxlan_mac"] for t in tunnels()):
        assert time.monotonic() < deadline, f"tunnel addresses never all set: {tunnels()}"
        time.sleep(0.5)
    found = tunnels()
    assert len({t["vxlan"] for t in found}) == 3  # one address per node
    assert all(t["ipip"] == "" for t in found)
    text = vx.cli("status").stdout
    for t in found:
        assert f"vxlan {t['vxlan']} {t['vxlan_mac']}" in text


def test_vxlan_crosssubnet_carries_every_pod_pair(vx: LabHandle) -> None:
    _needs_vxlan(vx)
    keys = sorted(vx.state().pods)
    check(vx, expected(keys, TARGETS, lambda *_: True), within=60)


def test_crosssubnet_encapsulates_only_across_subnets(vx: LabHandle) -> None:
    _needs_vxlan(vx)
    st = vx.state()
    node1 = st.node("node1").netns
    check(vx, expected(sorted(st.pods), TARGETS, lambda *_: True), within=60)
    before = _tx_packets(node1, VXLAN_DEV)
    for _ in range(5):  # a (node1) -> c (node3): same subnet, routed directly
        assert vx.cli("probe", "default/a", "default/c", "--port", "8080").returncode == 0
    assert _tx_packets(node1, VXLAN_DEV) == before, "same-subnet traffic went through VXLAN"
    for _ in range(5):  # a (node1) -> b (node2): across the router, encapsulated
        assert vx.cli("probe", "default/a", "default/b", "--port", "8080").returncode == 0
    assert _tx_packets(node1, VXLAN_DEV) >= before + 5, "cross-subnet traffic bypassed VXLAN"


DENY_B = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
"""


def test_policy_still_denies_over_the_tunnel(vx: LabHandle) -> None:
    _needs_vxlan(vx)
    keys = sorted(vx.state().pods)
    vx.apply(DENY_B)
    try:
        check(vx, expected(keys, TARGETS, lambda s, d, p, t: d != "default/b"), within=60)
    finally:
        vx.delete(DENY_B)
    check(vx, expected(keys, TARGETS, lambda *_: True), within=60)


def test_without_nat_outgoing_pods_get_no_answer_from_outside(vx: LabHandle) -> None:
    _needs_node_var("CALICO_IPV4POOL_NAT_OUTGOING")
    assert _pool(vx)["natOutgoing"] is False
    assert lab_support.outside_answer(vx, "node2") == "10.99.1.12"  # the path is there
    for key in ("default/a", "default/b"):
        assert lab_support.outside_answer(vx, key, within=3) is None, key


@pytest.fixture(scope="module")
def ipip(root: Path) -> Iterator[LabHandle]:
    missing = lab_support.missing_link_type("ipip")
    if missing:
        pytest.skip(f"IPIP e2e needs the kernel's ipip device type: {missing}")
    handle = LabHandle(lab_support.unique_name("ti"), root)
    try:
        handle.cli("up", "--nodes", "3", "--subnets", "2", "--ipip", "CrossSubnet", "--quiet")
        handle.cli("apply", "-f", "-", input=PODS_ON_NODES)
        yield handle
    finally:
        handle.cli("down", "--quiet", check=False)


def test_ipip_crosssubnet_carries_every_pod_pair(ipip: LabHandle) -> None:
    st = ipip.state()
    assert st.network.vxlan == "Never"  # --ipip on: VXLAN's default steps aside
    assert nodes.load_conflist(st, "node1")["plugins"][0]["mtu"] == 1480
    check(ipip, expected(sorted(st.pods), TARGETS, lambda *_: True), within=60)


def test_vxlan_backend_needs_no_bgp_mesh(root: Path) -> None:
    """Calico's VXLAN-only install: no BIRD, so up waits for the Nodes only, and every route is
    the agent's."""
    _needs_node_var("CALICO_NETWORKING_BACKEND")
    handle = LabHandle(lab_support.unique_name("tb"), root)
    try:
        flags = ["--nodes", "2", "--subnets", "2", "--vxlan", "Always", "--backend", "vxlan"]
        handle.cli("up", *flags, "--quiet")
        snap = json.loads(handle.cli("status", "-o", "json").stdout)
        assert snap["network"]["backend"] == "vxlan"
        assert all(n["bgp"] == [] for n in snap["nodes"]), snap["nodes"]
        assert all("bird" not in (n["services"] or {}) for n in snap["nodes"]), snap["nodes"]
        handle.cli("apply", "-f", "-", input=lab_support.pods_on("node1", "node2"))
        _needs_vxlan(handle)
        keys = sorted(handle.state().pods)
        check(handle, expected(keys, TARGETS, lambda *_: True), within=60)
    finally:
        handle.cli("down", "--quiet", check=False)
