"""The datastore seam's contract, the same tests against every backend: a real etcd, the memory
backend and (with ``make kube``'s binaries) a real kube-apiserver with Calico's CRDs.

What every backend honours: revisions on every record; create fails on an existing key; update
and delete are compare-and-swap on the mod revision; prefix lists sorted by key, in pages; a
transaction's compares decide which branch runs, a lost one writes nothing the caller can see and
returns the failure branch's reads; the new revision of every key written is known; the syncer
delivers a list then every change once, and survives a broken watch and a revision that is gone
(re-listing the differences).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.backend import (
    Backend,
    StoreError,
    cmp_absent,
    cmp_mod,
    op_delete,
    op_get,
    op_put,
)
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.datastore.memory import MemoryBackend
from calico.datastore.syncer import Syncer, SyncStatus
from tests.integration.controllers import kube_apiserver
from tests.integration.datastore.backends import (
    BLOCK4,
    HANDLE,
    POOL,
    Store,
    comparable,
    handle,
    kube_fake_store,
    pool,
)
from tests.integration.datastore.support import Recorder, wait_until

pytestmark = pytest.mark.etcd

BACKENDS = ["etcd", "memory", "kube-fake", "kube-real"]


def _etcd_store(tmp: Path) -> Store:
    server = EtcdServer.on_free_ports(tmp / "etcd")
    server.__enter__()

    def restart() -> None:
        server.kill()
        server.start()

    def forget(b: Backend) -> None:
        c = EtcdClient([server.endpoint])
        c.compact(c.revision())
        c.close()

    st = Store("etcd", EtcdClient([server.endpoint], timeout=5),
               lambda: EtcdClient([server.endpoint], timeout=5), restart, forget)  # fmt: skip
    st.cleanup.append(lambda: server.__exit__(None, None, None))
    return st


def _memory_store() -> Store:
    mem = MemoryBackend()
    return Store("memory", mem, lambda: mem, mem.break_watches,
                 lambda b: mem.compact(mem.current_revision))  # fmt: skip


def _real_kube_store(api: kube_apiserver.KubeAPIServer) -> Store:
    from calico.datastore.kube import KubeBackend
    from calico.datastore.kube_api import Access
    from calico.lib.kubeconfig import load_kubeconfig

    def client() -> Backend:
        acc = Access(load_kubeconfig(str(api.kubeconfig) + ".json"), "test")
        return KubeBackend(acc, timeout=10)

    def cannot() -> None:
        pytest.skip("a real API server cannot be told to drop its watches or forget its history "
                    "on demand (this runs against the fake API server)")  # fmt: skip

    st = Store("kube-real", client(), client, cannot, lambda b: cannot())
    for prefix in (POOL, HANDLE, BLOCK4):  # one server for the module: start empty
        st.cleanup.append(functools.partial(_delete_prefix, st.backend, prefix))
    return st


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "etcd":
        st = _etcd_store(tmp_path)
    elif request.param == "memory":
        st = _memory_store()
    elif request.param == "kube-fake":
        st = kube_fake_store()
    else:
        st = _real_kube_store(request.getfixturevalue("real_kube"))
    yield st
    st.close()


def value(b: Backend, key: str) -> object:
    kv = b.get(key)
    return stored(kv.value) if kv else None


def stored(text: str | bytes) -> object:
    return comparable(json.loads(text))


# ---- single keys --------------------------------------------------------------------------------


def test_create_get_update_delete_with_revisions(store: Store) -> None:
    b = store.backend
    key = POOL + "p1"
    rev = b.create(key, pool("p1"))
    assert rev
    kv = b.get(key)
    assert kv is not None
    assert kv.mod_revision == rev
    assert stored(kv.value) == stored(pool("p1"))
    assert b.create(key, pool("p1")) is None  # exists
    new = b.update(key, pool("p1", "10.2.0.0/16"), rev)
    assert new
    assert new != rev
    assert b.update(key, pool("p1", "10.3.0.0/16"), rev) is None  # stale revision
    assert value(b, key) == stored(pool("p1", "10.2.0.0/16"))
    assert not b.delete(key, mod_revision=rev)  # stale
    assert b.delete(key, mod_revision=new)
    assert b.get(key) is None
    assert not b.delete(key)
    assert b.update(key, pool("p1"), new) is None  # gone


def test_put_creates_or_replaces(store: Store) -> None:
    b = store.backend
    key = HANDLE + "net.c1"
    r1 = b.put(key, handle("net.c1"))
    r2 = b.put(key, handle("net.c1", {"10.1.0.0/26": 2}))
    kv = b.get(key)
    assert kv is not None
    assert kv.mod_revision == r2 != r1
    assert stored(kv.value) == stored(handle("net.c1", {"10.1.0.0/26": 2}))


def test_prefix_lists_are_sorted_and_paged(store: Store) -> None:
    b = store.backend
    names = [f"p{i:02d}" for i in range(7)]
    for n in reversed(names):
        b.create(POOL + n, pool(n, f"10.{len(n) + int(n[1:])}.0.0/16"))
    b.put(HANDLE + "h", handle("h"))  # another prefix: never listed with the pools
    kvs, _ = b.get_prefix(POOL)
    assert [kv.key for kv in kvs] == [POOL + n for n in names]
    pages = list(b.get_prefix_pages(POOL, limit=3))
    assert [len(p) for p, _ in pages if p] == [3, 3, 1]
    assert [kv.key for p, _ in pages for kv in p] == [POOL + n for n in names]
    assert {rev for _, rev in pages} == {pages[0][1]}  # one revision for every page
    assert b.delete_prefix(POOL) == 7
    assert b.get_prefix(POOL)[0] == []


# ---- transactions -------------------------------------------------------------------------------


def test_txn_runs_success_when_every_compare_holds(store: Store) -> None:
    b = store.backend
    a_rev = b.create(POOL + "a", pool("a"))
    assert a_rev
    r = b.txn(
        [cmp_mod(POOL + "a", a_rev), cmp_absent(HANDLE + "h1")],
        [op_put(HANDLE + "h1", handle("h1")), op_put(POOL + "a", pool("a", "10.9.0.0/16"))],
        [op_get(POOL + "a")],
    )
    assert r.succeeded
    for key in (HANDLE + "h1", POOL + "a"):
        kv = b.get(key)
        assert kv is not None
        assert kv.mod_revision == r.revision_of(key)
    assert value(b, POOL + "a") == stored(pool("a", "10.9.0.0/16"))


def test_txn_with_a_lost_compare_writes_nothing_and_reads_the_failure_branch(store: Store) -> None:
    b = store.backend
    a_rev = b.create(POOL + "a", pool("a"))
    assert a_rev
    assert b.update(POOL + "a", pool("a", "10.7.0.0/16"), a_rev)
    r = b.txn(
        [cmp_absent(HANDLE + "h1"), cmp_mod(POOL + "a", a_rev)],  # the second one is stale
        [op_put(HANDLE + "h1", handle("h1")), op_delete(POOL + "a")],
        [op_get(POOL + "a"), op_get(HANDLE + "h1")],
    )
    assert not r.succeeded
    assert [[kv.key for kv in kvs] for kvs in r.responses] == [[POOL + "a"], []]
    assert b.get(HANDLE + "h1") is None  # nothing left behind
    assert value(b, POOL + "a") == stored(pool("a", "10.7.0.0/16"))


def test_txn_whose_last_write_is_stale_leaves_nothing(store: Store) -> None:
    """The compare of the key written last is stale: what would have been written first is not
    left behind (atomic in etcd and memory; checked before any write in the Kubernetes API)."""
    b = store.backend
    h_rev = b.create(HANDLE + "h1", handle("h1"))
    assert h_rev
    assert b.update(HANDLE + "h1", handle("h1", {"10.1.0.0/26": 3}), h_rev)
    r = b.txn(
        [cmp_absent(POOL + "new"), cmp_mod(HANDLE + "h1", h_rev)],
        [op_put(POOL + "new", pool("new")), op_put(HANDLE + "h1", handle("h1"))],
        [op_get(HANDLE + "h1")],
    )
    assert not r.succeeded
    assert b.get(POOL + "new") is None
    assert value(b, HANDLE + "h1") == stored(handle("h1", {"10.1.0.0/26": 3}))


def test_read_only_txn_reads_keys_prefixes_and_counts(store: Store) -> None:
    b = store.backend
    for n in ("a", "b", "c"):
        b.create(POOL + n, pool(n))
    r = b.txn([], [op_get(POOL + "b"), op_get(POOL, prefix=True, keys_only=True),
                   op_get(POOL, prefix=True, count_only=True), op_get(POOL + "zz")])  # fmt: skip
    assert [kv.key for kv in r.responses[0]] == [POOL + "b"]
    assert [kv.key for kv in r.responses[1]] == [POOL + n for n in "abc"]
    assert r.counts[2] == 3
    assert r.responses[2] == []
    assert r.responses[3] == []


def test_concurrent_compare_and_swap_has_one_winner(store: Store) -> None:
    """Eight writers race to bump one handle's count from the same revision, each with its own
    client: every round exactly one wins, and the final count is the number of wins."""
    b = store.backend
    key = HANDLE + "race"
    b.create(key, handle("race", {"10.1.0.0/26": 0}))
    wins: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        client = store.other()
        for _ in range(5):
            while True:
                kv = client.get(key)
                assert kv is not None
                n = json.loads(kv.value)["block"]["10.1.0.0/26"]
                if client.update(key, handle("race", {"10.1.0.0/26": n + 1}), kv.mod_revision):
                    with lock:
                        wins.append(n + 1)
                    break
        if client is not b:
            client.close()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == list(range(1, 41))  # every value taken exactly once
    assert json.loads(b.get(key).value)["block"]["10.1.0.0/26"] == 40  # type: ignore[union-attr]


def test_unknown_or_refused_requests_are_store_errors(store: Store) -> None:
    with pytest.raises(StoreError):
        list(store.backend.get_prefix_pages(POOL, revision=10**9))


# ---- the syncer over the backend ---------------------------------------------------------------


def start_syncer(store: Store, rec: Recorder, prefixes: list[str]) -> Syncer:
    syncer = Syncer(store.other(), prefixes, on_updates=rec.on_updates,
                    on_status=rec.statuses.append, retry_delay=0.05, max_retry_delay=0.5,
                    probe_after=1, probe_timeout=1)  # fmt: skip
    syncer.start()
    return syncer


def state(b: Backend, *prefixes: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in prefixes:
        kvs, _ = b.get_prefix(p)
        out.update({kv.key: json.loads(kv.value) for kv in kvs})
    return out


def test_syncer_lists_then_delivers_every_change_once(store: Store) -> None:
    b = store.backend
    for i in range(5):
        b.create(POOL + f"p{i}", pool(f"p{i}", f"10.{i}.0.0/16"))
    b.put(HANDLE + "not-watched", handle("not-watched"))
    rec = Recorder()
    syncer = start_syncer(store, rec, [POOL, BLOCK4])
    try:
        rec.wait_for(state(b, POOL, BLOCK4))
        wait_until(lambda: SyncStatus.IN_SYNC in rec.statuses, 10, "in sync")
        b.delete(POOL + "p0")
        kv = b.get(POOL + "p1")
        assert kv is not None
        b.update(POOL + "p1", pool("p1", "10.11.0.0/16"), kv.mod_revision)
        b.create(POOL + "p9", pool("p9", "10.99.0.0/16"))
        rec.wait_for(state(b, POOL, BLOCK4))
        assert rec.repeated() == {}
        assert rec.statuses.count(SyncStatus.IN_SYNC) == 1
    finally:
        syncer.stop()


def test_syncer_survives_a_broken_watch_and_a_forgotten_revision(store: Store) -> None:
    b = store.backend
    rec = Recorder()
    syncer = start_syncer(store, rec, [POOL])
    try:
        wait_until(lambda: SyncStatus.IN_SYNC in rec.statuses, 15, "in sync")
        b.create(POOL + "a", pool("a"))
        rec.wait_for(state(b, POOL))
        store.break_watches()
        b.create(POOL + "b", pool("b", "10.2.0.0/16"))
        rec.wait_for(state(b, POOL), timeout=30)
        # the watch's revision is forgotten while changes happen: a re-list hands over exactly
        # the differences (a delete included)
        store.break_watches()
        b.delete(POOL + "a")
        b.create(POOL + "c", pool("c", "10.3.0.0/16"))
        store.forget_history(b)
        rec.wait_for(state(b, POOL), timeout=30)
        assert rec.repeated() == {}
        assert syncer.disconnects + syncer.relists >= 1
    finally:
        syncer.stop()


def _delete_prefix(backend: Backend, prefix: str) -> None:
    backend.delete_prefix(prefix)
