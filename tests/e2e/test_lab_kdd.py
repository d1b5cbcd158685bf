"""``calico-lab up --datastore kubernetes --kubeconfig FILE``: the lab's Calico keeps its datastore
in a given, real kube-apiserver (v1.20, ``make kube``; on this machine's 127.0.0.1, reached from the
lab's namespaces through the lab's relay). The lab installs Calico's CRDs and registers a Node per
lab node; pods created with kubectl are scheduled and started by the lab, annotated by the CNI
plugin, routed by BGP and policed by NetworkPolicies read straight from that API server; ``down``
takes the lab's pods and Nodes out of it. Bad options are refused before anything is made.

(The lab's own API server forms, a kube-apiserver in the core and the stand-in, run the
NetworkPolicy suite: tests/e2e/test_lab_netpol.py, ``kubernetes``.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle
from tests.integration.controllers import kube_apiserver
from tests.integration.datastore.backends import json_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

LAB_LABEL = "calico-lab.projectcalico.org/lab"
WORKLOADS = """
apiVersion: v1
kind: Namespace
metadata: {name: t, labels: {team: t}}
---
# a bare API server: no controller manager makes the namespace's ServiceAccount or its token
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: t}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: t, labels: {app: a}}
spec: {schedulerName: calico-lab, automountServiceAccountToken: false,
       containers: [{name: c, image: r, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: t, labels: {app: b}}
spec: {schedulerName: calico-lab, automountServiceAccountToken: false,
       containers: [{name: c, image: r, ports: [{containerPort: 80}]}]}
"""
DENY_TO_B = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-to-b, namespace: t}
spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
"""


def wait(what: str, pred: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def get(api: kube_apiserver.KubeAPIServer, *args: str) -> Any:
    return json.loads(api.kubectl("get", *args, "-o", "json"))


def probe(lab: LabHandle, src: str, dst: str) -> int:
    return lab.cli("probe", src, dst, "--port", "80", "--timeout", "0.5", check=False).returncode


def test_lab_on_a_given_api_server(tmp_path: Path) -> None:
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    with kube_apiserver.running(tmp_path / "kube") as api:
        kubeconfig = str(json_kubeconfig(api))
        lab = LabHandle(lab_support.unique_name("kd"), tmp_path / "root")
        try:
            _bad_options_make_nothing(lab, kubeconfig)
            lab.cli("up", "--nodes", "2", "--quiet", "--datastore", "kubernetes",
                    "--kubeconfig", kubeconfig, timeout=300)  # fmt: skip
            _nodes_registered_and_annotated(api, lab)
            _pods_addressed_routed_and_policed(api, lab)
            refused = lab.cli("up", "--nodes", "2", "--datastore", "etcdv3", check=False)
            assert refused.returncode != 0
            assert "--datastore kubernetes" in refused.stderr
        finally:
            lab.cli("down", "--quiet", check=False, timeout=300)
        nodes = get(api, "nodes")["items"]
        assert [n for n in nodes if LAB_LABEL in n["metadata"].get("labels", {})] == []
        assert get(api, "pods", "-n", "t")["items"] == []
        assert get(api, "ipamhandles.crd.projectcalico.org")["items"] == []  # released


def _bad_options_make_nothing(lab: LabHandle, kubeconfig: str) -> None:
    for args, said in (
        (["--datastore", "bogus"], "--datastore bogus"),
        (["--datastore", "kubernetes", "--kubeconfig", kubeconfig, "--apiserver", "stand-in"],
         "--apiserver"),
        (["--apiserver", "stand-in"], "--apiserver goes with --datastore kubernetes"),
    ):  # fmt: skip
        r = lab.cli("up", "--nodes", "2", *args, check=False)
        assert r.returncode != 0, args
        assert said in r.stderr, r.stderr
    remote = Path(kubeconfig).with_name("remote.json")
    doc = json.loads(Path(kubeconfig).read_text())
    doc["clusters"][0]["cluster"]["server"] = "https://192.0.2.10:6443"
    remote.write_text(json.dumps(doc))
    r = lab.cli("up", "--nodes", "2", "--datastore", "kubernetes", "--kubeconfig", str(remote),
                check=False)  # fmt: skip
    assert r.returncode != 0
    assert "not on this machine's loopback" in r.stderr, r.stderr
    assert lab.cli("list").stdout.strip() == ""  # nothing was made


def _nodes_registered_and_annotated(api: kube_apiserver.KubeAPIServer, lab: LabHandle) -> None:
    for name, ip in (("node1", "10.99.0.11"), ("node2", "10.99.0.12")):
        node = get(api, "node", name)
        meta = node["metadata"]
        assert meta["labels"][LAB_LABEL] == lab.name
        assert meta["annotations"]["projectcalico.org/IPv4Address"] == f"{ip}/24"
    assert get(api, "ippools.crd.projectcalico.org")["items"]  # calico-node's default pool
    out = lab.cli("exec", "node1", "--", "calicoctl", "node", "status").stdout
    assert "Established" in out


def _pods_addressed_routed_and_policed(api: kube_apiserver.KubeAPIServer, lab: LabHandle) -> None:
    api.kubectl("apply", "-f", "-", input=WORKLOADS)

    def annotated() -> bool:
        pods = get(api, "pods", "-n", "t")["items"]
        return len(pods) == 2 and all(
            "cni.projectcalico.org/podIP" in (p["metadata"].get("annotations") or {}) for p in pods
        )

    wait("both pods started and annotated by the CNI plugin", annotated)
    pods = {p["metadata"]["name"]: p for p in get(api, "pods", "-n", "t")["items"]}
    assert {p["spec"]["nodeName"] for p in pods.values()} == {"node1", "node2"}  # spread
    wait("a -> b across nodes", lambda: probe(lab, "t/a", "t/b") == 0)
    api.kubectl("apply", "-f", "-", input=DENY_TO_B)
    wait("the NetworkPolicy enforced", lambda: probe(lab, "t/a", "t/b") == 1)
    out = lab.cli("exec", "node2", "--", "calicoctl", "get", "networkpolicy", "-n", "t").stdout
    assert "knp.default.deny-to-b" in out
    assert probe(lab, "t/b", "t/a") == 0  # a is not protected
