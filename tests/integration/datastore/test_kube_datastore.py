"""DATASTORE_TYPE=kubernetes end to end: IPAM racing on a real kube-apiserver, calicoctl and the
calico-ipam plugin against the API server stand-in, and bad input (a wrong kubeconfig, a missing
CRD, a forbidden verb) refused with what is missing named and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.backend import Backend
from calico.datastore.client import Client
from calico.datastore.kube import KubeBackend
from calico.datastore.kube_api import Access
from calico.ipam import atomic
from calico.ipam.client import IPAMClient
from calico.lib.kubeconfig import load_kubeconfig
from tests.fakekube import FakeKube
from tests.integration.controllers import kube_apiserver
from tests.integration.datastore.backends import install_crds

BIN = Path(sys.executable).parent
POOL = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p1"},
        "spec": {"cidr": "10.70.0.0/24", "blockSize": 26, "ipipMode": "Never",
                 "vxlanMode": "Never", "natOutgoing": False, "nodeSelector": "all()"}}  # fmt: skip


def real_client(api: kube_apiserver.KubeAPIServer) -> KubeBackend:
    return KubeBackend(Access(load_kubeconfig(str(api.kubeconfig) + ".json"), "test"))


def test_concurrent_allocation_never_hands_out_an_address_twice(
    real_kube: kube_apiserver.KubeAPIServer,
) -> None:
    """Six writers, each with its own client, allocate 8 addresses each for one host from one
    pool against a real kube-apiserver: they all fight over the same IPAMBlock's
    resourceVersion. Every address is handed out once, every handle holds exactly what it was
    given, and the blocks agree with the handles."""
    setup = real_client(real_kube)
    Client(setup).create(json.loads(json.dumps(POOL)), validate=False)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        b = real_client(real_kube)
        try:
            for j in range(8):
                ips, _ = atomic.assign(b, handle_id=f"net.w{i}-{j}", host="n1")
                with lock:
                    got[f"net.w{i}-{j}"] = [str(ip) for ip in ips]
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            b.close()

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert errors == []
    every = [ip for ips in got.values() for ip in ips]
    assert len(every) == 48
    assert len(set(every)) == 48, "an address was handed out twice"
    ipam = IPAMClient(setup)
    for handle_id, ips in got.items():
        assert ipam.ips_by_handle(handle_id) == ips
    in_use = sum(b.in_use for b in ipam.blocks(4))
    assert in_use == 48
    print(f"48 allocations by 6 racing writers on a real API server: {elapsed:.2f}s")
    for handle_id in got:
        ipam.release_by_handle(handle_id)
    assert sum(b.in_use for b in ipam.blocks(4)) == 0
    setup.delete_prefix("/calico/")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKube]:
    with FakeKube() as f:
        f.write_kubeconfig(tmp_path / "kubeconfig")
        yield f


def calicoctl(tmp_path: Path, *args: str, stdin: str = "", kubeconfig: str | None = None
              ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {**os.environ, "DATASTORE_TYPE": "kubernetes",
           "KUBECONFIG": kubeconfig or str(tmp_path / "kubeconfig")}  # fmt: skip
    env.pop("ETCD_ENDPOINTS", None)
    return subprocess.run([str(BIN / "calicoctl"), *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip


def backend_of(fake: FakeKube) -> Backend:
    return KubeBackend(Access({"server": fake.url}, "test"))


def test_calicoctl_reads_and_writes_custom_resources(fake: FakeKube, tmp_path: Path) -> None:
    install_crds(lambda d: fake.create("customresourcedefinitions", d))
    r = calicoctl(tmp_path, "apply", "-f", "-", stdin=json.dumps(POOL))
    assert r.returncode == 0, r.stderr
    crd = fake.get("ippools.crd.projectcalico.org", "p1")
    assert crd["apiVersion"] == "crd.projectcalico.org/v1"
    assert crd["spec"]["cidr"] == "10.70.0.0/24"
    r = calicoctl(tmp_path, "get", "ippools", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert "10.70.0.0/24" in r.stdout
    fake.create("namespaces", {"metadata": {"name": "web", "labels": {"team": "a"}}})
    r = calicoctl(tmp_path, "get", "profiles", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert "kns.web" in r.stdout
    assert "pcns.team" in r.stdout


def test_calico_ipam_plugin_allocates_in_the_kubernetes_datastore(
    fake: FakeKube, tmp_path: Path
) -> None:
    install_crds(lambda d: fake.create("customresourcedefinitions", d))
    Client(backend_of(fake)).create(json.loads(json.dumps(POOL)), validate=False)
    conf = {"cniVersion": "0.3.1", "name": "net", "type": "x", "datastore_type": "kubernetes",
            "kubernetes": {"kubeconfig": str(tmp_path / "kubeconfig")}, "nodename": "n1",
            "ipam": {"type": "calico-ipam"}}  # fmt: skip

    def run(command: str) -> subprocess.CompletedProcess[str]:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/1/ns/net",
               "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
               "PATH": os.environ["PATH"]}  # fmt: skip
        return subprocess.run([str(BIN / "calico-ipam")], input=json.dumps(conf), env=env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    r = run("ADD")
    assert r.returncode == 0, r.stdout + r.stderr
    addr = json.loads(r.stdout)["ips"][0]["address"]
    assert addr.startswith("10.70.0.")
    handles = fake.list("ipamhandles.crd.projectcalico.org")
    assert [h["spec"]["handleID"] for h in handles] == ["net.c1"]
    assert fake.list("blockaffinities.crd.projectcalico.org")[0]["spec"]["node"] == "n1"
    assert run("DEL").returncode == 0
    assert fake.list("ipamhandles.crd.projectcalico.org") == []


def test_a_wrong_kubeconfig_is_named(fake: FakeKube, tmp_path: Path) -> None:
    r = calicoctl(tmp_path, "get", "ippools", kubeconfig=str(tmp_path / "nope"))
    assert r.returncode != 0
    assert str(tmp_path / "nope") in r.stderr


def test_a_missing_crd_is_named_and_nothing_is_written(fake: FakeKube, tmp_path: Path) -> None:
    """Only some CRDs installed: applying a pool and a FelixConfiguration names the missing CRD
    and writes neither."""
    install_crds(lambda d: fake.create("customresourcedefinitions", d)
                 if d["spec"]["names"]["plural"] != "felixconfigurations" else None)  # fmt: skip
    felix = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
             "metadata": {"name": "default"}, "spec": {"logSeverityScreen": "Info"}}  # fmt: skip
    r = calicoctl(tmp_path, "apply", "-f", "-",
                  stdin=json.dumps({"kind": "List", "items": [POOL, felix]}))  # fmt: skip
    assert r.returncode != 0
    assert "felixconfigurations.crd.projectcalico.org" in r.stdout + r.stderr
    assert fake.list("ippools.crd.projectcalico.org") == []


def test_forbidden_rbac_is_named_and_nothing_is_written(fake: FakeKube, tmp_path: Path) -> None:
    install_crds(lambda d: fake.create("customresourcedefinitions", d))
    fake.forbidden.add(("create", "felixconfigurations.crd.projectcalico.org"))
    felix = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
             "metadata": {"name": "default"}, "spec": {"logSeverityScreen": "Info"}}  # fmt: skip
    r = calicoctl(tmp_path, "apply", "-f", "-",
                  stdin=json.dumps({"kind": "List", "items": [POOL, felix]}))  # fmt: skip
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "forbidden" in out
    assert "RBAC" in out
    assert fake.list("ippools.crd.projectcalico.org") == []
