"""Syncer against a real etcd: exactly-once delivery across etcd restarts and compaction."""

from __future__ import annotations

import threading
import time

import pytest

from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.datastore.syncer import Syncer, SyncStatus, Update
from tests.integration.datastore.support import PREFIX, Recorder, snapshot, wait_until

pytestmark = pytest.mark.etcd


def start(etcd_server: EtcdServer, rec: Recorder) -> Syncer:
    syncer = Syncer(
        EtcdClient([etcd_server.endpoint], timeout=2),
        [PREFIX + "ippools/", PREFIX + "profiles/"],
        on_updates=rec.on_updates,
        on_status=rec.statuses.append,
        retry_delay=0.05,
        max_retry_delay=0.5,
    )
    syncer.start()
    return syncer


def test_list_then_watch_delivers_every_change_once(
    etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    for i in range(5):
        etcd.put(f"{PREFIX}ippools/p{i}", f'{{"n": {i}}}')
    etcd.put(f"{PREFIX}nodes/ignored", "{}")
    rec = Recorder()
    syncer = start(etcd_server, rec)
    try:
        rec.wait_for({k: v for k, v in snapshot(etcd).items() if "/nodes/" not in k})
        # the last page is handed over before the list ends (the next prefix may still be read)
        wait_until(lambda: rec.statuses[-1] is SyncStatus.IN_SYNC, 5, "in sync")
        etcd.put(f"{PREFIX}profiles/a", '{"x": 1}')
        etcd.delete(f"{PREFIX}ippools/p0")
        etcd.put(f"{PREFIX}ippools/p1", '{"n": 11}')
        rec.wait_for({k: v for k, v in snapshot(etcd).items() if "/nodes/" not in k})
        assert all(n == 1 for n in rec.deliveries.values()), rec.deliveries
    finally:
        syncer.stop()


def test_etcd_killed_mid_watch_recovers_without_loss_or_repeats(
    etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    rec = Recorder()
    syncer = start(etcd_server, rec)
    try:
        for i in range(20):
            etcd.put(f"{PREFIX}ippools/p{i}", f'{{"n": {i}}}')
        rec.wait_for(snapshot(etcd))
        etcd_server.kill()
        time.sleep(0.5)
        etcd_server.start()
        # Changes after the restart, including deletes and re-creates.
        for i in range(0, 20, 2):
            etcd.delete(f"{PREFIX}ippools/p{i}")
        for i in range(20, 30):
            etcd.put(f"{PREFIX}profiles/q{i}", f'{{"n": {i}}}')
        etcd.put(f"{PREFIX}ippools/p0", '{"n": "again"}')
        rec.wait_for(snapshot(etcd))
        assert all(n == 1 for n in rec.deliveries.values()), rec.deliveries
    finally:
        syncer.stop()


def test_compaction_while_disconnected_relists_with_exact_differences(
    etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    rec = Recorder()
    gate = threading.Event()
    gate.set()
    blocked = threading.Event()

    def on_updates(updates: list[Update]) -> None:
        if not gate.is_set():
            blocked.set()
            gate.wait()
        rec.on_updates(updates)

    for i in range(10):
        etcd.put(f"{PREFIX}ippools/p{i}", f'{{"n": {i}}}')
    syncer = Syncer(
        EtcdClient([etcd_server.endpoint], timeout=2),
        [PREFIX + "ippools/"],
        on_updates=on_updates,
        retry_delay=0.05,
    )
    syncer.start()
    try:
        rec.wait_for(snapshot(etcd))
        gate.clear()
        etcd.put(f"{PREFIX}ippools/p8", '{"n": 88}')
        assert blocked.wait(10)  # the syncer is now stuck delivering p8
        etcd_server.stop()  # break its watch stream
        etcd_server.start()
        for i in range(5):
            etcd.delete(f"{PREFIX}ippools/p{i}")
        etcd.put(f"{PREFIX}ippools/p9", '{"n": 99}')
        etcd.compact(etcd.revision())  # the syncer's resume revision is gone
        gate.set()
        rec.wait_for(snapshot(etcd))
        assert syncer.relists >= 1
        assert rec.state[f"{PREFIX}ippools/p9"] == {"n": 99}
        assert all(n == 1 for n in rec.deliveries.values()), rec.deliveries
    finally:
        syncer.stop()
