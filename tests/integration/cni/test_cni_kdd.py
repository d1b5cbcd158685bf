"""The calico CNI plugin with ``datastore_type: kubernetes``: ADD reads the pod from the API server
(the stand-in, Calico's CRDs installed, reached from the node's namespace on 127.0.0.1), allocates
from an IPPool custom resource and annotates the pod (``cni.projectcalico.org/podIP``, ``podIPs``,
``containerID``: its WorkloadEndpoint in this mode); DEL removes the annotations and releases the
address (no IPAMHandle left)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.kube import KubeBackend
from calico.datastore.kube_api import Access
from tests.fakekube import FakeKube
from tests.integration.cni.conftest import Node
from tests.integration.datastore.backends import install_crds
from tests.nsnet import Forwarder

pytestmark = [pytest.mark.netns]

PODIP = "cni.projectcalico.org/podIP"
PODIPS = "cni.projectcalico.org/podIPs"
CONTAINER = "cni.projectcalico.org/containerID"
HANDLES = "ipamhandles.crd.projectcalico.org"


@pytest.fixture
def kube(make_node: Callable[[str], Node], tmp_path: Path) -> Iterator[tuple[Node, FakeKube, Path]]:
    node = make_node("node1")
    with FakeKube() as fake:
        install_crds(lambda d: fake.create("customresourcedefinitions", d))
        fwd = Forwarder(node.netns, fake.port)  # the node reaches it on its own 127.0.0.1
        fake.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}})
        fake.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "shop"}})  # fmt: skip
        fake.create("pods", {"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": "web", "namespace": "shop",
                                          "labels": {"app": "web"}},
                             "spec": {"nodeName": "node1",
                                      "containers": [{"name": "c"}]}})  # fmt: skip
        client = Client(KubeBackend(Access({"server": fake.url}, "test"), timeout=5))
        client.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                       "metadata": {"name": "pool1"},
                       "spec": {"cidr": "10.66.0.0/16", "blockSize": 26}},
                      validate=False)  # fmt: skip
        client.backend.close()
        try:
            yield node, fake, fake.write_kubeconfig(tmp_path / "kubeconfig")
        finally:
            fwd.close()


def test_add_annotates_the_pod_and_del_takes_it_back(
    kube: tuple[Node, FakeKube, Path], make_netns: Callable[[], str]
) -> None:
    node, fake, kubeconfig = kube
    conf = node.conf(datastore_type="kubernetes", kubernetes={"kubeconfig": str(kubeconfig)},
                     policy={"type": "k8s"})  # fmt: skip
    conf.pop("etcd_endpoints", None)
    ns = make_netns()
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web"
    r = node.run("ADD", conf, container_id="c0ffee", netns=f"/var/run/netns/{ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    address = r.answer["ips"][0]["address"]
    assert address.startswith("10.66.")
    notes = fake.get("pods", "web", "shop")["metadata"]["annotations"]
    assert notes[PODIP] == address  # CIDR form, as Calico writes it: "10.66.x.y/32"
    assert notes[PODIPS] == address
    assert address.endswith("/32")
    assert notes[CONTAINER] == "c0ffee"
    assert fake.list(HANDLES)  # the address is held, in the Kubernetes datastore
    assert fake.get("pods", "web", "shop")["metadata"]["labels"] == {"app": "web"}

    r = node.run("DEL", conf, container_id="c0ffee", netns="", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    notes = fake.get("pods", "web", "shop")["metadata"].get("annotations") or {}
    assert not {PODIP, PODIPS, CONTAINER} & set(notes)
    assert fake.list(HANDLES) == []  # released
