"""``calico-lab up --kubeconfig``: the lab follows a Kubernetes API server (here a fake one).

Namespaces, NetworkPolicies and Pods created in the API server appear in the lab (profiles,
policies, running pods with WorkloadEndpoints), the pod's IP is written back to ``status.podIP``,
label changes and deletions follow, and pods bound to other nodes are left alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, leftovers
from tests.fakekube import FakeKube

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def pod(ns: str, name: str, labels: dict[str, str], node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "name": "http"}]}
        ]
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
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "x", "labels": {"team": "a"}},
            },
        )
        fake.create("pods", pod("x", "a", {"app": "a"}))
        fake.create("pods", pod("x", "b", {"app": "b"}, node="node2"))
        fake.create("pods", pod("x", "elsewhere", {"app": "c"}, node="not-a-lab-node"))
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
        st = lab.state()
        assert sorted(st.pods) == ["x/a", "x/b"]
        assert st.pods["x/b"].node == "node2"
        for name in ("a", "b"):
            ip = eventually(
                lambda n=name: kube.get("pods", n, "x").get("status", {}).get("podIP"),
                what=f"status.podIP of x/{name}",
            )
            assert ip == lab.state().pods[f"x/{name}"].ip
        assert "podIP" not in kube.get("pods", "elsewhere", "x").get("status", {})
        policies = lab.cli("exec", "node1", "--", "calicoctl", "get", "networkpolicy", "-n", "x")
        assert "knp.default.a-from-b" in policies.stdout
        prof = json.loads(
            lab.cli(
                "exec", "node1", "--", "calicoctl", "get", "profile", "kns.x", "-o", "json"
            ).stdout
        )
        assert prof["spec"]["labelsToApply"]["pcns.team"] == "a"
        assert weps(lab)["a"]["metadata"]["labels"]["app"] == "a"
        assert lab.cli("probe", "x/b", "x/a", "--port", "80", check=False).returncode in (0, 1)

        refused = lab.cli("apply", "-f", "-", input=json.dumps(pod("x", "z", {})), check=False)
        assert refused.returncode == 1
        assert "follows a Kubernetes API server" in refused.stderr

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
        kube.delete("pods", "b", "x")
        eventually(lambda: "x/b" not in lab.state().pods, what="x/b to be removed")
        eventually(lambda: "b" not in weps(lab), what="x/b's WorkloadEndpoint to go")
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
