"""``calico-lab up --kubeconfig``: the lab follows a Kubernetes API server (here a fake one).

Namespaces, NetworkPolicies and Pods created in the API server appear in the lab (profiles,
policies, running pods with WorkloadEndpoints). The lab is the scheduler (unbound pods are bound to
the least-loaded lab node with a Binding) and the kubelet (bound pods started, ``status.podIP``,
``hostIP`` and ``phase`` written back; deletion, also graceful, runs CNI DEL and frees the address).
Label changes and deletions follow through the watch alone (the pods are listed once), and pods
bound to other nodes or meant for another scheduler are left alone. Each lab node is registered as
a Node (InternalIP, Ready, a Lease in kube-node-lease) and removed again on ``down``.
(tests/e2e/test_lab_kube_real.py runs this against a real kube-apiserver and controller manager.)
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.lib import netns
from calico_lab import state
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, leftovers
from tests.fakekube import ApiError, FakeKube

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def pod(
    ns: str, name: str, labels: dict[str, str], node: str | None = None, **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "name": "http"}]}
        ],
        **extra,
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    }


def eventually(fn: Callable[[], Any], *, within: float = 30, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            value = fn()
            if value:
                return value
        except (KeyError, AssertionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    with FakeKube() as fake:
        fake.create(
            "namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-node-lease"}},
        )
        fake.create(
            "namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "x", "labels": {"team": "a"}},
            },
        )
        fake.create("pods", pod("x", "a", {"app": "a"}))
        fake.create("pods", pod("x", "b", {"app": "b"}, node="node2"))
        fake.create("pods", pod("x", "elsewhere", {"app": "c"}, node="not-a-lab-node"))
        fake.create("pods", pod("x", "theirs", {"app": "c"}, schedulerName="my-scheduler"))
        fake.create(
            "networkpolicies",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "a-from-b", "namespace": "x"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "a"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
                },
            },
        )
        yield fake


def weps(lab: LabHandle) -> dict[str, dict[str, Any]]:
    out = lab.cli("exec", "node1", "--", "calicoctl", "get", "wep", "-n", "x", "-o", "json").stdout
    data = json.loads(out)
    items = data.get("items", [data]) if data.get("kind") != "WorkloadEndpoint" else [data]
    return {w["spec"]["pod"]: w for w in items}


def pod_status(kube: FakeKube, name: str, *, running: bool) -> dict[str, Any] | None:
    status: dict[str, Any] = kube.get("pods", name, "x").get("status", {})
    ok = bool(status.get("podIP")) and (status.get("phase") == "Running") == running
    return status if ok else None


def gone(kube: FakeKube, name: str) -> bool:
    try:
        kube.get("pods", name, "x")
    except ApiError as exc:
        return exc.code == 404
    return False


def probe(lab: LabHandle, src: str, dst: str) -> int:
    return lab.cli("probe", src, dst, "--port", "80", "--timeout", "2", check=False).returncode


def ipam_show(lab: LabHandle, ip: str) -> str:
    return lab.cli("exec", "node1", "--", "calicoctl", "ipam", "show", f"--ip={ip}").stdout


def test_lab_follows_the_api_server(
    kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    monkeypatch.setenv("CALICO_LAB_ROOT", str(root))
    lab = LabHandle(lab_support.unique_name("kb"), root)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    recorded: list[str] = []
    pids: list[int] = []
    try:
        lab.cli("up", "--nodes", "2", "--quiet", "--kubeconfig", str(kubeconfig))
        _check_up(kube, lab)
        _check_pod_made_and_deleted(kube, lab)
        refused = lab.cli("apply", "-f", "-", input=json.dumps(pod("x", "z", {})), check=False)
        assert refused.returncode == 1
        assert "follows a Kubernetes API server" in refused.stderr
        _check_label_changes(kube, lab)
        # Watch events only so far: the pods were listed once (no polling, no re-list).
        assert kube.list_count("pods") == 1
        _check_relist_after_gone(kube, lab)
        kube.delete("networkpolicies", "a-from-b", "x")
        eventually(
            lambda: (
                "a-from-b"
                not in lab.cli(
                    "exec", "node1", "--", "calicoctl", "get", "networkpolicy", "-n", "x"
                ).stdout
            ),
            what="the policy to go",
        )
        st = lab.state()
        recorded, pids = list(st.netns), [*lab_support.lab_pids(st), st.kube_pid]
    finally:
        lab.cli("down", "--quiet", check=False)
    assert leftovers(lab.name, root, recorded, pids) == []
    assert kube.list("nodes") == []  # down removed them
    assert kube.list("leases") == []


def _check_up(kube: FakeKube, lab: LabHandle) -> None:
    """After ``up``: the nodes registered, the lab's pods bound, started and reported, other
    pods untouched, the namespace and policy translated, traffic as the policy says."""
    st = lab.state()
    assert sorted(st.pods) == ["x/a", "x/b"]
    assert st.pods["x/b"].node == "node2"
    for node in st.nodes:  # registered as a kubelet does
        k8s_node = kube.get("nodes", node.name)
        assert {"type": "InternalIP", "address": node.ip} in k8s_node["status"]["addresses"]
        assert k8s_node["status"]["conditions"][0]["status"] == "True"
        assert kube.get("leases", node.name, "kube-node-lease")["spec"]["holderIdentity"]
    # Scheduled by the lab: a Binding onto the node with fewer pods (node2 has b).
    assert kube.bindings() == ["/api/v1/namespaces/x/pods/a/binding"]
    assert kube.get("pods", "a", "x")["spec"]["nodeName"] == "node1" == st.pods["x/a"].node
    for name in ("a", "b"):
        status = eventually(
            functools.partial(pod_status, kube, name, running=True),
            what=f"status.podIP of x/{name}",
        )
        p = lab.state().pods[f"x/{name}"]
        assert status["podIP"] == p.ip
        assert status["podIPs"] == [{"ip": p.ip}]
        assert status["hostIP"] == state.node_ip(int(p.node.removeprefix("node")))
    for name, bound_to in (("elsewhere", "not-a-lab-node"), ("theirs", None)):
        untouched = kube.get("pods", name, "x")
        assert untouched["spec"].get("nodeName") == bound_to
        assert "podIP" not in untouched.get("status", {})
    policies = lab.cli("exec", "node1", "--", "calicoctl", "get", "networkpolicy", "-n", "x")
    assert "knp.default.a-from-b" in policies.stdout
    prof = json.loads(
        lab.cli("exec", "node1", "--", "calicoctl", "get", "profile", "kns.x", "-o", "json").stdout
    )
    assert prof["spec"]["labelsToApply"]["pcns.team"] == "a"
    assert weps(lab)["a"]["metadata"]["labels"]["app"] == "a"
    assert probe(lab, "x/b", "x/a") == 0  # node2 -> node1, allowed by a-from-b


def _check_pod_made_and_deleted(kube: FakeKube, lab: LabHandle) -> None:
    """A pod made while the lab runs: bound, started, reported, reachable both ways; then
    deleted gracefully."""
    kube.create("pods", pod("x", "d", {"app": "b"}))
    status = eventually(lambda: pod_status(kube, "d", running=True), what="x/d to run")
    d_node = kube.get("pods", "d", "x")["spec"]["nodeName"]
    d = lab.state().pods["x/d"]
    assert (d.node, d.ip) == (d_node, status["podIP"])
    assert len(kube.bindings()) == 2
    assert probe(lab, "x/d", "x/a") == 0
    assert probe(lab, "x/a", "x/d") == 0
    assert probe(lab, "x/a", "x/b") == 0
    assert "in use" in ipam_show(lab, d.ip)
    # Graceful deletion (what the API server does for a bound pod): the lab's kubelet stops
    # the pod (CNI DEL frees the address) and confirms with a grace-period-0 DELETE.
    kube.patch("pods", "d", {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}, "x")
    eventually(lambda: gone(kube, "d"), what="x/d's deletion to be confirmed")
    assert "x/d" not in lab.state().pods
    assert not netns.exists(d.netns)
    assert "d" not in weps(lab)
    assert "is not assigned" in ipam_show(lab, d.ip)


def _check_label_changes(kube: FakeKube, lab: LabHandle) -> None:
    """A pod's and a namespace's label changes reach the WorkloadEndpoint and the profile."""
    kube.patch("pods", "a", {"metadata": {"labels": {"app": "a", "tier": "db"}}}, "x")
    eventually(
        lambda: weps(lab)["a"]["metadata"]["labels"].get("tier") == "db",
        what="the label change on x/a's WorkloadEndpoint",
    )
    kube.patch("namespaces", "x", {"metadata": {"labels": {"team": "b"}}})
    eventually(
        lambda: (
            json.loads(
                lab.cli(
                    "exec", "node1", "--", "calicoctl", "get", "profile", "kns.x", "-o", "json"
                ).stdout
            )["spec"]["labelsToApply"]["pcns.team"]
            == "b"
        ),
        what="the namespace label change",
    )


def _check_relist_after_gone(kube: FakeKube, lab: LabHandle) -> None:
    """The API server goes away; meanwhile b is deleted and the history compacted, so the watch
    resumes into 410 Gone and the lab lists again, which shows b gone."""
    b = lab.state().pods["x/b"]
    kube.stop()
    kube.delete("pods", "b", "x")
    kube.compact()
    kube.start()
    eventually(lambda: "x/b" not in lab.state().pods, what="x/b to be removed")
    assert kube.list_count("pods") == 2
    eventually(lambda: "b" not in weps(lab), what="x/b's WorkloadEndpoint to go")
    assert not netns.exists(b.netns)
    assert "is not assigned" in ipam_show(lab, b.ip)
