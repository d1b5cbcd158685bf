"""Client.write_many / datastore.bulk against a real etcd: chunks, lost races, refusals, outages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico.datastore import bulk
from calico.datastore.client import Client, decode
from calico.datastore.etcd import EtcdClient, EtcdUnavailable
from calico.model import kinds
from tests.integration.datastore.support import FailingTxn

pytestmark = pytest.mark.etcd

PROFILE = kinds.lookup("Profile")


def _profile(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {"labelsToApply": labels},
    }


def _stored(etcd: EtcdClient, name: str) -> dict[str, Any] | None:
    kv = etcd.get(PROFILE.key(name))
    return None if kv is None else decode(kv.value, kv.mod_revision)


def test_creates_in_chunks_of_max_ops(datastore: Client, etcd: EtcdClient) -> None:
    n = 2 * bulk.MAX_OPS + 10
    objs = [_profile(f"p{i}", i=str(i)) for i in range(n)]
    results = datastore.write_many([(PROFILE.key(f"p{i}"), o, 0) for i, o in enumerate(objs)])
    assert all(isinstance(r, bulk.Written) for r in results)
    revisions = {r.revision for r in results if isinstance(r, bulk.Written)}
    assert len(revisions) == 3  # three transactions, each applied whole
    for i, obj in enumerate(objs):
        stored = _stored(etcd, f"p{i}")
        assert stored is not None
        assert stored["spec"] == {"labelsToApply": {"i": str(i)}}
        assert stored["metadata"]["uid"] == obj["metadata"]["uid"]  # given uid and timestamp
        assert stored["metadata"]["creationTimestamp"]
        assert obj["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_a_concurrent_change_is_not_clobbered_and_the_rest_is_written(
    datastore: Client, etcd: EtcdClient
) -> None:
    for name in ("a", "b", "c"):
        datastore.create(_profile(name, v="0"))
    seen = {name: _stored(etcd, name) for name in ("a", "b", "c")}
    # Someone else changes b, deletes c and creates d after we read them.
    theirs = datastore.update({**seen["b"], "spec": {"labelsToApply": {"v": "theirs"}}})  # type: ignore[dict-item]
    datastore.delete("Profile", "c")
    datastore.create(_profile("d", v="theirs"))
    changes: list[tuple[str, dict[str, Any] | None, int]] = []
    for name in ("a", "b", "c"):
        cur = seen[name]
        assert cur is not None
        obj = {**cur, "spec": {"labelsToApply": {"v": "ours"}}}
        changes.append((PROFILE.key(name), obj, int(cur["metadata"]["resourceVersion"])))
    changes.append((PROFILE.key("d"), _profile("d", v="ours"), 0))
    changes.append((PROFILE.key("e"), None, 0))  # delete what we think is absent: it is
    a, b, c, d, e = datastore.write_many(changes)

    assert isinstance(a, bulk.Written)
    assert isinstance(b, bulk.Lost)
    assert b.current is not None
    assert decode(b.current.value, b.current.mod_revision)["spec"] == theirs["spec"]
    assert isinstance(c, bulk.Lost)
    assert c.current is None
    assert isinstance(d, bulk.Lost)
    assert d.current is not None
    assert isinstance(e, bulk.Written)
    assert _stored(etcd, "a")["spec"]["labelsToApply"] == {"v": "ours"}  # type: ignore[index]
    assert _stored(etcd, "b")["spec"]["labelsToApply"] == {"v": "theirs"}  # type: ignore[index]
    assert _stored(etcd, "c") is None
    assert _stored(etcd, "d")["spec"]["labelsToApply"] == {"v": "theirs"}  # type: ignore[index]


def test_delete_is_compare_and_swap(datastore: Client, etcd: EtcdClient) -> None:
    old = datastore.create(_profile("x"))
    rev = int(old["metadata"]["resourceVersion"])
    datastore.update({**old, "spec": {"labelsToApply": {"moved": "on"}}})
    (lost,) = datastore.write_many([(PROFILE.key("x"), None, rev)])
    assert isinstance(lost, bulk.Lost)
    assert _stored(etcd, "x") is not None  # changed since read: not deleted
    cur = _stored(etcd, "x")
    assert cur is not None
    (done,) = datastore.write_many(
        [(PROFILE.key("x"), None, int(cur["metadata"]["resourceVersion"]))]
    )
    assert isinstance(done, bulk.Written)
    assert _stored(etcd, "x") is None


@pytest.mark.parametrize("max_bytes", [bulk.MAX_BYTES, 64 << 20], ids=["sized", "refused-whole"])
def test_a_write_etcd_refuses_fails_alone(
    datastore: Client, etcd: EtcdClient, monkeypatch: pytest.MonkeyPatch, max_bytes: int
) -> None:
    """etcd refuses a request over its size limit. The chunks are sized to stay under it; when
    they are not (a smaller limit than assumed: here the sizing is switched off), the refused
    chunk is split in halves until only the write that cannot fit fails."""
    monkeypatch.setattr(bulk, "MAX_BYTES", max_bytes)
    huge = _profile("huge", blob="x" * (2 << 20))
    changes = [(PROFILE.key(f"q{i}"), _profile(f"q{i}"), 0) for i in range(5)]
    changes.insert(2, (PROFILE.key("huge"), huge, 0))
    results = datastore.write_many(changes)
    refused = results[2]
    assert isinstance(refused, Exception)
    assert not isinstance(refused, EtcdUnavailable)
    assert "larger than max" in str(refused) or "too large" in str(refused), refused
    assert [type(r) for i, r in enumerate(results) if i != 2] == [bulk.Written] * 5
    assert _stored(etcd, "huge") is None
    assert all(_stored(etcd, f"q{i}") is not None for i in range(5))


@pytest.mark.parametrize("applied", [False, True], ids=["not-sent", "answer-lost"])
def test_an_outage_mid_way_leaves_whole_chunks_and_a_retry_converges(
    etcd_server: Any, datastore: Client, etcd: EtcdClient, applied: bool
) -> None:
    n = 2 * bulk.MAX_OPS
    failing = Client(FailingTxn(etcd_server.endpoint, fail_at=2, applied=applied))
    keys = [PROFILE.key(f"r{i}") for i in range(n)]
    results = failing.write_many([(k, _profile(f"r{i}"), 0) for i, k in enumerate(keys)])
    first, second = results[: bulk.MAX_OPS], results[bulk.MAX_OPS :]
    assert all(isinstance(r, bulk.Written) for r in first)
    assert all(isinstance(r, EtcdUnavailable) for r in second)
    stored = [etcd.get(k) is not None for k in keys]
    assert all(stored[: bulk.MAX_OPS])
    assert all(stored[bulk.MAX_OPS :]) if applied else not any(stored[bulk.MAX_OPS :])
    # The same creates again: the applied ones lose (never written twice), the others go in.
    before = {k: etcd.get(k) for k in keys}
    again = datastore.write_many(
        [(k, _profile(f"r{i}", again="yes"), 0) for i, k in enumerate(keys)]
    )
    for k, r in zip(keys, again, strict=True):
        if before[k] is not None:
            assert isinstance(r, bulk.Lost)
            assert r.current == before[k]
        else:
            assert isinstance(r, bulk.Written)
    assert all(etcd.get(k) is not None for k in keys)


def test_a_key_twice_is_refused_before_anything_is_sent(
    datastore: Client, etcd: EtcdClient
) -> None:
    rev = etcd.revision()
    key = PROFILE.key("twice")
    with pytest.raises(ValueError, match="twice"):
        datastore.write_many([(key, _profile("twice"), 0), (key, None, 0)])
    assert etcd.revision() == rev


def test_values_are_stored_as_client_create_stores_them(
    datastore: Client, etcd: EtcdClient
) -> None:
    (r,) = datastore.write_many([(PROFILE.key("same"), _profile("same", a="b"), 0)])
    assert isinstance(r, bulk.Written)
    raw = etcd.get(PROFILE.key("same"))
    assert raw is not None
    stored = json.loads(raw.value)
    assert "resourceVersion" not in stored["metadata"]
    assert stored["apiVersion"] == "projectcalico.org/v3"
    assert datastore.get("Profile", "same")["spec"] == {"labelsToApply": {"a": "b"}}
