"""``calico-lab up --kubeconfig`` toward a real control plane: kube-apiserver and
kube-controller-manager v1.20 (``make kube``), on 127.0.0.1 with their own etcd.

The lab registers a Node per lab node (InternalIP, Ready, a Lease in kube-node-lease renewed as a
kubelet does), schedules, addresses and polices the API server's pods, and those pods survive the
controller manager's pod garbage collector. In 1.20 that collector looks for orphans (pods bound
to a node that does not exist) every 20 s and deletes one 40 s after first seeing it (both fixed
in its code, no flags): a control pod bound to a node that does not exist is created next to the
lab's, and the test waits until the collector has deleted it, so it has run its orphan pass over
the lab's pods too; they are still there, the same objects (uid), still running. The node
lifecycle controller runs with its defaults (40 s grace period): by then more than its grace
period has passed, and the Nodes are still Ready, so the heartbeats arrive. ``down`` removes the
Nodes and their Leases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, leftovers
from tests.integration.controllers import kube_apiserver

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, pytest.mark.timeout(420)]


def eventually(fn: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def pod(name: str, labels: dict[str, str], node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
        "automountServiceAccountToken": False,
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "x", "labels": labels},
        "spec": spec,
    }


POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "a-from-b", "namespace": "x"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
    },
}


class Api:
    def __init__(self, server: kube_apiserver.KubeAPIServer) -> None:
        self.server = server

    def get(self, *args: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.server.kubectl("get", *args, "-o", "json")))
        except AssertionError as exc:
            if "NotFound" in str(exc):
                return None
            raise

    def must(self, *args: str) -> dict[str, Any]:
        got = self.get(*args)
        assert got is not None, f"kubectl get {' '.join(args)}: not found"
        return got

    def renew_time(self, node: str) -> str:
        return str(self.must("lease", node, "-n", "kube-node-lease")["spec"]["renewTime"])

    def apply(self, obj: dict[str, Any]) -> None:
        self.server.kubectl("apply", "-f", "-", input=json.dumps(obj))


def ready(node: dict[str, Any]) -> str:
    conds = {c["type"]: c for c in node["status"].get("conditions", [])}
    return str(conds.get("Ready", {}).get("status"))


def running_ip(api: Api, name: str) -> str:
    p = api.get("pod", name, "-n", "x") or {}
    status = p.get("status") or {}
    return str(status.get("podIP") or "") if status.get("phase") == "Running" else ""


def test_a_real_control_plane_keeps_the_labs_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    root = tmp_path / "root"
    monkeypatch.setenv("CALICO_LAB_ROOT", str(root))
    lab = LabHandle(lab_support.unique_name("kr"), root)
    recorded: list[str] = []
    pids: list[int] = []
    with (
        kube_apiserver.running(tmp_path / "kube") as server,
        kube_apiserver.controller_manager(server) as kcm_log,
    ):
        api = Api(server)
        server.kubectl("create", "namespace", "x")
        eventually(
            lambda: api.get("serviceaccount", "default", "-n", "x"),
            within=60,
            what="the controller manager's default ServiceAccount",
        )
        api.apply(POLICY)
        for name, labels in (("a", {"app": "a"}), ("b", {"app": "b"}), ("c", {"app": "c"})):
            api.apply(pod(name, labels))
        try:
            lab.cli("up", "--nodes", "2", "--quiet", "--kubeconfig", str(server.kubeconfig))
            st = lab.state()
            check_registered(api, st)
            ips = {n: wait_running(api, n) for n in ("a", "b", "c")}
            uids = {n: api.must("pod", n, "-n", "x")["metadata"]["uid"] for n in ips}
            assert {n: lab.state().pods[f"x/{n}"].ip for n in ips} == ips
            # Policed: b may reach a, c may not; a reaches c (no policy there).
            assert probe(lab, "x/b", "x/a") == 0
            assert probe(lab, "x/c", "x/a") != 0
            assert probe(lab, "x/a", "x/c") == 0
            first_renew = api.renew_time("node1")

            # The control: a pod bound to a node that does not exist, which the pod GC deletes.
            api.apply(pod("orphan", {"app": "orphan"}, node="calt-no-such-node"))
            started = time.monotonic()
            eventually(
                lambda: api.get("pod", "orphan", "-n", "x") is None,
                within=150,
                what=f"the pod GC to delete the orphan (see {kcm_log})",
            )
            waited = time.monotonic() - started
            assert "orphan" in kcm_log.read_text(errors="replace").lower()

            # The lab's pods went through the same pass: still there, the same objects.
            check_same_pods(api, ips, uids, kcm_log)
            assert waited > 40  # longer than the node lifecycle controller's grace period
            for node in st.nodes:
                assert ready(api.must("node", node.name)) == "True"
            assert api.renew_time("node1") > first_renew
            assert probe(lab, "x/b", "x/a") == 0
            assert probe(lab, "x/c", "x/a") != 0
            st = lab.state()
            recorded, pids = list(st.netns), [*lab_support.lab_pids(st), st.kube_pid]
        finally:
            lab.cli("down", "--quiet", check=False)
        assert leftovers(lab.name, root, recorded, pids) == []
        for name in ("node1", "node2"):
            assert api.get("node", name) is None
            assert api.get("lease", name, "-n", "kube-node-lease") is None


def wait_running(api: Api, name: str) -> str:
    """x/NAME's address once it runs."""
    ip: str = eventually(lambda: running_ip(api, name), within=60, what=f"x/{name} to run")
    return ip


def check_registered(api: Api, st: Any) -> None:
    """Every lab node is a Ready Kubernetes Node with its address, and holds its Lease."""
    for node in st.nodes:
        k8s = api.get("node", node.name)
        assert k8s is not None, f"Node {node.name} not registered"
        assert {"type": "InternalIP", "address": node.ip} in k8s["status"]["addresses"]
        assert ready(k8s) == "True"
        lease = api.get("lease", node.name, "-n", "kube-node-lease")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == node.name


def check_same_pods(api: Api, ips: dict[str, str], uids: dict[str, str], kcm_log: Path) -> None:
    """The lab's pods are still there: the same objects, running, with the same addresses."""
    for n, ip in ips.items():
        still = api.get("pod", n, "-n", "x")
        assert still is not None, f"x/{n} was deleted (pod GC?); see {kcm_log}"
        assert still["metadata"]["uid"] == uids[n]
        assert not still["metadata"].get("deletionTimestamp")
        assert running_ip(api, n) == ip


def probe(lab: LabHandle, src: str, dst: str) -> int:
    return lab.cli("probe", src, dst, "--port", "80", "--timeout", "2", check=False).returncode
