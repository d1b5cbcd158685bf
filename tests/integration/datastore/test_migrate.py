"""``calicoctl datastore migrate export|import``: etcd → the Kubernetes datastore (the API server
stand-in) → a fresh etcd, every migrated record the same at the end as at the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.ipam import atomic
from tests.fakekube import FakeKube
from tests.integration.datastore.backends import comparable, install_crds

pytestmark = pytest.mark.etcd
BIN = Path(sys.executable).parent


def ctl(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBE", "DATASTORE"))}
    return subprocess.run([str(BIN / "calicoctl"), *args], input=stdin, capture_output=True,
                          text=True, env={**full, **env}, timeout=60, check=False)  # fmt: skip


def same(records: list[dict[str, Any]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in records:
        v = comparable(r["value"])
        if r["key"].startswith("/calico/resources/v3/projectcalico.org/nodes/"):
            v = (r["value"].get("spec") or {}).get("bgp")  # KDD adds orchRefs from the Node
        out[r["key"]] = v
    return out


def test_export_import_round_trip_through_the_kubernetes_datastore(tmp_path: Path) -> None:
    with EtcdServer.on_free_ports(tmp_path / "e1") as e1, FakeKube() as fake:
        etcd = EtcdClient([e1.endpoint])
        c = Client(etcd)
        c.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
                  "spec": {"cidr": "10.80.0.0/16", "blockSize": 26, "ipipMode": "Never",
                           "vxlanMode": "Never", "natOutgoing": True}}, validate=False)  # fmt: skip
        c.create({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                  "metadata": {"name": "deny-all"},
                  "spec": {"selector": "all()", "types": ["Ingress"]}}, validate=False)  # fmt: skip
        c.create({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n1"},
                  "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}}, validate=False)  # fmt: skip
        c.create({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                  "metadata": {"name": "kns.web"}, "spec": {}}, validate=False)  # fmt: skip
        for i in range(3):
            atomic.assign(etcd, handle_id=f"net.c{i}", host="n1")
        etcd_env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": e1.endpoint}
        kube_env = {"DATASTORE_TYPE": "kubernetes",
                    "KUBECONFIG": str(fake.write_kubeconfig(tmp_path / "kc"))}  # fmt: skip
        r = ctl("datastore", "migrate", "export", env=etcd_env)
        assert r.returncode == 0, r.stderr
        first = json.loads(r.stdout)["records"]
        keys = {rec["key"] for rec in first}
        assert not any("kns.web" in k for k in keys)  # derived: never migrated
        assert sum("/ipam/v2/handle/" in k for k in keys) == 3
        (tmp_path / "export.json").write_text(r.stdout)
        # into the Kubernetes datastore: no CRDs yet, then no Node n1: refused, nothing written
        r = ctl("datastore", "migrate", "import", "-f", str(tmp_path / "export.json"), env=kube_env)
        assert r.returncode != 0
        assert "CustomResourceDefinition" in r.stderr
        install_crds(lambda d: fake.create("customresourcedefinitions", d))
        r = ctl("datastore", "migrate", "import", "-f", str(tmp_path / "export.json"), env=kube_env)
        assert r.returncode != 0
        assert "Node n1 does not exist" in r.stderr
        assert fake.list("ippools.crd.projectcalico.org") == []
        fake.create("nodes", {"metadata": {"name": "n1"}})
        r = ctl("datastore", "migrate", "import", "-f", str(tmp_path / "export.json"), env=kube_env)
        assert r.returncode == 0, r.stderr
        assert len(fake.list("ipamhandles.crd.projectcalico.org")) == 3
        # a second import: the target is not empty, refused
        r = ctl("datastore", "migrate", "import", "-f", str(tmp_path / "export.json"), env=kube_env)
        assert r.returncode != 0
        assert "already holds" in r.stderr
        r = ctl("datastore", "migrate", "export", env=kube_env)
        assert r.returncode == 0, r.stderr
        second = json.loads(r.stdout)["records"]
        assert same(second) == same(first)
        # and back into a fresh etcd
        (tmp_path / "back.json").write_text(r.stdout)
        with EtcdServer.on_free_ports(tmp_path / "e2") as e2:
            env2 = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": e2.endpoint}
            r = ctl("datastore", "migrate", "import", "-f", str(tmp_path / "back.json"), env=env2)
            assert r.returncode == 0, r.stderr
            r = ctl("datastore", "migrate", "export", env=env2)
            assert same(json.loads(r.stdout)["records"]) == same(first)
        etcd.close()
