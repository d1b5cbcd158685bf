"""calico-lab lifecycle end to end: idempotent up and repair, pods, bad input, labs side by side,
and ``down`` leaving nothing behind (also after a failed or killed ``up``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_lab import state
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, check, expected, leftovers, root_links

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PODS = """
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: v1
kind: Pod
metadata: {name: one, namespace: web, labels: {app: one}}
spec:
  nodeName: node1
  containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: two, namespace: web, labels: {app: two}}
spec:
  nodeName: node2
  containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with lab_support.lab_root(tmp_path_factory.mktemp("labroot")) as path:
        yield path


@pytest.fixture(scope="module")
def lab(root: Path) -> Iterator[LabHandle]:
    handle = LabHandle(lab_support.unique_name("cl"), root)
    try:
        handle.cli("up", "--nodes", "2", "--quiet")
        handle.cli("apply", "-f", "-", input=PODS)
        yield handle
    finally:
        handle.cli("down", "--quiet", check=False)


def snapshot(handle: LabHandle) -> tuple[list[str], list[int]]:
    st = handle.state()
    return list(st.netns), lab_support.lab_pids(st)


def test_pods_reach_each_other_across_nodes(lab: LabHandle) -> None:
    st = lab.state()
    assert st.pods["web/one"].node == "node1"
    assert st.pods["web/two"].node == "node2"
    keys = sorted(st.pods)
    check(lab, expected(keys, [(8080, "TCP"), (53, "UDP")], lambda s, d, p, t: True))
    # A port the pods do not serve is refused, so probes are not vacuous.
    assert lab.cli("probe", "web/one", "web/two", "--port", "8081", check=False).returncode == 1
    assert (
        lab.cli(
            "probe",
            "web/one",
            "web/two",
            "-p",
            "8080",
            "--protocol",
            "UDP",
            "--timeout",
            "0.5",
            check=False,
        ).returncode
        == 1
    )


def test_pods_were_added_by_each_nodes_cni_server(lab: LabHandle) -> None:
    """As on a real host, calico-node runs the CNI server the installed launchers hand calls to."""
    from calico_lab import nodes

    st = lab.state()
    for pod in ("web/one", "web/two"):
        node = st.pods[pod].node
        log = (nodes.log_dir(st, node) / "cni" / "current").read_text()
        assert f"served calico ADD {st.pods[pod].container_id}" in log, log


def test_up_again_changes_nothing_and_repairs_a_dead_node(lab: LabHandle) -> None:
    before = lab.state()
    lab.cli("up", "--nodes", "2", "--quiet")
    after = lab.state()
    assert after == before
    node2 = after.node("node2")
    os.killpg(node2.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab_support.pid_alive(node2.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    out = lab.cli("up", "--nodes", "2").stderr
    assert "calico-node on node2" in out
    assert "calico-node on node1" not in out
    repaired = lab.state()
    assert repaired.node("node2").pid != node2.pid
    assert repaired.node("node1").pid == before.node("node1").pid
    snap = json.loads(lab.cli("status", "-o", "json").stdout)
    assert all(n["running"] for n in snap["nodes"])
    check(lab, expected(sorted(repaired.pods), [(8080, "TCP")], lambda s, d, p, t: True))


def test_up_with_other_node_count_is_refused(lab: LabHandle) -> None:
    proc = lab.cli("up", "--nodes", "3", "--quiet", check=False)
    assert proc.returncode == 1
    assert "already up with 2 nodes" in proc.stderr


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: nope}\n"
            "spec: {containers: []}\n",
            "namespace 'nope' not found",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: web}\n"
            "spec: {containers: [{name: c, ports: [{containerPort: 99999}]}]}\n",
            "containerPort: 99999",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            "metadata: {name: n, namespace: web}\n"
            "spec: {podSelector: {}, ingress: [{ports: [{port: 80, protocol: ICMP}]}]}\n",
            "ICMP",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n---\n"
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
            "Deployment",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: web}\n"
            "spec: {nodeName: node7, containers: []}\n",
            "node7",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n"
            "apiVersion: v1\nkind: Pod\n"
            "metadata: {name: p, namespace: ok, labels: {a: 'no spaces!'}}\n"
            "spec: {containers: []}\n",
            "metadata.labels",
        ),
    ],
)
def test_bad_input_fails_clearly_and_applies_nothing(
    lab: LabHandle, manifest: str, message: str
) -> None:
    before = lab.state()
    proc = lab.cli("apply", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    assert lab.state() == before


def test_labels_and_delete(lab: LabHandle) -> None:
    out = lab.cli("label", "pod", "web/one", "tier=front", "app-").stdout
    assert "tier=front" in out
    wep = lab.cli(
        "exec", "node1", "--", "calicoctl", "get", "wep", "-n", "web", "-o", "json"
    ).stdout
    labels = {w["spec"]["pod"]: w["metadata"]["labels"] for w in json.loads(wep)["items"]}
    assert labels["one"]["tier"] == "front"
    assert "app" not in labels["one"]
    assert lab.cli("label", "pod", "web/one", "bad", check=False).returncode == 1
    before = lab.state()
    bad = lab.cli("label", "pod", "web/one", "tier=not valid!", check=False)
    assert bad.returncode == 1
    assert "labels" in bad.stderr
    assert lab.state() == before
    lab.cli("label", "namespace", "web", "env=test")
    prof = json.loads(
        lab.cli(
            "exec", "node1", "--", "calicoctl", "get", "profile", "kns.web", "-o", "json"
        ).stdout
    )
    assert prof["spec"]["labelsToApply"]["pcns.env"] == "test"
    extra = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: three, namespace: web}\n"
        "spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}\n"
    )
    lab.cli("apply", "-f", "-", input=extra)
    three = lab.state().pods["web/three"]
    assert state.pod_netns(lab.name, "web", "three") in lab_support.netns_names()
    out = lab.cli("delete", "-f", "-", input=extra).stdout
    assert "deleted" in out
    assert three.netns not in lab_support.netns_names()
    assert not lab_support.pid_alive(three.responder_pid)
    weps = lab.cli("exec", "node1", "--", "calicoctl", "get", "wep", "-n", "web").stdout
    assert "three" not in weps
    assert three.ip not in weps


def _down_is_clean(handle: LabHandle, links_before: set[str]) -> None:
    recorded, pids = snapshot(handle) if state.load(handle.name) else ([], [])
    handle.cli("down", "--quiet")
    assert leftovers(handle.name, handle.root, recorded, pids) == []
    assert root_links() == links_before, "the root namespace's links changed"


def test_second_lab_coexists_and_down_leaves_nothing(lab: LabHandle, root: Path) -> None:
    links = root_links()
    other = LabHandle(lab_support.unique_name("co"), root)
    try:
        other.cli("up", "--nodes", "1", "--quiet")
        other.cli("apply", "-f", "-", input=PODS.replace("nodeName: node2", "nodeName: node1"))
        assert sorted(state.existing_labs()) == sorted([lab.name, other.name])
        # Same pod names in both labs: nothing is shared between labs.
        check(other, expected(sorted(other.state().pods), [(8080, "TCP")], lambda *_: True))
    except BaseException:
        other.cli("down", "--quiet", check=False)
        raise
    _down_is_clean(other, links)
    # The first lab is untouched.
    check(lab, expected(sorted(lab.state().pods), [(8080, "TCP")], lambda s, d, p, t: True))


def test_down_after_failed_up_leaves_nothing(root: Path) -> None:
    links = root_links()
    failed = LabHandle(lab_support.unique_name("fa"), root)
    proc = failed.cli("up", "--nodes", "2", "--timeout", "0.1", "--quiet", check=False)
    if proc.returncode == 0:
        failed.cli("down", "--quiet")
    assert proc.returncode == 1
    assert "timed out" in proc.stderr
    assert len(failed.state().netns) == 4  # core, outside, node1, node2
    assert failed.state().etcd_pid
    _down_is_clean(failed, links)


def test_down_after_killed_up_leaves_nothing(root: Path) -> None:
    links = root_links()
    killed = LabHandle(lab_support.unique_name("ki"), root)
    proc = subprocess.Popen(
        [lab_support.CALICO_LAB, "up", "--nodes", "2", "--quiet"],
        env=killed.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = state.load(killed.name)
        if st is not None and st.nodes[0].pid:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    _down_is_clean(killed, links)
    assert killed.cli("down", "--quiet").stdout.strip().endswith("does not exist")


def test_failed_pod_start_is_rolled_back(lab: LabHandle) -> None:
    """CNI ADD fails (the only pool disabled): nothing of the pod remains; a retry works."""
    pools = json.loads(
        lab.cli("exec", "node1", "--", "calicoctl", "get", "ippool", "-o", "json").stdout
    )
    pool = pools["items"][0] if "items" in pools else pools
    pool["metadata"] = {"name": pool["metadata"]["name"]}
    disabled = json.loads(json.dumps(pool))
    disabled["spec"]["disabled"] = True
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: web}\n"
        "spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}\n"
    )
    netns_name = state.pod_netns(lab.name, "web", "late")
    lab.cli("apply", "-f", "-", input=json.dumps(disabled))
    try:
        proc = lab.cli("apply", "-f", "-", input=manifest, check=False)
        assert proc.returncode == 1, proc.stderr
        assert "CNI ADD failed" in proc.stderr, proc.stderr
        assert "web/late" not in lab.state().pods
        assert netns_name not in lab_support.netns_names()
        assert netns_name not in lab.state().netns
    finally:
        lab.cli("apply", "-f", "-", input=json.dumps(pool))
    lab.cli("apply", "-f", "-", input=manifest)
    assert lab.state().pods["web/late"].ip
    lab.cli("delete", "-f", "-", input=manifest)
