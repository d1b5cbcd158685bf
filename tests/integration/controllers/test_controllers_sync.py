"""The policy controller against the fake API server and a real etcd: every change converges."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from calico.controllers.manager import KubeControllers
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.k8s import names
from calico.model import kinds
from tests.fakekube import FakeKube
from tests.integration.controllers import oracle
from tests.integration.controllers.conftest import eventually

pytestmark = pytest.mark.etcd

Factory = Callable[..., KubeControllers]


def _world(fake: FakeKube, ds: Client, n_ns: int = 3, pods_per_ns: int = 4) -> dict[str, Any]:
    weps = {}
    for i in range(n_ns):
        ns = f"ns{i}"
        fake.create("namespaces", oracle.ns(ns, env="prod" if i % 2 == 0 else "dev"))
        fake.create("serviceaccounts", {"metadata": {"name": "default", "namespace": ns}})
        for j in range(pods_per_ns):
            fake.create("pods", oracle.pod(ns, f"web-{j}", app="web" if j % 2 else "db"))
            k, v = oracle.make_wep(ds, ns, f"web-{j}")
            weps[k] = v
        fake.create("networkpolicies", oracle.policy(ns, "allow-web", app="web"))
        fake.create(
            "networkpolicies",
            {
                "metadata": {"name": "deny-all", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            },
        )
    return weps


def _converged(fake: FakeKube, ds: Client, weps: dict[str, tuple[str, str]]) -> None:
    want, got = oracle.expected(fake, weps), oracle.actual(ds, weps)
    # Endpoints of deleted pods are the CNI plugin's to remove; their labels are not compared.
    got["wep_labels"] = {k: v for k, v in got["wep_labels"].items() if k in want["wep_labels"]}
    assert got == want


def _foreign(ds: Client) -> list[dict[str, Any]]:
    """Calico objects the controller must never touch."""
    objs = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "user-policy", "namespace": "ns0"},
            "spec": {"selector": "all()", "types": ["Ingress"]},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "knp.default", "namespace": "ns0"},  # prefix only: not ours
            "spec": {"selector": "all()", "types": ["Ingress"]},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": "custom"},
            "spec": {"labelsToApply": {"x": "y"}},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": "node1-cni-abc-eth0", "namespace": "ns0", "labels": {"a": "b"}},
            "spec": {
                "orchestrator": "cni",
                "node": "node1",
                "workload": "web-0",
                "endpoint": "eth0",
            },
        },
    ]
    return [ds.create(o, validate=False) for o in objs]


def _writes(ctl: KubeControllers) -> float:
    return sum(
        s.value
        for m in ctl.metrics.writes.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


def _idle(ctl: KubeControllers) -> None:
    assert ctl.resyncs >= 1
    assert ctl.queue.idle()


def _same(ds: Client, objs: list[dict[str, Any]]) -> None:
    for o in objs:
        now = ds.get(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        assert now == o


def test_initial_sync_then_every_change_converges(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    weps = _world(fake_kube, datastore)
    foreign = _foreign(datastore)
    make_controller()
    eventually(lambda: _converged(fake_kube, datastore, weps))

    # Policy: change, add, delete. Namespace labels. Pod labels. SA labels. Deletions.
    fake_kube.patch(
        "networkpolicies",
        "allow-web",
        {"spec": {"ingress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}},
        namespace="ns0",
    )
    fake_kube.create("networkpolicies", oracle.policy("ns1", "new-one", port=8080, app="db"))
    fake_kube.delete("networkpolicies", "deny-all", namespace="ns2")
    fake_kube.patch("namespaces", "ns1", {"metadata": {"labels": {"env": "prod", "tier": "x"}}})
    fake_kube.patch(
        "pods", "web-1", {"metadata": {"labels": {"app": "api", "v": "2"}}}, namespace="ns0"
    )
    fake_kube.patch(
        "serviceaccounts", "default", {"metadata": {"labels": {"r": "s"}}}, namespace="ns2"
    )
    fake_kube.create("serviceaccounts", {"metadata": {"name": "builder", "namespace": "ns1"}})
    eventually(lambda: _converged(fake_kube, datastore, weps))
    assert datastore.get("NetworkPolicy", "knp.default.allow-web", "ns0")["spec"]["ingress"] == [
        {"action": "Allow", "protocol": "UDP", "source": {}, "destination": {"ports": [53]}}
    ]

    # Deleting a namespace deletes its objects (the fake cascades), and the profile goes too.
    fake_kube.delete("namespaces", "ns2")
    eventually(lambda: _converged(fake_kube, datastore, weps))
    profiles = {p["metadata"]["name"] for p in datastore.list("Profile")}
    assert "kns.ns2" not in profiles
    assert "ksa.ns2.default" not in profiles
    assert not datastore.list("NetworkPolicy", "ns2")
    _same(datastore, foreign)


def test_datastore_drift_is_put_right(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    weps = _world(fake_kube, datastore, n_ns=1, pods_per_ns=1)
    make_controller()
    eventually(lambda: _converged(fake_kube, datastore, weps))
    pol = datastore.get("NetworkPolicy", "knp.default.allow-web", "ns0")
    pol["spec"]["selector"] = "all()"
    datastore.update(pol, validate=False)
    datastore.delete("Profile", "kns.ns0")
    wep_key = next(iter(weps)).split("/")
    wep = datastore.get("WorkloadEndpoint", wep_key[1], wep_key[0])
    wep["metadata"]["labels"] = {"hijacked": "1"}
    datastore.update(wep, validate=False)
    eventually(lambda: _converged(fake_kube, datastore, weps))


def test_endpoint_created_after_the_pod_gets_current_labels(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    """The CNI plugin may write labels it read before a pod update; the controller catches up."""
    fake_kube.create("namespaces", oracle.ns("a"))
    fake_kube.create("pods", oracle.pod("a", "late", app="v1"))
    make_controller()
    fake_kube.patch("pods", "late", {"metadata": {"labels": {"app": "v2"}}}, namespace="a")
    time.sleep(0.2)  # the pod event has been handled: no endpoint yet, nothing to label
    key, ident = oracle.make_wep(datastore, "a", "late")  # written with stale labels
    eventually(lambda: _converged(fake_kube, datastore, {key: ident}))
    assert oracle.actual(datastore, {key: ident})["wep_labels"][key]["app"] == "v2"


def test_restart_midway_loses_nothing_and_duplicates_nothing(
    fake_kube: FakeKube, datastore: Client, etcd: EtcdClient, make_controller: Factory
) -> None:
    # Enough work (and one key per batch) that a stop after the first few writes lands mid-way
    # even when a loaded machine lets the worker run on while the stop is on its way.
    weps = _world(fake_kube, datastore, n_ns=6, pods_per_ns=15)
    foreign = _foreign(datastore)
    first = make_controller(workers=1, batch=1)

    def some_written() -> None:
        assert _writes(first) >= 5

    eventually(some_written, interval=0.002)
    first.stop()  # stopped while its queue is still busy with the initial sync
    needed = len(weps) + 2 * 6 + 2 * 6  # WEP labels, policies, profiles
    assert _writes(first) < needed, "the first controller finished; the test needs a mid-way stop"
    # Changes while no controller runs: they must all be picked up, orphans deleted.
    fake_kube.delete("networkpolicies", "allow-web", namespace="ns1")
    fake_kube.delete("namespaces", "ns5")
    fake_kube.create("networkpolicies", oracle.policy("ns0", "late", port=9090))
    fake_kube.patch("pods", "web-0", {"metadata": {"labels": {"app": "late"}}}, namespace="ns3")
    second = make_controller()
    eventually(lambda: _converged(fake_kube, datastore, weps))
    _same(datastore, foreign)
    revision = etcd.revision()

    # A third start over a converged datastore writes nothing at all.
    second.stop()
    third = make_controller()
    eventually(lambda: _idle(third))
    assert etcd.revision() == revision
    assert _writes(third) == 0
    _converged(fake_kube, datastore, weps)


def test_one_broken_object_does_not_stop_the_others(
    fake_kube: FakeKube, datastore: Client, etcd: EtcdClient, make_controller: Factory
) -> None:
    weps = _world(fake_kube, datastore, n_ns=2, pods_per_ns=1)
    # Garbage where knp.default.allow-web in ns0 should go: every write to it fails until removed.
    key = kinds.lookup("NetworkPolicy").key(names.policy_name("allow-web"), "ns0")
    etcd.put(key, b"{not json")
    ctl = make_controller()

    def others_converged() -> None:
        got = oracle.actual(datastore, weps, policy_ns="ns1")  # ns0 holds the garbage
        want = oracle.expected(fake_kube, weps)
        want["policies"] = {k: v for k, v in want["policies"].items() if k.startswith("ns1/")}
        assert got == want

    eventually(others_converged)

    def retried() -> None:
        assert ctl.queue.failures(("NetworkPolicy", "ns0", "allow-web")) >= 2

    eventually(retried)
    etcd.delete(key)
    eventually(lambda: _converged(fake_kube, datastore, weps))
    errors = [
        s.value
        for m in ctl.metrics.sync_errors.collect()
        for s in m.samples
        if s.name.endswith("_total")
    ]
    assert sum(errors) >= 2
    assert json.loads(etcd.get(key).value)["spec"]["selector"]  # type: ignore[union-attr]


def test_disabled_controllers_touch_nothing_of_theirs(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    weps = _world(fake_kube, datastore, n_ns=1, pods_per_ns=1)
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": "kns.gone"},
            "spec": {},
        },
        validate=False,
    )
    ctl = make_controller(controllers=("policy",))
    eventually(lambda: _idle(ctl))
    want = oracle.expected(fake_kube, weps)
    got = oracle.actual(datastore, weps)
    assert got["policies"] == want["policies"]
    assert set(got["profiles"]) == {"kns.gone"}  # the namespace controller is off
    assert got["wep_labels"] == {k: {"stale": "yes"} for k in weps}
