"""``calico-lab up --typha`` (with ``--etcd-tls``: Typha mTLS too): the agents sync from a
calico-typha in the core namespace instead of etcd, and the lab's policy probes work through it —
pods connect, a NetworkPolicy applied later takes effect, and lifting it too; a killed Typha leaves
the dataplane as it was and ``up`` restarts it, the agents reconnect and later policy changes
still arrive; the option is fixed for the lab's life; ``down`` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_lab import nodes
from calico_lab import typha as lab_typha
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, check, expected, leftovers, root_links
from tests.integration.datastore.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, pytest.mark.timeout(300)]

TARGETS = [(8080, "TCP"), (53, "UDP")]
PODS = ["default/a", "default/b"]
DENY_B = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
"""
ALLOW_B_TCP = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b-tcp, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: 8080, protocol: TCP}]}]
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with lab_support.lab_root(tmp_path_factory.mktemp("labroot")) as path:
        yield path


@pytest.fixture(scope="module")
def lab(root: Path) -> Iterator[LabHandle]:
    handle = LabHandle(lab_support.unique_name("ty"), root)
    handle.root_before = root_links()  # type: ignore[attr-defined]
    try:
        handle.cli("up", "--nodes", "2", "--typha", "--etcd-tls", "--quiet")
        handle.cli("apply", "-f", "-", input=lab_support.pods_on("node1", "node2"))
        yield handle
    finally:
        handle.cli("down", "--quiet", check=False)


def agent_log(lab: LabHandle, node: str) -> str:
    path = nodes.log_dir(lab.state(), node) / "felix" / "current"
    return path.read_text(errors="replace")


def typha_status(lab: LabHandle) -> dict[str, object]:
    snap = json.loads(lab.cli("status", "-o", "json").stdout)
    assert snap["typha"] is not None
    return dict(snap["typha"])


def test_the_agents_sync_from_typha_and_pods_connect(lab: LabHandle) -> None:
    st = lab.state()
    assert st.typha
    assert lab_support.pid_alive(st.typha_pid)
    status = typha_status(lab)
    assert status["running"]
    assert status["ready"]
    assert status["tls"]
    assert status["connections"] == 2  # both agents, over mTLS
    for node in ("node1", "node2"):
        assert f"connected to Typha {lab_typha.address()}" in agent_log(lab, node)
    text = lab.cli("status").stdout
    assert f"typha: {lab_typha.address()} (mTLS) ready, 2 agent(s) connected" in text
    check(lab, expected(PODS, TARGETS, lambda *_: True))


def test_policy_changes_reach_the_dataplane_through_typha(lab: LabHandle) -> None:
    lab.apply(DENY_B)
    check(lab, expected(PODS, TARGETS, lambda s, d, p, t: d != "default/b"))
    lab.apply(ALLOW_B_TCP)
    check(lab, expected(PODS, TARGETS, lambda s, d, p, t: d != "default/b" or t == "TCP"))
    lab.delete(DENY_B + "---" + ALLOW_B_TCP)
    check(lab, expected(PODS, TARGETS, lambda *_: True))


def test_a_killed_typha_is_restarted_by_up_and_the_agents_come_back(lab: LabHandle) -> None:
    st = lab.state()
    old = st.typha_pid
    lab.apply(DENY_B)
    check(lab, expected(PODS, TARGETS, lambda s, d, p, t: d != "default/b"))
    os.killpg(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab_support.pid_alive(old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert typha_status(lab)["running"] is False
    # without Typha the agents keep what they have: the policy still holds
    check(lab, expected(PODS, TARGETS, lambda s, d, p, t: d != "default/b"))
    out = lab.cli("up", "--nodes", "2").stderr
    assert f"calico-typha in the core namespace ({lab_typha.address()})" in out
    assert lab.state().typha_pid != old
    wait_until(lambda: typha_status(lab)["connections"] == 2, 30, "both agents back")
    lab.delete(DENY_B)  # a change made after the restart reaches them
    check(lab, expected(PODS, TARGETS, lambda *_: True))
    for node in ("node1", "node2"):
        assert agent_log(lab, node).count(f"connected to Typha {lab_typha.address()}") >= 2


def test_typha_is_fixed_for_the_labs_life(lab: LabHandle) -> None:
    proc = lab.cli("up", "--nodes", "2", "--no-typha", "--quiet", check=False)
    assert proc.returncode == 1
    assert "already up with --typha, not --no-typha" in proc.stderr


def test_down_leaves_nothing(lab: LabHandle) -> None:
    st = lab.state()
    recorded = list(st.netns)
    pids = lab_support.lab_pids(st)
    assert st.typha_pid in pids
    lab.cli("down", "--quiet")
    assert leftovers(lab.name, lab.root, recorded, pids) == []
    assert root_links() == lab.root_before  # type: ignore[attr-defined]
