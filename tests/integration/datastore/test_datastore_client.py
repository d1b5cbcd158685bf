"""Resource Client against a real etcd: Calico's key layout, revisions, optimistic concurrency."""

from __future__ import annotations

import json

import pytest

from calico.datastore.client import AlreadyExists, Client, Conflict, NotFound
from calico.datastore.etcd import EtcdClient

pytestmark = pytest.mark.etcd


def pool(name: str, cidr: str = "10.1.0.0/16") -> dict[str, object]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr},
    }


def test_create_uses_calico_key_layout_and_sets_metadata(
    datastore: Client, etcd: EtcdClient
) -> None:
    created = datastore.create(pool("p1"))
    kv = etcd.get("/calico/resources/v3/projectcalico.org/ippools/p1")
    assert kv is not None
    stored = json.loads(kv.value)
    assert stored["spec"]["cidr"] == "10.1.0.0/16"
    assert "resourceVersion" not in stored["metadata"]
    assert created["metadata"]["resourceVersion"] == str(kv.mod_revision)
    assert created["metadata"]["uid"]
    assert created["metadata"]["creationTimestamp"]


def test_namespaced_key_and_default_namespace(datastore: Client, etcd: EtcdClient) -> None:
    datastore.create({"kind": "NetworkPolicy", "metadata": {"name": "np"}, "spec": {}})
    assert etcd.get("/calico/resources/v3/projectcalico.org/networkpolicies/default/np")
    assert datastore.get("networkpolicy", "np")["metadata"]["namespace"] == "default"
    assert datastore.list("NetworkPolicy", "other") == []
    assert len(datastore.list("NetworkPolicy")) == 1


def test_create_twice_fails(datastore: Client) -> None:
    datastore.create(pool("p1"))
    with pytest.raises(AlreadyExists, match=r"IPPool\(p1\)"):
        datastore.create(pool("p1"))


def test_update_with_stale_revision_fails_clearly(datastore: Client) -> None:
    first = datastore.create(pool("p1"))
    stale_rv = first["metadata"]["resourceVersion"]
    datastore.update(pool("p1", "10.2.0.0/16"))
    stale = pool("p1", "10.3.0.0/16")
    stale["metadata"] = {"name": "p1", "resourceVersion": stale_rv}
    with pytest.raises(Conflict, match=f"not {stale_rv}"):
        datastore.update(stale)
    assert datastore.get("IPPool", "p1")["spec"]["cidr"] == "10.2.0.0/16"


def test_update_keeps_uid_and_apply_creates_or_replaces(datastore: Client) -> None:
    uid = datastore.create(pool("p1"))["metadata"]["uid"]
    assert datastore.update(pool("p1", "10.9.0.0/16"))["metadata"]["uid"] == uid
    datastore.apply(pool("p2"))
    datastore.apply(pool("p2", "10.8.0.0/16"))
    assert datastore.get("ippool", "p2")["spec"]["cidr"] == "10.8.0.0/16"


def test_missing_resources(datastore: Client) -> None:
    with pytest.raises(NotFound):
        datastore.get("IPPool", "nope")
    with pytest.raises(NotFound):
        datastore.update(pool("nope"))
    with pytest.raises(NotFound):
        datastore.delete("IPPool", "nope")
    datastore.create(pool("p1"))
    assert datastore.delete("IPPool", "p1")["metadata"]["name"] == "p1"
    assert datastore.list("IPPool") == []
