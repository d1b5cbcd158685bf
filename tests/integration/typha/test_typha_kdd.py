"""calico-typha on the Kubernetes datastore (``DATASTORE_TYPE=kubernetes``; the API server
stand-in, and a real kube-apiserver when ``make kube`` has built one, both with Calico's CRDs): its
clients end with exactly what a syncer on the same API server sees side by side — Calico CRs,
Kubernetes NetworkPolicies and Namespaces, several resource types each with its own watch — early
and late joiners alike, each change once; a killed Typha: the clients move to the other and
resync exactly once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calico.calc.graph import watched_prefixes
from calico.datastore.client import Client, NotFound
from calico.datastore.kube import KubeBackend
from calico.datastore.kube_api import Access
from calico.datastore.syncer import Syncer, SyncStatus
from calico.lib.kubeconfig import load_kubeconfig
from tests.fakekube import FakeKube
from tests.integration.controllers import kube_apiserver
from tests.integration.datastore.backends import CRD_PATH, install_crds, json_kubeconfig
from tests.integration.datastore.support import Recorder, wait_until
from tests.integration.typha.support import Agent, TyphaProcess


@dataclass
class Kube:
    """One API server: a client of it, raw creates, the kubeconfig Typha is given."""

    name: str
    access: Access
    kubeconfig: Path
    create: Callable[[str, dict[str, Any]], object]

    def backend(self) -> KubeBackend:
        return KubeBackend(self.access, timeout=5)


PATHS = {
    "namespaces": "/api/v1/namespaces",
    "networkpolicies": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}


@pytest.fixture(scope="module", params=["stand-in", "kube-apiserver"])
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kube]:
    tmp = tmp_path_factory.mktemp("kube")
    if request.param == "stand-in":
        fake = FakeKube().start()
        install_crds(lambda d: fake.create("customresourcedefinitions", d))
        kubeconfig = fake.write_kubeconfig(tmp / "kubeconfig")
        yield Kube("stand-in", Access({"server": fake.url}, "test"), kubeconfig, fake.create)
        fake.stop()
        return
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    with kube_apiserver.running(tmp) as api:
        kubeconfig = json_kubeconfig(api)
        access = Access(load_kubeconfig(str(kubeconfig)), "test")
        setup = KubeBackend(access)
        install_crds(lambda d: setup.api.request("POST", CRD_PATH, body=d))
        api.kubectl("wait", "--for=condition=established", "--timeout=30s", "crd", "--all")

        def create(plural: str, obj: dict[str, Any]) -> object:
            ns = obj["metadata"].get("namespace", "")
            status, body = setup.api.request("POST", PATHS[plural].format(ns=ns), body=obj)
            assert status in (200, 201), body
            return body

        yield Kube("kube-apiserver", access, kubeconfig, create)
        setup.close()


def gnp(i: int, tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": f"{tag}p{i % 12}"},
        "spec": {"order": i, "selector": f"app == 'a{i}'", "types": ["Ingress"]},
    }


def knp(i: int, tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{tag}np{i}", "namespace": f"{tag}ns1"},
        "spec": {"podSelector": {"matchLabels": {"app": f"a{i}"}}, "policyTypes": ["Ingress"]},
    }


class Writer:
    """Calico and Kubernetes resources written, updated and deleted in a thread."""

    def __init__(self, kube: Kube, tag: str) -> None:
        self.kube, self.tag = kube, tag
        self.client = Client(kube.backend())
        self.stopped = threading.Event()
        self.writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            if i % 5 == 4:
                self.kube.create("networkpolicies", knp(i, self.tag))
            elif i % 7 == 6:
                with contextlib.suppress(NotFound):
                    self.client.delete("GlobalNetworkPolicy", f"{self.tag}p{(i - 3) % 12}")
            else:
                self.client.apply(gnp(i, self.tag))
            self.writes += 1
            i += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


def direct_syncer(kube: Kube) -> tuple[Recorder, Syncer]:
    rec = Recorder()
    syncer = Syncer(kube.backend(), watched_prefixes(), on_updates=rec.on_updates,
                    on_status=rec.statuses.append)  # fmt: skip
    syncer.start()
    return rec, syncer


def settled(rec: Recorder) -> dict[str, Any]:
    """The recorder's state once it is in sync (every stream listed) and has not changed for
    half a second."""
    wait_until(lambda: SyncStatus.IN_SYNC in rec.statuses, 20, "the direct syncer in sync")
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with rec.lock:
            now = dict(rec.state)
        if now == last and now:
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError("the direct syncer never settled")


def seed(kube: Kube, tag: str) -> None:
    for ns in (f"{tag}ns1", f"{tag}ns2"):
        kube.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns, "labels": {"team": ns}}})  # fmt: skip
    client = Client(kube.backend())
    for i in range(12):
        client.apply(gnp(i, tag))


def test_clients_see_what_a_syncer_on_the_api_server_sees(kube: Kube, tmp_path: Path) -> None:
    seed(kube, "a")
    typha = TyphaProcess("", tmp_path / "typha.log", DATASTORE_TYPE="kubernetes",
                         KUBECONFIG=str(kube.kubeconfig)).start()  # fmt: skip
    direct, syncer = direct_syncer(kube)
    early = Agent([typha.addr], "early")
    agents = [early]
    try:
        # both hold the seed before the first write, so each must then see every change
        for rec in (early, direct):
            wait_until(lambda r=rec: SyncStatus.IN_SYNC in r.statuses, 20, "in sync")
        writer = Writer(kube, "a")
        wait_until(lambda: writer.writes >= 15, 30, "15 writes")
        agents.append(Agent([typha.addr], "late"))
        wait_until(lambda: writer.writes >= 30, 30, "30 writes")
        writer.stop()
        agents.append(Agent([typha.addr], "last"))
        want = settled(direct)
        assert any("/networkpolicies/" in k for k in want)  # knp.default.* from Kubernetes
        assert any("/profiles/" in k for k in want)  # kns.* from Namespaces
        for agent in agents:
            agent.wait_for(want, timeout=20)
            assert agent.repeated() == {}
            assert agent.statuses == [
                SyncStatus.WAIT_FOR_DATASTORE,
                SyncStatus.RESYNC_IN_PROGRESS,
                SyncStatus.IN_SYNC,
            ]
        # both synced before the first write: the early client got exactly the direct syncer's
        # deliveries, the same snapshot then every change, (key, revision) for (key, revision)
        assert set(early.deliveries) == set(direct.deliveries)
    finally:
        for agent in agents:
            agent.stop()
        syncer.stop()
        typha.stop()


def test_a_killed_typha_clients_move_and_resync_once(kube: Kube, tmp_path: Path) -> None:
    seed(kube, "b")
    env = {"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": str(kube.kubeconfig)}
    a = TyphaProcess("", tmp_path / "a.log", **env).start()
    b = TyphaProcess("", tmp_path / "b.log", **env).start()
    direct, syncer = direct_syncer(kube)
    agents = [Agent([a.addr, b.addr], f"n{i}") for i in range(3)]
    try:
        want = settled(direct)
        for agent in agents:
            agent.wait_for(want)
            assert agent.syncer.current == a.addr
        writer = Writer(kube, "b")
        wait_until(lambda: writer.writes >= 10, 30, "10 writes")
        a.kill()
        wait_until(lambda: writer.writes >= 20, 30, "10 more writes")
        writer.stop()
        want = settled(direct)
        for agent in agents:
            agent.wait_for(want, timeout=20)
            assert agent.syncer.current == b.addr
            assert agent.repeated() == {}
            assert agent.syncer.state.resyncs == 1
            assert agent.statuses.count(SyncStatus.IN_SYNC) == 1
    finally:
        for agent in agents:
            agent.stop()
        syncer.stop()
        a.stop()
        b.stop()
