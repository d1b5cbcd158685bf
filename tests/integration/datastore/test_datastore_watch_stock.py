"""The watch against etcd run with etcd's own defaults (no progress notifications for 10 minutes),
as a user's or Kubernetes' etcd is: quiet streams stay open, a hung etcd is noticed within the
probe bound, and a compaction of other keys (Kubernetes compacts every 5 minutes) causes no
re-list (issue #19, defects 4 and 5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer, free_port
from calico.datastore.syncer import Syncer, SyncStatus, Update
from tests.integration.datastore.support import PREFIX, Recorder, snapshot, wait_until

pytestmark = pytest.mark.etcd

PROBE_AFTER = 0.5
PROBE_TIMEOUT = 1.0


@pytest.fixture
def stock_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(
        tmp_path / "etcd", port=free_port(), peer_port=free_port(), progress_notify_interval=None
    )
    assert not any("progress" in a for a in server.argv())
    with server:
        yield server


@pytest.fixture
def etcd(stock_etcd: EtcdServer) -> Iterator[EtcdClient]:
    client = EtcdClient([stock_etcd.endpoint])
    yield client
    client.close()


def start_syncer(
    server: EtcdServer, on_updates: object, statuses: list[SyncStatus] | None = None
) -> tuple[Syncer, EtcdClient]:
    client = EtcdClient([server.endpoint], timeout=2)
    syncer = Syncer(
        client,
        [PREFIX + "ippools/", PREFIX + "profiles/"],
        on_updates=on_updates,  # type: ignore[arg-type]
        on_status=(statuses if statuses is not None else []).append,
        retry_delay=0.05,
        max_retry_delay=0.5,
        probe_after=PROBE_AFTER,
        probe_timeout=PROBE_TIMEOUT,
    )
    syncer.start()
    return syncer, client


def test_quiet_watch_stays_open_without_progress_notifications(
    stock_etcd: EtcdServer, etcd: EtcdClient
) -> None:
    etcd.put(f"{PREFIX}ippools/p0", '{"n": 0}')
    rec = Recorder()
    syncer, client = start_syncer(stock_etcd, rec.on_updates, rec.statuses)
    try:
        rec.wait_for(snapshot(etcd))
        wait_until(lambda: client.watches_opened == 1, 5, "watch opened")
        time.sleep(8 * PROBE_AFTER)  # silent for 8 read timeouts: each answered by a probe
        assert client.probes >= 4
        assert (client.watches_opened, syncer.disconnects) == (1, 0)
        etcd.put(f"{PREFIX}ippools/p1", '{"n": 1}')
        rec.wait_for(snapshot(etcd))
        assert rec.repeated() == {}
        assert rec.statuses == [
            SyncStatus.WAIT_FOR_DATASTORE,
            SyncStatus.RESYNC_IN_PROGRESS,
            SyncStatus.IN_SYNC,
        ]
        syncer.stop()
        assert syncer.join(PROBE_AFTER + 2)  # a quiet watch ends at its next read timeout
    finally:
        syncer.stop()


def test_hung_etcd_is_noticed_within_the_probe_bound(
    stock_etcd: EtcdServer, etcd: EtcdClient
) -> None:
    rec = Recorder()
    syncer, _ = start_syncer(stock_etcd, rec.on_updates)
    try:
        etcd.put(f"{PREFIX}ippools/p0", '{"n": 0}')
        rec.wait_for(snapshot(etcd))
        stock_etcd.pause()  # sockets stay open, the kernel still ACKs: only a probe can tell
        try:
            took = wait_until(lambda: syncer.disconnects >= 1, 10, "the hung etcd noticed")
        finally:
            stock_etcd.resume()
        print(f"hung etcd noticed after {took:.2f}s (bound {PROBE_AFTER + PROBE_TIMEOUT}s)")
        assert took <= PROBE_AFTER + PROBE_TIMEOUT + 1.0
        etcd.put(f"{PREFIX}ippools/p1", '{"n": 1}')
        rec.wait_for(snapshot(etcd))
        assert (syncer.relists, rec.repeated()) == (0, {})
    finally:
        syncer.stop()


@pytest.mark.parametrize(
    ("change", "relists"), [("none", 0), ("delete", 1), ("put", 1), ("create", 1)]
)
def test_compaction_of_other_keys_needs_no_relist(
    stock_etcd: EtcdServer, etcd: EtcdClient, change: str, relists: int
) -> None:
    """The syncer's stream breaks while it delivers a change; meanwhile another datastore user
    writes and compacts its own keys past the syncer's revision. Nothing watched changed: it
    resumes with no re-list. A watched key changed (``change``): it re-lists, and still
    delivers each change once."""
    for i in range(5):
        etcd.put(f"{PREFIX}ippools/p{i}", f'{{"n": {i}}}')
    rec = Recorder()
    gate = threading.Event()
    gate.set()
    blocked = threading.Event()

    def on_updates(updates: list[Update]) -> None:
        if not gate.is_set():
            blocked.set()
            gate.wait()
        rec.on_updates(updates)

    syncer, _ = start_syncer(stock_etcd, on_updates)
    try:
        rec.wait_for(snapshot(etcd))
        gate.clear()
        etcd.put(f"{PREFIX}ippools/p4", '{"n": 44}')
        assert blocked.wait(10)  # the syncer holds p4's revision as its newest
        stock_etcd.stop()  # its watch stream is gone
        stock_etcd.start()
        for i in range(30):  # Kubernetes-like traffic the syncer does not watch
            etcd.put(f"/registry/pods/default/pod{i % 20}", f'{{"i": {i}}}')
        etcd.put(f"{PREFIX}nodes/n1", "{}")  # under the watch's common prefix, not watched
        if change == "delete":
            etcd.delete(f"{PREFIX}ippools/p1")
        elif change == "put":
            etcd.put(f"{PREFIX}ippools/p2", '{"n": 22}')
        elif change == "create":
            etcd.put(f"{PREFIX}profiles/new", '{"n": 9}')
        etcd.compact(etcd.revision())
        gate.set()
        want = {k: v for k, v in snapshot(etcd).items() if "/nodes/" not in k}
        rec.wait_for(want)
        wait_until(lambda: syncer.relists + syncer.compaction_resumes >= 1, 10, "resumed")
        assert (syncer.relists, syncer.compaction_resumes) == (relists, 1 - relists)
        etcd.put(f"{PREFIX}ippools/p3", '{"n": 33}')  # the watch works after the resume
        rec.wait_for({k: v for k, v in snapshot(etcd).items() if "/nodes/" not in k})
        assert rec.repeated() == {}
    finally:
        gate.set()
        syncer.stop()
