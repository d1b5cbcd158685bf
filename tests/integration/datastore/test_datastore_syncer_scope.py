"""What the syncer reads from a real etcd: lists of only the prefixes asked for (never the rest of
their common prefix), the first in pages at one revision handed over page by page; one watch over
the smallest range holding them, whose other keys are dropped before their values are decoded."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from calico.datastore import syncer as syncer_mod
from calico.datastore.etcd import EtcdClient, WatchResponse, op_put
from calico.datastore.etcd_server import EtcdServer
from calico.datastore.etcd_wire import kv_from
from calico.datastore.syncer import Syncer, SyncStatus, Update
from tests.integration.datastore.support import PREFIX, Recorder, history, snapshot, wait_until

pytestmark = pytest.mark.etcd

POOLS = PREFIX + "ippools/"
BLOCKS = "/calico/ipam/v2/assignment/ipv4/block/"
HANDLES = "/calico/ipam/v2/handle/"  # between the two, under their common prefix /calico/
AFFINITIES = "/calico/ipam/v2/host/"


class Reading(EtcdClient):
    """An EtcdClient that records every key etcd sent it through a range or a watch."""

    def __init__(self, endpoint: str) -> None:
        super().__init__([endpoint], timeout=2)
        self.listed: list[str] = []
        self.watched: list[str] = []
        self.ranges: list[dict[str, Any]] = []

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = super()._post(path, body)
        if path == "/v3/kv/range":
            self.ranges.append(body)
            self.listed += [kv_from(d).key for d in resp.get("kvs") or []]
        return resp

    def watch(self, prefix: str, start_revision: int, **kw: Any) -> Iterator[WatchResponse]:
        for resp in super().watch(prefix, start_revision, **kw):
            self.watched += [e.key for e in resp.events]
            yield resp


def put_many(etcd: EtcdClient, items: dict[str, str]) -> None:
    pairs = list(items.items())
    for i in range(0, len(pairs), 100):
        etcd.txn([], [op_put(k, v) for k, v in pairs[i : i + 100]])


def start(client: EtcdClient, prefixes: list[str], on_updates: Any, **kw: Any) -> Syncer:
    syncer = Syncer(client, prefixes, on_updates=on_updates, retry_delay=0.05, **kw)
    syncer.start()
    return syncer


def pod_churn(etcd: EtcdClient, n: int) -> None:
    """What a pod add and delete write: a block update, a handle, an affinity now and then."""
    for i in range(n):
        etcd.txn(
            [], [op_put(f"{BLOCKS}10.0.0.0-26", f'{{"b": {i}}}'), op_put(f"{HANDLES}n{i}", "{}")]
        )
        etcd.delete(f"{HANDLES}h{i}")
        etcd.put(f"{AFFINITIES}node0/ipv4/block/10.0.{i}.0-26", "{}")


def test_only_the_prefixes_asked_for_are_listed_and_decoded(
    etcd_server: EtcdServer, etcd: EtcdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent watches blocks and IPPools; IPAM handles (one per pod) and affinities live
    between them. Not one is listed; the watch range holds them, but no value of one is decoded
    or delivered; the watched ones arrive once."""
    put_many(etcd, {f"{HANDLES}h{i}": "{}" for i in range(300)})
    put_many(etcd, {f"{POOLS}p{i}": f'{{"n": {i}}}' for i in range(3)})
    etcd.put(f"{BLOCKS}10.0.0.0-26", '{"b": 0}')
    decoded: list[str] = []
    real_decode = syncer_mod._decode

    def decode(raw: bytes, key: str) -> Any:
        decoded.append(key)
        return real_decode(raw, key)

    monkeypatch.setattr(syncer_mod, "_decode", decode)
    rec = Recorder()
    client = Reading(etcd_server.endpoint)
    syncer = start(client, [POOLS, BLOCKS], rec.on_updates)
    try:
        rec.wait_for({**snapshot(etcd, POOLS), **snapshot(etcd, BLOCKS)})
        pod_churn(etcd, 50)
        etcd.put(f"{POOLS}p0", '{"n": "new"}')
        rec.wait_for({**snapshot(etcd, POOLS), **snapshot(etcd, BLOCKS)})
        assert {k.rsplit("/", 1)[0] for k in client.listed} == {POOLS[:-1], BLOCKS[:-1]}
        assert [k for k in client.watched if k.startswith(HANDLES)] != []  # in the range...
        assert not [k for k in decoded if not k.startswith((POOLS, BLOCKS))]  # ...dropped
        starts = {base64.b64decode(r["key"]).decode() for r in client.ranges}
        assert starts == {POOLS, BLOCKS}  # one page each: nothing else was asked for
        assert rec.repeated() == {}
    finally:
        syncer.stop()


def test_the_watch_range_is_the_smallest_holding_the_prefixes(
    etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    """The BGP daemon's prefixes (node1's block affinities, v3 resources): pod churn (blocks,
    handles, and here node0's affinities, all sorting before node1's) never reaches its watch;
    the affinities of hosts sorting after it would, and be dropped as the handles above."""
    mine = f"{AFFINITIES}node1/ipv4/block/"
    rec = Recorder()
    client = Reading(etcd_server.endpoint)
    syncer = start(client, [POOLS, mine], rec.on_updates)
    try:
        wait_until(lambda: rec.statuses or client.watches_opened, 10, "watching")
        pod_churn(etcd, 30)
        etcd.put(f"{mine}10.1.0.0-26", "{}")
        etcd.put(f"{POOLS}p", "{}")
        rec.wait_for({**snapshot(etcd, POOLS), **snapshot(etcd, mine)})
        assert sorted(client.watched) == [f"{mine}10.1.0.0-26", f"{POOLS}p"]
        assert rec.repeated() == {}
    finally:
        syncer.stop()


def test_first_list_is_paged_at_one_revision_and_handed_over_page_by_page(
    etcd_server: EtcdServer, etcd: EtcdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 keys, 10 a page: three batches before InSync. A write made while the list is under
    way (here: by the consumer of the first page) is not in the list, which stays the state at
    the first page's revision, and arrives by the watch right after."""
    monkeypatch.setattr(syncer_mod, "LIST_PAGE", 10)
    put_many(etcd, {f"{POOLS}p{i:02d}": f'{{"n": {i}}}' for i in range(25)})
    listed_at = etcd.revision()
    rec = Recorder()
    batches: list[list[Update] | SyncStatus] = []
    writer = EtcdClient([etcd_server.endpoint])

    def on_updates(updates: list[Update]) -> None:
        if not any(isinstance(b, list) for b in batches):  # the first page: change a key of
            # the last page, delete one of the second
            writer.put(f"{POOLS}p24", '{"n": "changed during the list"}')
            writer.delete(f"{POOLS}p15")
        batches.append(updates)
        rec.on_updates(updates)

    syncer = start(EtcdClient([etcd_server.endpoint], timeout=2), [POOLS], on_updates,
                   on_status=batches.append)  # fmt: skip
    try:
        wait_until(lambda: SyncStatus.IN_SYNC in batches, 10, "in sync")
        rec.wait_for(snapshot(etcd, POOLS))  # the writes made during the list included
        first = batches[: batches.index(SyncStatus.IN_SYNC)]
        pages = [b for b in first if isinstance(b, list)]
        assert [len(p) for p in pages] == [10, 10, 5]
        assert {u.revision for p in pages for u in p} <= set(range(listed_at + 1))
        assert [u.value for p in pages for u in p if u.key == f"{POOLS}p24"] == [{"n": 24}]
        assert f"{POOLS}p15" in {u.key for p in pages for u in p}  # listed, then deleted
        assert rec.state[f"{POOLS}p24"] == {"n": "changed during the list"}
        assert f"{POOLS}p15" not in rec.state
        assert rec.repeated() == {}
    finally:
        syncer.stop()
        writer.close()


def test_compaction_in_the_middle_of_the_first_list_restarts_it_without_repeats(
    etcd_server: EtcdServer, etcd: EtcdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list's revision is compacted between two pages: the next page fails, the list starts
    again at a new revision and hands over only what changed since the pages already delivered
    (deletes included); InSync comes once, after a whole list."""
    monkeypatch.setattr(syncer_mod, "LIST_PAGE", 10)
    put_many(etcd, {f"{POOLS}p{i:02d}": f'{{"n": {i}}}' for i in range(30)})
    rec = Recorder()
    statuses: list[SyncStatus] = []
    release = threading.Event()
    writer = EtcdClient([etcd_server.endpoint])

    def on_updates(updates: list[Update]) -> None:
        rec.on_updates(updates)
        if not release.is_set():  # after the first page
            writer.put(f"{POOLS}p03", '{"n": "changed"}')  # already delivered: again, new rev
            writer.delete(f"{POOLS}p04")  # already delivered: a delete must follow
            writer.put(f"{POOLS}p25", '{"n": "changed too"}')  # not yet listed
            writer.compact(writer.revision())
            release.set()

    syncer = start(EtcdClient([etcd_server.endpoint], timeout=2), [POOLS], on_updates,
                   on_status=statuses.append)  # fmt: skip
    try:
        wait_until(lambda: SyncStatus.IN_SYNC in statuses, 10, "in sync")
        rec.wait_for(snapshot(etcd, POOLS))
        assert statuses.count(SyncStatus.IN_SYNC) == 1
        assert statuses[-1] is SyncStatus.IN_SYNC
        assert syncer.disconnects >= 1  # the failed page
        assert rec.repeated() == {}
        for key, times in (("p03", 2), ("p04", 2), ("p25", 1)):  # p25 was not listed yet
            assert len([1 for k, _ in rec.deliveries if k == POOLS + key]) == times, key
    finally:
        syncer.stop()
        writer.close()


def test_syncer_deliveries_equal_etcd_history_under_two_prefixes(
    etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    """Interleaved writes under two prefixes and between them: the syncer's deliveries are
    exactly etcd's history of the two prefixes (a watch from revision 1 each)."""
    rec = Recorder()
    syncer = start(EtcdClient([etcd_server.endpoint], timeout=2), [POOLS, BLOCKS], rec.on_updates,
                   on_status=rec.statuses.append)  # fmt: skip
    try:
        wait_until(lambda: SyncStatus.IN_SYNC in rec.statuses, 10, "in sync")
        for i in range(40):
            etcd.put(f"{POOLS}p{i % 7}", f'{{"n": {i}}}')
            etcd.put(f"{HANDLES}h{i}", "{}")
            etcd.txn([], [op_put(f"{BLOCKS}b{i % 5}", f'{{"n": {i}}}'), op_put(f"{POOLS}t", "{}")])
            if i % 6 == 0:
                etcd.delete(f"{BLOCKS}b{i % 5}")
        rec.wait_for({**snapshot(etcd, POOLS), **snapshot(etcd, BLOCKS)})
        upto = etcd.revision()
        want = history(etcd, POOLS, upto) | history(etcd, BLOCKS, upto)
        assert set(rec.deliveries) == want
        assert rec.repeated() == {}
    finally:
        syncer.stop()
