"""The stores the datastore contract tests run against: a real etcd, the memory backend, and (when
``make kube`` has built it) a real kube-apiserver with Calico's CRDs (the Kubernetes backend).

``Store`` bundles one backend with what the tests need to reach around it: a second, independent
client (``other()``: another process's view), and the store's way to force what a watcher must
survive (``break_watches``: the connection lost; ``forget_history``: the revision it would resume
from is gone, so the next watch gets "compacted" / 410 Gone).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.datastore.backend import Backend

POOL = "/calico/resources/v3/projectcalico.org/ippools/"
HANDLE = "/calico/ipam/v2/handle/"
BLOCK4 = "/calico/ipam/v2/assignment/ipv4/block/"
CRDS = Path(__file__).resolve().parents[3] / "manifests" / "kdd" / "crds.yaml"


def pool(name: str, cidr: str = "10.1.0.0/16", **spec: Any) -> str:
    """An IPPool's stored JSON (what Client.create writes, minus what it adds)."""
    return json.dumps(
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
         "metadata": {"name": name, "uid": f"uid-{name}",
                      "creationTimestamp": "2024-01-01T00:00:00Z"},
         "spec": {"cidr": cidr, "blockSize": 26, **spec}},
        separators=(",", ":"), sort_keys=True,
    )  # fmt: skip


def handle(handle_id: str, blocks: dict[str, int] | None = None) -> str:
    return json.dumps({"handleID": handle_id, "block": blocks or {"10.1.0.0/26": 1}},
                      separators=(",", ":"))  # fmt: skip


def _discard(_: object) -> None:
    pass


@dataclass
class Store:
    name: str
    backend: Backend
    other: Callable[[], Backend]  # another client of the same store
    break_watches: Callable[[], None]
    forget_history: Callable[[Backend], None]  # after writes: older revisions are gone
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for fn in self.cleanup:
            fn()
        self.backend.close()


def install_crds(create: Callable[[dict[str, Any]], object]) -> None:
    """Create every CustomResourceDefinition of manifests/kdd/crds.yaml with ``create``."""
    import yaml

    for doc in yaml.safe_load_all(CRDS.read_text()):
        if doc:
            create(doc)


def kube_fake_store() -> Store:
    """The Kubernetes backend against the fake API server (calico_lab.kubeapi), CRDs installed."""
    from calico.datastore.kube import KubeBackend
    from calico.datastore.kube_api import Access
    from tests.fakekube import FakeKube

    fake = FakeKube().start()
    install_crds(lambda d: fake.create("customresourcedefinitions", d))

    def client() -> Backend:
        return KubeBackend(Access({"server": fake.url}, "test"), timeout=5)

    st = Store("kube-fake", client(), client, fake.drop_watches, lambda b: _discard(fake.compact()))
    st.cleanup.append(fake.stop)
    return st


def comparable(value: object) -> object:
    """A stored resource without what the store assigns itself (uid, creationTimestamp: the
    Kubernetes API server sets its own)."""
    if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        meta = {k: v for k, v in value["metadata"].items() if k not in ("uid", "creationTimestamp")}
        return {**value, "metadata": meta}
    return value


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def json_kubeconfig(api: Any) -> Path:
    """A test server's kubeconfig (flow-style YAML) as JSON, which any reader takes."""
    import yaml

    out = Path(str(api.kubeconfig) + ".json")
    out.write_text(json.dumps(yaml.safe_load(api.kubeconfig.read_text())))
    return out
