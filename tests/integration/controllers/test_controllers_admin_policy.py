"""AdminNetworkPolicy / BaselineAdminNetworkPolicy through the policy controller (fake API server,
real etcd): convergence against the oracle, updates and deletes, the orphan sweep, 410 Gone,
unsupported fields reported as Events and failed closed, same-priority ANPs reported, and CRDs
that are not installed (then installed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calico.controllers.manager import KubeControllers
from calico.datastore.client import Client, NotFound
from tests.fakekube import FakeKube
from tests.integration.controllers import oracle
from tests.integration.controllers.conftest import eventually

pytestmark = pytest.mark.etcd

Factory = Callable[..., KubeControllers]
ANPS, BANPS = "adminnetworkpolicies", "baselineadminnetworkpolicies"


def _converged(fake: FakeKube, ds: Client) -> None:
    want, got = oracle.expected(fake, {}), oracle.actual(ds, {})
    assert got["global_policies"] == want["global_policies"]
    assert got["policies"] == want["policies"]


def _banp() -> dict[str, Any]:
    return {
        "metadata": {"name": "default"},
        "spec": {
            "subject": {"namespaces": {}},
            "ingress": [{"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}],
        },
    }


def _events(fake: FakeKube, n: int) -> list[dict[str, Any]]:
    evs = fake.list("events", "default")
    assert len(evs) >= n, evs
    return evs


def test_admin_policies_converge_update_delete_and_sweep(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    fake_kube.create("namespaces", oracle.ns("x"))
    fake_kube.create(ANPS, oracle.anp("x-from-y", 10, subject_ns="x", deny_from_ns="y"))
    fake_kube.create(BANPS, _banp())
    fake_kube.create("networkpolicies", oracle.policy("x", "np", app="web"))
    # Owned leftovers of a controller that was down, and a user's policy that is not ours.
    datastore.create(
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "kanp.kube-admin.gone"},
            "spec": {"tier": "kube-admin", "selector": "all()"},
        }
    )
    datastore.create({"kind": "GlobalNetworkPolicy", "metadata": {"name": "mine"}, "spec": {}})
    make_controller()
    eventually(lambda: _converged(fake_kube, datastore))
    gnp = datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.x-from-y")
    assert gnp["spec"]["tier"] == "kube-admin"
    assert gnp["spec"]["order"] == 10
    assert gnp["spec"]["ingress"][0]["metadata"] == {"annotations": {"name": "deny-y"}}
    banp = datastore.get("GlobalNetworkPolicy", "kbanp.kube-baseline.default")
    assert (banp["spec"]["tier"], banp["spec"]["order"]) == ("kube-baseline", 1000)
    datastore.get("GlobalNetworkPolicy", "mine")  # untouched
    # Priority change, then deletion.
    fake_kube.patch(ANPS, "x-from-y", {"spec": {"priority": 3}})
    eventually(lambda: _converged(fake_kube, datastore))
    assert datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.x-from-y")["spec"]["order"] == 3
    fake_kube.delete(ANPS, "x-from-y")
    fake_kube.delete(BANPS, "default")
    eventually(lambda: _converged(fake_kube, datastore))
    with pytest.raises(NotFound):
        datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.x-from-y")
    datastore.get("GlobalNetworkPolicy", "mine")


def test_410_gone_relists_admin_policies(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    fake_kube.create(ANPS, oracle.anp("a", 1, subject_ns="x", deny_from_ns="y"))
    fake_kube.create(ANPS, oracle.anp("b", 2, subject_ns="x", deny_from_ns="z"))
    make_controller()
    eventually(lambda: _converged(fake_kube, datastore))
    lists = fake_kube.list_count(ANPS)
    fake_kube.stop()
    fake_kube.delete(ANPS, "a")
    fake_kube.create(ANPS, oracle.anp("c", 3, subject_ns="y", deny_from_ns="x"))
    fake_kube.compact()
    fake_kube.start()
    eventually(lambda: _converged(fake_kube, datastore))
    assert fake_kube.list_count(ANPS) > lists
    assert "kanp.kube-admin.a" not in oracle.actual(datastore, {})["global_policies"]


def test_unsupported_fields_fail_closed_and_are_reported(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    anp = oracle.anp("partial", 5, subject_ns="x", deny_from_ns="y")
    anp["spec"]["egress"] = [
        {"name": "to-nodes", "action": "Deny", "to": [{"nodes": {"matchLabels": {"a": "b"}}}]},
        {"name": "to-dns", "action": "Allow", "to": [{"domainNames": ["example.com"]}]},
        {"name": "to-net", "action": "Allow", "to": [{"networks": ["192.0.2.0/24"]}]},
    ]
    fake_kube.create("namespaces", oracle.ns("default"))  # where cluster-scoped Events go
    fake_kube.create(ANPS, anp)
    fake_kube.create(BANPS, {**_banp(), "metadata": {"name": "not-default"}})
    make_controller()

    def reported() -> dict[str, list[str]]:
        by_name: dict[str, list[str]] = {}
        for ev in _events(fake_kube, 3):
            by_name.setdefault(ev["involvedObject"]["name"], []).append(ev["message"])
            assert ev["reason"] == "CalicoConversionFailed"
            assert ev["involvedObject"]["apiVersion"] == "policy.networking.k8s.io/v1alpha1"
        return by_name

    msgs = eventually(reported)
    assert any(
        "spec.egress[0].to[0].nodes: peer type 'nodes' is not supported" in m
        and "replaced by Deny everything" in m
        for m in msgs["partial"]
    )
    assert any("spec.egress[1].to[0].domainNames" in m and "dropped" in m for m in msgs["partial"])
    assert any("metadata.name: must be 'default'" in m for m in msgs["not-default"])
    # Never widened: the Deny became "deny everything", the Allow is gone, the rest is kept.
    egress = datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.partial")["spec"]["egress"]
    assert egress == [
        {"action": "Deny"},
        {
            "action": "Allow",
            "metadata": {"annotations": {"name": "to-net"}},
            "source": {},
            "destination": {"nets": ["192.0.2.0/24"]},
        },
    ]
    with pytest.raises(NotFound):
        datastore.get("GlobalNetworkPolicy", "kbanp.kube-baseline.not-default")


def test_same_priority_is_reported_on_both(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    fake_kube.create("namespaces", oracle.ns("default"))
    fake_kube.create(ANPS, oracle.anp("one", 7, subject_ns="x", deny_from_ns="y"))
    fake_kube.create(ANPS, oracle.anp("two", 7, subject_ns="y", deny_from_ns="x"))
    make_controller()
    eventually(lambda: _converged(fake_kube, datastore))

    def conflicts() -> dict[str, str]:
        evs = [e for e in _events(fake_kube, 2) if e["reason"] == "ConflictingPriority"]
        assert {e["involvedObject"]["name"] for e in evs} == {"one", "two"}
        return {e["involvedObject"]["name"]: e["message"] for e in evs}

    msgs = eventually(conflicts)
    assert "spec.priority: 7 is also the priority of two" in msgs["one"]
    assert "applied in name order (one, two)" in msgs["two"]
    # Both are applied (Kubernetes allows it); ties in order fall to the name.
    assert datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.two")["spec"]["order"] == 7


def test_missing_crds_are_not_an_error_and_installing_them_is_picked_up(
    fake_kube: FakeKube, datastore: Client, make_controller: Factory
) -> None:
    fake_kube.store.not_served |= {ANPS, BANPS}
    fake_kube.create(ANPS, oracle.anp("later", 1, subject_ns="x", deny_from_ns="y"))
    fake_kube.create("namespaces", oracle.ns("x"))
    fake_kube.create("networkpolicies", oracle.policy("x", "np", app="web"))
    ctl = make_controller(absent_retry=0.2)  # ready although two kinds are not served
    assert ctl.informers["AdminNetworkPolicy"].absent
    eventually(lambda: _check(datastore, "x", "knp.default.np"))
    with pytest.raises(NotFound):
        datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.later")
    fake_kube.store.not_served.clear()  # the CRDs get installed
    eventually(lambda: _converged(fake_kube, datastore))
    assert not ctl.informers["AdminNetworkPolicy"].absent


def _check(ds: Client, ns: str, name: str) -> None:
    try:
        ds.get("NetworkPolicy", name, ns)
    except NotFound as exc:
        raise AssertionError(str(exc)) from None
