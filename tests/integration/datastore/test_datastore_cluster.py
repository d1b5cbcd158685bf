"""A real 3-member etcd cluster (stock flags) with members killed and hung while a writer and a
syncer run: clients keep working with a majority, the watch fails over and resumes, and every
change is delivered exactly once (compared with etcd's own history). Issue #13 item 1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd import EtcdClient, EtcdError
from calico.datastore.etcd_cluster import EtcdCluster
from calico.datastore.syncer import Syncer
from tests.integration.datastore.support import PREFIX, Recorder, history, snapshot, wait_until

pytestmark = pytest.mark.etcd

PROBE_AFTER = 0.5
PROBE_TIMEOUT = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster.on_free_ports(tmp_path / "etcd", progress_notify_interval=None) as c:
        yield c


class Writer:
    """Puts and deletes keys under the watched prefix through its own client, retrying what
    fails (a retried write may land twice: etcd's history, not this count, is the reference)."""

    def __init__(self, endpoints: list[str]) -> None:
        self.client = EtcdClient(endpoints, timeout=2)
        self.done = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"{PREFIX}ippools/w{i % 25}"
            try:
                if i % 7 == 6:
                    self.client.delete(key)
                else:
                    self.client.put(key, json.dumps({"i": i}))
            except EtcdError as exc:
                self.errors.append(str(exc))
                time.sleep(0.05)
                continue
            self.done += 1
            i += 1
            time.sleep(0.01)

    def progress(self, n: int, timeout: float, what: str) -> None:
        """``n`` more writes succeed within ``timeout``."""
        target = self.done + n
        wait_until(lambda: self.done >= target, timeout, what)

    def finish(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self.thread.join(10)
            print(f"writes: {self.done}, failed (retried): {len(self.errors)}")
            for e in self.errors[:5]:
                print("  ", e)


def start_syncer(endpoints: list[str], rec: Recorder) -> tuple[Syncer, EtcdClient]:
    client = EtcdClient(endpoints, timeout=2)
    syncer = Syncer(
        client,
        [PREFIX + "ippools/"],
        on_updates=rec.on_updates,
        retry_delay=0.05,
        max_retry_delay=0.5,
        probe_after=PROBE_AFTER,
        probe_timeout=PROBE_TIMEOUT,
    )
    syncer.start()
    return syncer, client


def check_exactly_once(cluster: EtcdCluster, rec: Recorder, syncer: Syncer) -> None:
    """The syncer's state is etcd's, and it delivered etcd's history: every event, once."""
    print(f"events delivered: {len(rec.deliveries)}, syncer disconnects: {syncer.disconnects}")
    etcd = EtcdClient(cluster.endpoints)
    final = snapshot(etcd)
    rec.wait_for(final, timeout=20)
    want = history(etcd, PREFIX + "ippools/", etcd.revision())
    assert rec.repeated() == {}
    assert set(rec.deliveries) == want
    assert syncer.relists == 0


def test_leader_then_follower_killed_under_writes_and_a_watch(cluster: EtcdCluster) -> None:
    lead = cluster.leader()
    order = [lead] + [i for i in range(3) if i != lead]  # the clients start on the leader
    endpoints = [cluster.endpoints[i] for i in order]
    rec = Recorder()
    syncer, watch_client = start_syncer(endpoints, rec)
    writer = Writer(endpoints)
    writer.thread.start()
    try:
        writer.progress(20, 10, "writes before the faults")
        cluster.member(lead).kill()
        writer.progress(30, 15, "writes with the leader dead (2 of 3 left)")
        wait_until(lambda: watch_client.watches_opened >= 2, 10, "the watch failed over")
        assert cluster.leader() != lead
        cluster.member(lead).start()  # it rejoins from its data directory
        writer.progress(20, 10, "writes after the old leader returned")
        on_watch = order[watch_client.current]
        victim = on_watch if on_watch != cluster.leader() else cluster.followers()[0]
        opened = watch_client.watches_opened
        cluster.member(victim).kill()
        writer.progress(30, 15, "writes with a follower dead (2 of 3 left)")
        if victim == on_watch:
            wait_until(lambda: watch_client.watches_opened > opened, 10, "the watch failed over")
        cluster.member(victim).start()
        writer.progress(20, 10, "writes with all three back")
        writer.finish()
        check_exactly_once(cluster, rec, syncer)
        back = EtcdClient([cluster.member(victim).endpoint])
        assert back.revision() == EtcdClient(cluster.endpoints).revision()  # serves again
    finally:
        writer.finish()
        syncer.stop()


def test_hung_member_under_the_watch_is_left_within_the_probe_bound(
    cluster: EtcdCluster,
) -> None:
    hung = cluster.followers()[0]
    order = [hung] + [i for i in range(3) if i != hung]  # the watch starts on the member we hang
    endpoints = [cluster.endpoints[i] for i in order]
    rec = Recorder()
    syncer, watch_client = start_syncer(endpoints, rec)
    writer = Writer(endpoints[1:])  # the writer keeps to the healthy members
    writer.thread.start()
    try:
        writer.progress(20, 10, "writes before the fault")
        wait_until(lambda: watch_client.watches_opened == 1, 5, "watch opened")
        cluster.member(hung).pause()
        t0 = time.monotonic()
        wait_until(lambda: syncer.disconnects >= 1, 10, "the hung member noticed")
        took = time.monotonic() - t0
        print(f"hung member noticed after {took:.2f}s (bound {PROBE_AFTER + PROBE_TIMEOUT}s)")
        assert took <= PROBE_AFTER + PROBE_TIMEOUT + 1.0
        writer.progress(20, 10, "writes with a member hung")
        wait_until(lambda: order[watch_client.current] != hung, 5, "the watch moved on")
        cluster.member(hung).resume()
        writer.progress(10, 10, "writes after it woke")
        writer.finish()
        check_exactly_once(cluster, rec, syncer)
    finally:
        cluster.member(hung).resume()
        writer.finish()
        syncer.stop()


def test_short_lived_client_never_touches_later_members_when_the_first_answers(
    cluster: EtcdCluster,
) -> None:
    import socket

    with socket.socket() as idle:  # a "member" that would show any connection made to it
        idle.bind(("127.0.0.1", 0))
        idle.listen(8)
        idle.setblocking(False)
        client = EtcdClient([cluster.endpoints[0], f"http://127.0.0.1:{idle.getsockname()[1]}"])
        client.put("/calt/k", "v")
        assert client.get("/calt/k") is not None
        with pytest.raises(BlockingIOError):
            idle.accept()
    # and when the first is down, the second serves
    dead = cluster.members[0]
    dead.kill()
    client = EtcdClient([dead.endpoint, cluster.endpoints[1]])
    kv = client.get("/calt/k")
    assert kv is not None
    assert kv.value == b"v"
