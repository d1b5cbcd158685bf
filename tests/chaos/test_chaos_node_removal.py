"""A node removed for good: its calico-node stopped, then ``calicoctl delete node node2`` (run on
node1, as an admin would): its Node, WorkloadEndpoints, block affinities and blocks, pod and
tunnel-address handles are gone, ``calicoctl ipam check`` is clean, and the remaining node's
agent converges to a cluster without it (no route, tunnel neighbour or set element left for
node2). On a lab of its own (the shared one keeps its three nodes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.ipam import keys
from calico_lab import daemons, nodes
from tests.chaos import converge
from tests.chaos.chaoslab import ChaosLab
from tests.chaos.figures import Figures
from tests.chaos.scenario import ipam_problems
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def removal_lab(chaos_root: Path) -> Iterator[ChaosLab]:
    handle = LabHandle(lab_support.unique_name("nr"), chaos_root)
    lab = ChaosLab(handle)
    try:
        handle.cli("up", "--nodes", "2", "--quiet")
        handle.apply(lab_support.pods_on("node1", "node2", "node2", "node2"))
        yield lab
    finally:
        lab.close()
        handle.cli("down", "--quiet", check=False)


def test_node_removed_is_cleaned_up(removal_lab: ChaosLab, figures: Figures) -> None:
    lab = removal_lab
    lab.converged(within=60)
    st = lab.state()
    node2 = st.node("node2")
    pods = [p for p in st.pods.values() if p.node == "node2"]
    handles_before = _handles(lab)
    assert any(h == "vxlan-tunnel-addr-node2" for h in handles_before), handles_before
    assert sum(h.startswith("k8s-pod-network.") for h in handles_before) == 4
    daemons.stop(node2.pid)  # decommissioning: calico-node is stopped first
    figures.fault("calico-node on node2 stopped, then calicoctl delete node node2")
    started = time.monotonic()
    proc = lab.handle.cli("exec", "node1", "--", "calicoctl", "delete", "node", "node2")
    assert "Successfully deleted 1 'Node' resource(s)" in proc.stdout
    figures.op("calicoctl delete node")
    # node1's agent: programmed for a cluster without node2
    env = nodes.node_env(st, st.node("node1"))
    took = converge.wait_converged(
        lab.etcd_call, {"node1": (st.node("node1").netns, env)}, within=60
    )
    figures.converge_s.append(round(time.monotonic() - started, 2))
    figures.notes.append(f"node1 converged {took:.2f} s after the delete returned")
    names = {n["metadata"]["name"] for n in lab.store.list("nodes")}
    weps = [w for w in lab.store.list("workloadendpoints") if w["spec"]["node"] == "node2"]
    handles = _handles(lab)
    gone = {f"k8s-pod-network.{p.container_id}" for p in pods} | {"vxlan-tunnel-addr-node2"}
    left_handles = sorted(h for h in handles_before - gone if h not in handles)
    affinities = lab.etcd_call(lambda e: e.get_prefix(f"{keys.HOST_PREFIX}node2/")[0])
    blocks = lab.etcd_call(lambda e: e.get_prefix(keys.block_prefix(4))[0])
    node2_blocks = [kv.key for kv in blocks if json.loads(kv.value).get("affinity") == "host:node2"]
    figures.leaks = len(weps) + len(gone & handles) + len(affinities) + len(node2_blocks)
    figures.leaks += ipam_problems(lab)
    assert "node2" not in names
    assert weps == [], "node2's WorkloadEndpoints are left"
    assert not gone & handles, f"handles left: {sorted(gone & handles)}"
    assert not left_handles, f"other handles were removed: {left_handles}"
    assert affinities == [], "node2's affinities are left"
    assert node2_blocks == [], "blocks still affine to node2"
    assert figures.leaks == 0


def _handles(lab: ChaosLab) -> set[str]:
    kvs = lab.etcd_call(lambda e: e.get_prefix(keys.HANDLE_PREFIX)[0])
    return {kv.key.removeprefix(keys.HANDLE_PREFIX) for kv in kvs}
