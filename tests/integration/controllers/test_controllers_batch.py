"""Reconciler.reconcile_many against a real etcd: batched writes converge like one-key writes,
never clobber a concurrent change, and an outage mid-batch leaves nothing half-done for good.

The Calico cache is synced once and then stopped, so it only learns from the reconciler's own
writes and failed compares: every concurrent change below is a race the batch must lose.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico.controllers.calico_cache import CalicoCache, Key
from calico.controllers.reconciler import Outcome, Reconciler
from calico.datastore import bulk
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.k8s import conversion, names
from calico.model import kinds
from tests.integration.controllers import oracle
from tests.integration.datastore.support import FailingTxn

pytestmark = pytest.mark.etcd

NP = kinds.lookup("NetworkPolicy")
PROFILE = kinds.lookup("Profile")
WEP = kinds.lookup("WorkloadEndpoint")


class _Store:
    """An informer's store as the reconciler reads it: listed, (namespace, name) -> object."""

    synced = True

    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self.objs.get(key)

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.objs.values())


def _world(ds: Client, n_ns: int, pods: int) -> tuple[dict[str, _Store], dict[str, Any]]:
    nss, sas, pod_objs, nps = [], [], [], []
    weps: dict[str, Any] = {}
    for i in range(n_ns):
        ns = f"ns{i}"
        nss.append(oracle.ns(ns, env="prod" if i % 2 else "dev"))
        sas.append({"metadata": {"name": "default", "namespace": ns}})
        nps.append(oracle.policy(ns, "allow-web", app="web"))
        for j in range(pods):
            pod_objs.append(oracle.pod(ns, f"web-{j}", app="web" if j % 2 else "db"))
            ns_name, ident = oracle.make_wep(ds, ns, f"web-{j}")
            weps[WEP.key(ns_name.split("/")[1], ns)] = ident
    stores = {
        "Namespace": _Store(nss),
        "ServiceAccount": _Store(sas),
        "Pod": _Store(pod_objs),
        "NetworkPolicy": _Store(nps),
    }
    return stores, weps


def _keys(stores: dict[str, _Store]) -> list[Key]:
    return [(kind, ns, name) for kind, s in stores.items() for ns, name in s.objs]


def _cache(etcd: EtcdClient) -> CalicoCache:
    cache = CalicoCache(etcd, on_owned_change=lambda key: None)
    cache.start()
    assert cache.in_sync.wait(20)
    cache.stop()  # from now on it only learns what the reconciler writes or reads
    return cache


def _reconciler(ds: Client, cache: CalicoCache, stores: dict[str, _Store]) -> Reconciler:
    return Reconciler(ds, cache, stores, report=lambda *a, **kw: None)


def _expected(stores: dict[str, _Store]) -> dict[str, Any]:
    """etcd key -> spec (policies, profiles) or labels (endpoints)."""
    want: dict[str, Any] = {}
    for np in stores["NetworkPolicy"].snapshot():
        p = conversion.network_policy_to_calico(np)
        want[NP.key(p["metadata"]["name"], p["metadata"]["namespace"])] = p["spec"]
    for obj in stores["Namespace"].snapshot():
        p = conversion.namespace_to_profile(obj)
        want[PROFILE.key(p["metadata"]["name"])] = p["spec"]
    for obj in stores["ServiceAccount"].snapshot():
        p = conversion.service_account_to_profile(obj)
        want[PROFILE.key(p["metadata"]["name"])] = p["spec"]
    return want


def _converged(etcd: EtcdClient, stores: dict[str, _Store], weps: dict[str, Any]) -> None:
    for key, spec in _expected(stores).items():
        kv = etcd.get(key)
        assert kv is not None, key
        assert json.loads(kv.value)["spec"] == spec, key
    for key, (ns, pod) in weps.items():
        kv = etcd.get(key)
        assert kv is not None, key
        want = conversion.pod_to_workload_labels(stores["Pod"].objs[(ns, pod)])
        assert json.loads(kv.value)["metadata"]["labels"] == want, key


def _writes(results: dict[Key, Outcome | Exception | None]) -> int:
    return sum(sum(r.writes.values()) for r in results.values() if isinstance(r, Outcome))


def test_a_batch_converges_in_few_transactions_and_a_second_writes_nothing(
    datastore: Client, etcd: EtcdClient
) -> None:
    stores, weps = _world(datastore, n_ns=10, pods=15)  # 150 pods, 10 NPs, 20 profiles
    cache = _cache(etcd)
    rec = _reconciler(datastore, cache, stores)
    rev = etcd.revision()
    results = rec.reconcile_many(_keys(stores))
    assert not [r for r in results.values() if isinstance(r, Exception)]
    assert _writes(results) == 150 + 10 + 20
    assert etcd.revision() - rev == 2  # 180 writes: two transactions of at most 128
    _converged(etcd, stores, weps)
    rev = etcd.revision()
    assert _writes(rec.reconcile_many(_keys(stores))) == 0
    assert etcd.revision() == rev


def test_a_change_made_meanwhile_is_kept_and_the_rest_of_the_batch_written(
    datastore: Client, etcd: EtcdClient
) -> None:
    stores, weps = _world(datastore, n_ns=2, pods=3)
    cache = _cache(etcd)
    rec = _reconciler(datastore, cache, stores)
    rec.reconcile_many(_keys(stores))
    # The pods are relabelled; meanwhile the CNI plugin rewrites one endpoint (new IP, stale
    # labels) and someone edits a policy the controller owns; the cache has seen neither.
    for ns_pod, pod in stores["Pod"].objs.items():
        stores["Pod"].objs[ns_pod] = {
            **pod,
            "metadata": {**pod["metadata"], "labels": {"app": "new", "v": "2"}},
        }
    wep_key = next(iter(weps))
    wep = datastore.get(*_wep_ident(wep_key))
    wep["spec"]["ipNetworks"] = ["10.65.0.7/32"]
    datastore.update(wep, validate=False)
    pol_name = names.policy_name("allow-web")
    pol = datastore.get("NetworkPolicy", pol_name, "ns0")
    uid = pol["metadata"]["uid"]
    pol["spec"]["order"] = 1
    datastore.update(pol, validate=False)
    stores["NetworkPolicy"].objs[("ns0", "allow-web")] = oracle.policy("ns0", "allow-web", port=81)

    results = rec.reconcile_many(_keys(stores))
    assert not [r for r in results.values() if isinstance(r, Exception)]
    _converged(etcd, stores, weps)
    after = datastore.get(*_wep_ident(wep_key))
    assert after["spec"]["ipNetworks"] == ["10.65.0.7/32"]  # the CNI plugin's change is kept
    assert after["metadata"]["labels"] == conversion.pod_to_workload_labels(
        stores["Pod"].objs[weps[wep_key]]
    )
    assert datastore.get("NetworkPolicy", pol_name, "ns0")["metadata"]["uid"] == uid
    assert _writes(results) == len(weps) + 1  # every endpoint and the one policy: once each


def _wep_ident(key: str) -> tuple[str, str, str]:
    parsed = kinds.parse_key(key)
    assert parsed is not None
    kind, ns, name = parsed
    assert ns is not None
    return kind.name, name, ns


@pytest.mark.parametrize("applied", [False, True], ids=["not-sent", "answer-lost"])
def test_an_outage_mid_batch_fails_only_the_unknown_keys_and_a_retry_writes_once(
    etcd_server: EtcdServer, datastore: Client, etcd: EtcdClient, applied: bool
) -> None:
    stores, weps = _world(datastore, n_ns=10, pods=20)  # 200 pods: two chunks of endpoints
    stores = {"Pod": stores["Pod"]}
    cache = _cache(etcd)
    failing = Client(FailingTxn(etcd_server.endpoint, fail_at=2, applied=applied))
    keys = _keys(stores)
    results = _reconciler(failing, cache, stores).reconcile_many(keys)
    failed = [k for k, r in results.items() if isinstance(r, Exception)]
    assert len(failed) == len(keys) - bulk.MAX_OPS  # the second transaction's keys
    assert _writes(results) == bulk.MAX_OPS
    rev = etcd.revision()
    again = _reconciler(datastore, cache, stores).reconcile_many(failed)
    assert not [r for r in again.values() if isinstance(r, Exception)]
    _converged(etcd, {"Pod": stores["Pod"], "Namespace": _Store([]), "ServiceAccount":
                      _Store([]), "NetworkPolicy": _Store([])}, weps)  # fmt: skip
    # applied but unanswered: the retry's compares fail, it reads, finds them done: no write
    assert etcd.revision() - rev == (0 if applied else 1)
    assert _writes(again) == (0 if applied else len(failed))
