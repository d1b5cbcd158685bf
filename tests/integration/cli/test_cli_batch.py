"""calicoctl's batched writes (calico.cli.batch) against a real etcd: one transaction per batch,
calicoctl's per-resource semantics (create fails on existing, replace on missing or stale), stored
metadata kept, and a batch that loses a race retried."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico.cli import batch, writing
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient

pytestmark = pytest.mark.etcd


class CountingEtcd(EtcdClient):
    """A real client that counts transactions and can run a hook before the n-th one."""

    def __init__(self, endpoint: str) -> None:
        super().__init__([endpoint])
        self.txns = 0
        self.before: dict[int, Any] = {}

    def txn(self, *args: Any, **kwargs: Any) -> Any:
        self.txns += 1
        hook = self.before.pop(self.txns, None)
        if hook is not None:
            hook()
        return super().txn(*args, **kwargs)


@pytest.fixture
def ce(etcd: EtcdClient) -> CountingEtcd:
    return CountingEtcd(etcd.endpoints_text())


def gnp(i: int, order: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": f"p{i:04d}"},
        "spec": {"order": order, "selector": f"app == 'a{i}'"},
    }


def stored(etcd: EtcdClient, i: int) -> tuple[dict[str, Any], int]:
    kv = etcd.get(f"/calico/resources/v3/projectcalico.org/globalnetworkpolicies/p{i:04d}")
    assert kv is not None
    return json.loads(kv.value), kv.mod_revision


def test_create_writes_batches_of_128_in_one_transaction_each(ce: CountingEtcd) -> None:
    out = batch.write(Client(ce), [gnp(i) for i in range(300)], "create")
    assert (out.done, out.errors) == (300, [])
    assert ce.txns == 3
    revisions = {stored(ce, i)[1] for i in range(300)}
    assert len(revisions) == 3  # every put of a batch landed in one transaction
    obj, _ = stored(ce, 7)
    assert obj["spec"] == {"order": 1, "selector": "app == 'a7'"}
    assert obj["metadata"]["uid"]
    assert obj["metadata"]["creationTimestamp"]
    assert "resourceVersion" not in obj["metadata"]


def test_create_fails_exactly_the_existing_ones_and_writes_the_rest(ce: CountingEtcd) -> None:
    client = Client(ce)
    client.create(gnp(3))
    client.create(gnp(200))
    before = stored(ce, 3)
    out = batch.write(client, [gnp(i, order=9) for i in range(300)], "create")
    assert out.done == 298
    assert out.errors == [
        "resource already exists: GlobalNetworkPolicy(p0003)",
        "resource already exists: GlobalNetworkPolicy(p0200)",
    ]
    assert stored(ce, 3) == before  # untouched
    assert stored(ce, 4)[0]["spec"]["order"] == 9
    assert writing.report("create", "created", out)[0] == [
        "Partial success: created 298 out of 300 'GlobalNetworkPolicy' resources"
    ]
    skipped = batch.write(client, [gnp(i) for i in range(5)], "create", skip_exists=True)
    assert (skipped.done, skipped.skipped, skipped.errors) == (5, 5, [])


def test_apply_creates_and_replaces_keeping_uid_and_creation_time(ce: CountingEtcd) -> None:
    client = Client(ce)
    for i in range(0, 200, 2):
        client.create(gnp(i))
    old = {i: stored(ce, i)[0]["metadata"] for i in range(0, 200, 2)}
    ce.txns = 0
    out = batch.write(client, [gnp(i, order=5) for i in range(200)], "apply")
    assert (out.done, out.errors) == (200, [])
    assert ce.txns == 4  # per batch: try create-all, then CAS the existing ones with the new ones
    for i in range(200):
        obj, _ = stored(ce, i)
        assert obj["spec"]["order"] == 5
        if i % 2 == 0:
            assert obj["metadata"]["uid"] == old[i]["uid"]
            assert obj["metadata"]["creationTimestamp"] == old[i]["creationTimestamp"]
    ce.txns = 0
    again = batch.write(client, [gnp(i, order=6) for i in range(200)], "apply")
    assert again.done == 200
    assert ce.txns == 4


def test_apply_that_loses_a_race_retries_and_last_writer_wins(ce: CountingEtcd) -> None:
    client = Client(ce)
    client.create(gnp(1))
    ce.txns = 0
    # someone else replaces p0001 between our read (txn 1) and our compare-and-swap (txn 2)
    ce.before[2] = lambda: EtcdClient.put(ce, stored_key(1), json.dumps(gnp(1, order=77)))
    out = batch.write(client, [gnp(i, order=5) for i in range(3)], "apply")
    assert (out.done, out.errors) == (3, [])
    assert ce.txns == 3
    assert stored(ce, 1)[0]["spec"]["order"] == 5


def stored_key(i: int) -> str:
    return f"/calico/resources/v3/projectcalico.org/globalnetworkpolicies/p{i:04d}"


def test_replace_semantics_missing_stale_and_known_revision(ce: CountingEtcd) -> None:
    client = Client(ce)
    for i in range(4):
        client.create(gnp(i))
    current = client.get("GlobalNetworkPolicy", "p0001")  # carries resourceVersion and uid
    current["spec"]["order"] = 11
    stale = gnp(2, order=12)
    stale["metadata"]["resourceVersion"] = "1"
    docs = [gnp(0, order=10), current, stale, gnp(3, order=13), gnp(9)]
    ce.txns = 0
    out = batch.write(client, docs, "replace")
    assert out.done == 3
    rev2 = stored(ce, 2)[1]
    assert out.errors == [
        f"update conflict: GlobalNetworkPolicy(p0002) has resourceVersion {rev2}, not 1",
        "resource does not exist: GlobalNetworkPolicy(p0009)",
    ]
    assert ce.txns == 2  # one read (for the documents without a revision), one write
    assert [stored(ce, i)[0]["spec"]["order"] for i in range(4)] == [10, 11, 1, 13]
    ce.txns = 0
    fresh = [client.get("GlobalNetworkPolicy", f"p{i:04d}") for i in range(4)]
    assert batch.write(client, fresh, "replace").done == 4
    assert ce.txns == 1  # every revision known: no read before the write


def test_the_same_resource_twice_is_written_in_order(ce: CountingEtcd) -> None:
    out = batch.write(Client(ce), [gnp(1, order=1), gnp(2), gnp(1, order=2)], "apply")
    assert out.done == 3
    assert stored(ce, 1)[0]["spec"]["order"] == 2


def test_unreachable_etcd_stops_and_reports(ce: CountingEtcd) -> None:
    gone = Client(EtcdClient(["http://127.0.0.1:9"], timeout=0.5))
    out = batch.write(gone, [gnp(i) for i in range(3)], "apply")
    assert out.done == 0
    assert len(out.errors) == 1
    assert "etcd unavailable" in out.errors[0]
