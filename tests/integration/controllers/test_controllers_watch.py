"""Watch robustness: 410 Gone re-lists and reconciles, dropped connections resume, BOOKMARKs,
the API server going away and coming back, HTTPS with a CA and a bearer token."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.controllers.manager import ControllerConfig, KubeControllers
from calico.datastore.client import Client
from calico.datastore.config import DatastoreConfig
from calico.datastore.etcd_server import EtcdServer
from tests.fakekube import FakeKube
from tests.integration.controllers import oracle
from tests.integration.controllers.conftest import eventually

pytestmark = pytest.mark.etcd

Factory = Callable[..., KubeControllers]


def _restarts(ctl: KubeControllers, kind: str, reason: str) -> float:
    return sum(
        s.value
        for m in ctl.metrics.watch_restarts.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels == {"kind": kind, "reason": reason}
    )


def _policies(ds: Client) -> set[str]:
    return {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in ds.list("NetworkPolicy")
    }


def _setup(fake: FakeKube) -> None:
    fake.create("namespaces", oracle.ns("a", env="prod"))
    for i in range(3):
        fake.create("networkpolicies", oracle.policy("a", f"p{i}", app="web"))


def test_410_gone_relists_and_deletes_what_vanished(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    _setup(fake_kube)
    ctl = make_controller()
    eventually(
        lambda: _check(
            _policies(datastore) == {"a/knp.default.p0", "a/knp.default.p1", "a/knp.default.p2"}
        )
    )
    lists = fake_kube.list_count("networkpolicies")
    # The API server goes away; meanwhile objects change and history is compacted, so the
    # controller's resourceVersion is too old when it comes back: 410, re-list, reconcile.
    fake_kube.stop()
    fake_kube.delete("networkpolicies", "p1", namespace="a")
    fake_kube.create("networkpolicies", oracle.policy("a", "p3", app="db"))
    fake_kube.compact()
    fake_kube.start()
    eventually(
        lambda: _check(
            _policies(datastore) == {"a/knp.default.p0", "a/knp.default.p2", "a/knp.default.p3"}
        )
    )
    assert fake_kube.list_count("networkpolicies") > lists
    assert _restarts(ctl, "NetworkPolicy", "gone") >= 1


def test_dropped_connections_resume_from_resource_version(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    _setup(fake_kube)
    ctl = make_controller()
    eventually(lambda: _check(len(_policies(datastore)) == 3))
    lists, watches = (
        fake_kube.list_count("networkpolicies"),
        fake_kube.watch_count("networkpolicies"),
    )
    for round_ in range(3):
        fake_kube.drop_watches()
        fake_kube.create("networkpolicies", oracle.policy("a", f"after-drop-{round_}"))
        eventually(_has_policy(datastore, f"a/knp.default.after-drop-{round_}"))
    assert fake_kube.watch_count("networkpolicies") >= watches + 3
    assert fake_kube.list_count("networkpolicies") == lists  # resumed, never re-listed
    assert _restarts(ctl, "NetworkPolicy", "reconnect") >= 3


def test_bookmarks_keep_a_quiet_watch_fresh(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    _setup(fake_kube)
    ctl = make_controller()
    eventually(lambda: _check(len(_policies(datastore)) == 3))
    # Other kinds move the global resourceVersion on; NetworkPolicies stay quiet.
    for i in range(5):
        fake_kube.create("pods", oracle.pod("a", f"pod-{i}"))
    fake_kube.send_bookmarks()
    rv = str(fake_kube.store.rv)
    eventually(lambda: _check(ctl.informers["NetworkPolicy"].rv == rv))
    lists = fake_kube.list_count("networkpolicies")
    # History before now is compacted and the connection drops: a watch resumed from the old
    # list resourceVersion would get 410; resumed from the bookmark's, it just carries on.
    fake_kube.compact()
    fake_kube.drop_watches()
    fake_kube.create("networkpolicies", oracle.policy("a", "after-bookmark"))
    eventually(lambda: _check("a/knp.default.after-bookmark" in _policies(datastore)))
    assert fake_kube.list_count("networkpolicies") == lists
    assert _restarts(ctl, "NetworkPolicy", "gone") == 0
    assert fake_kube.bookmarks_sent >= 1


def test_https_with_ca_and_token(
    etcd_server: EtcdServer, datastore: Client, tmp_path: Path
) -> None:
    with FakeKube(tls_dir=tmp_path / "tls", token="s3cret") as fake:
        _setup(fake)
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        ctl = _started_controller(etcd_server, kubeconfig)
        try:
            assert ctl.wait_ready(20)
            eventually(lambda: _check(len(_policies(datastore)) == 3))
            assert fake.url.startswith("https://")
        finally:
            ctl.stop()


def test_wrong_token_never_becomes_ready(etcd_server: EtcdServer, tmp_path: Path) -> None:
    with FakeKube(token="right") as fake:
        fake.token = "wrong"
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        fake.token = "right"
        ctl = _started_controller(etcd_server, kubeconfig)
        try:
            assert not ctl.wait_ready(1.5)
            assert _restarts(ctl, "NetworkPolicy", "error") >= 1
        finally:
            ctl.stop()


def _started_controller(etcd_server: EtcdServer, kubeconfig: Path) -> KubeControllers:
    """A one-worker controller without a health listener, for a FakeKube the test made itself."""
    ctl = KubeControllers(
        ControllerConfig(
            datastore=DatastoreConfig(endpoints=etcd_server.endpoint),
            kubeconfig=str(kubeconfig),
            listen=None,
            workers=1,
        )
    )
    ctl.start()
    return ctl


def _check(cond: bool) -> None:
    assert cond


def _has_policy(ds: Client, name: str) -> Callable[[], None]:
    def check() -> None:
        assert name in _policies(ds)

    return check


def test_etcd_outage_changes_converge_after_it_returns(
    fake_kube: FakeKube, etcd_server: EtcdServer, datastore: Client, make_controller: Factory
) -> None:
    _setup(fake_kube)
    ctl = make_controller()
    eventually(lambda: _check(len(_policies(datastore)) == 3))
    etcd_server.kill()
    fake_kube.create("networkpolicies", oracle.policy("a", "during-outage"))
    fake_kube.delete("networkpolicies", "p0", namespace="a")

    def failing() -> None:
        errors = sum(
            s.value
            for m in ctl.metrics.sync_errors.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )
        assert errors >= 1

    eventually(failing)
    etcd_server.start()
    eventually(
        lambda: _check(
            _policies(datastore)
            == {"a/knp.default.p1", "a/knp.default.p2", "a/knp.default.during-outage"}
        ),
        timeout=30,
    )


def test_server_side_watch_timeouts_resume_without_relist(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    _setup(fake_kube)
    make_controller(server_timeout=1)  # the API server ends each watch after ~1 s
    eventually(lambda: _check(len(_policies(datastore)) == 3))
    lists = fake_kube.list_count("networkpolicies")
    watches = fake_kube.watch_count("networkpolicies")
    time.sleep(2.6)
    fake_kube.create("networkpolicies", oracle.policy("a", "after-timeouts"))
    eventually(_has_policy(datastore, "a/knp.default.after-timeouts"))
    assert fake_kube.watch_count("networkpolicies") >= watches + 2
    assert fake_kube.list_count("networkpolicies") == lists
