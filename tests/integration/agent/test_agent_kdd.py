"""The agent on the Kubernetes datastore (``DATASTORE_TYPE=kubernetes``): real nftables and traffic,
the datastore the API server stand-in (Calico's CRDs installed) listening inside the node's own
namespace. Workloads are Pods the CNI plugin would have annotated (``cni.projectcalico.org/podIP``),
profiles come from Namespaces, and Kubernetes NetworkPolicies are enforced as read from the API
server (``knp.default.*``), following label and policy changes by watch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.dataplane import counters, libnft
from calico.lib import netns
from tests.fakekube import FakeKube
from tests.integration.agent.harness import NODENAME, Matrix, Node
from tests.integration.datastore.backends import install_crds

pytestmark = [pytest.mark.netns]


@pytest.fixture
def kube(node: Node, tmp_path: Path) -> Iterator[tuple[Node, FakeKube, Path]]:
    fake = FakeKube()
    netns.call_in(node.ns, fake.start)  # its socket lives in the node's namespace
    try:
        install_crds(lambda d: fake.create("customresourcedefinitions", d))
        fake.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODENAME}})
        fake.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "x", "labels": {"team": "x"}}})  # fmt: skip
        yield node, fake, fake.write_kubeconfig(tmp_path / "kubeconfig")
    finally:
        fake.stop()


def pod(name: str, ip: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod on this node after CNI ADD (its address annotation makes it a WorkloadEndpoint)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "x", "labels": labels,
                         "annotations": {"cni.projectcalico.org/podIP": f"{ip}/32",
                                         "cni.projectcalico.org/containerID": f"c-{name}"}},
            "spec": {"nodeName": NODENAME, "containers": [{"name": "c"}]}}  # fmt: skip


def test_agent_enforces_kubernetes_policy_read_from_the_api_server(kube: Any) -> None:
    node, fake, kubeconfig = kube
    for name, ip in (("a", "10.65.0.2"), ("b", "10.65.0.3")):
        # the harness's interface name is the datastore's: cali + sha1("<ns>.<pod>")[:11]
        node.add_workload(name, ip, {"app": name}, namespace="x", write=False)
        fake.create("pods", pod(name, ip, {"app": name}))
    node.start_agent(ETCD_ENDPOINTS=None, DATASTORE_TYPE="kubernetes", KUBECONFIG=str(kubeconfig))
    node.wait_ready(timeout=30)
    mx = Matrix(node)
    mx.expect("a", "b", ok=True)  # profile kns.x (from the Namespace) allows
    mx.expect("b", "a", ok=True)
    mx.check()

    fake.create("networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "b-from-clients", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]},
    })  # fmt: skip
    mx.expect("a", "b", ok=False)
    mx.check()

    a = fake.get("pods", "a", "x")
    a["metadata"]["labels"]["role"] = "client"
    fake.update("pods", a)  # the pod's labels are the endpoint's
    mx.expect("a", "b", ok=True)
    mx.check()
    hits = {(c.name, c.direction, c.rule): c.packets
            for c in counters.read(libnft.NftCommand(node.ns))}  # fmt: skip
    assert hits[("x/knp.default.b-from-clients", "ingress", 0)] > 0  # the converted policy's rule

    fake.delete("networkpolicies", "b-from-clients", "x")
    a = fake.get("pods", "a", "x")
    del a["metadata"]["labels"]["role"]
    fake.update("pods", a)
    mx.check()  # no policy: open again
