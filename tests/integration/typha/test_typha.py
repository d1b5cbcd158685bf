"""calico-typha against a real etcd, with TyphaSyncer clients: late joiners get the state then
the stream exactly once, equal to what a syncer on etcd itself sees side by side; a slow client is
dropped while the others keep up; a Typha killed mid-stream: its clients move to the other and
resync without a duplicate; Typha up before etcd; health and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.calc.graph import watched_prefixes
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.datastore.syncer import Syncer, SyncStatus, Update
from tests.integration.datastore.support import PREFIX, Recorder, history, snapshot, wait_until
from tests.integration.typha.support import Agent, TyphaProcess

pytestmark = pytest.mark.etcd

POL = PREFIX + "globalnetworkpolicies/"


def policy(i: int, pad: int = 0) -> str:
    return json.dumps(
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"p{i}"},
            "spec": {"order": i, "selector": "all()", "pad": "x" * pad},
        }
    )


class Writer:
    """Writes (and now and then deletes) policies in a thread until stopped."""

    def __init__(self, etcd: EtcdClient, *, pad: int = 0, pause: float = 0.002) -> None:
        self.etcd, self.pad, self.pause = etcd, pad, pause
        self.stopped = threading.Event()
        self.writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            if i % 7 == 6:
                self.etcd.delete(POL + f"p{(i - 3) % 40}")
            else:
                self.etcd.put(POL + f"p{i % 40}", policy(i, self.pad))
            self.writes += 1
            i += 1
            time.sleep(self.pause)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


@pytest.fixture
def typha(etcd_server: EtcdServer, tmp_path: Path) -> Iterator[TyphaProcess]:
    t = TyphaProcess(etcd_server.endpoint, tmp_path / "typha.log").start()
    yield t
    t.stop()


def _wanted(etcd: EtcdClient) -> dict[str, object]:
    return snapshot(etcd, POL)


def test_early_and_late_clients_get_the_state_then_the_stream_exactly_once(
    etcd: EtcdClient, typha: TyphaProcess
) -> None:
    for i in range(30):
        etcd.put(POL + f"p{i}", policy(i))
    seeded = etcd.revision()
    direct = Recorder()  # what an agent syncing from etcd itself sees, side by side
    syncer = Syncer(EtcdClient(etcd.endpoints), watched_prefixes(),
                    on_updates=direct.on_updates, on_status=direct.statuses.append)  # fmt: skip
    syncer.start()
    early = Agent([typha.addr], "early")
    # both hold the seed before the first write, so each must then see every change
    for rec in (early, direct):
        wait_until(lambda r=rec: SyncStatus.IN_SYNC in r.statuses, 20, "in sync")
    writer = Writer(EtcdClient(etcd.endpoints))
    wait_until(lambda: writer.writes >= 30, 30, "30 writes")  # by count: the machine may be slow
    late = Agent([typha.addr], "late")
    wait_until(lambda: writer.writes >= 60, 30, "60 writes")
    writer.stop()
    last = Agent([typha.addr], "last")
    want = _wanted(etcd)
    try:
        for agent in (early, late, last):
            agent.wait_for(want)
            assert agent.repeated() == {}
            assert agent.statuses == [
                SyncStatus.WAIT_FOR_DATASTORE,
                SyncStatus.RESYNC_IN_PROGRESS,
                SyncStatus.IN_SYNC,
            ]
        # the early one saw the whole stream: every event etcd holds after its snapshot
        events = history(etcd, POL, etcd.revision())
        assert set(early.deliveries) <= events
        assert {e for e in events if e[1] > seeded} <= set(early.deliveries)
        # and exactly what the direct syncer saw: the same state, the same changes after the seed
        direct.wait_for(want)
        assert direct.state == early.state == late.state == last.state
        after = {e for e in direct.deliveries if e[1] > seeded}
        assert {e for e in early.deliveries if e[1] > seeded} == after
        assert {e for e in late.deliveries if e[0].startswith(POL)} <= set(direct.deliveries)
    finally:
        syncer.stop()
        for agent in (early, late, last):
            agent.stop()


def test_a_slow_client_is_dropped_while_the_others_keep_up(
    etcd_server: EtcdServer, etcd: EtcdClient, tmp_path: Path
) -> None:
    typha = TyphaProcess(
        etcd_server.endpoint,
        tmp_path / "typha.log",
        TYPHA_SERVERWRITEBUFFERSIZE="16384",
        TYPHA_SERVERMAXFALLBEHINDBYTES=str(1 << 20),
        TYPHA_SERVERMAXFALLBEHINDSECS="2",
        TYPHA_SERVERNEWCLIENTFALLBEHINDGRACEPERIOD="1",
    ).start()
    blocked = threading.Event()
    stuck = Agent([typha.addr], "stuck")
    fast = Agent([typha.addr], "fast")
    real = stuck.on_updates

    def held_up(ups: list[Update]) -> None:  # the agent's consumer blocked
        blocked.wait(60)
        real(ups)

    stuck.syncer._on_updates = held_up
    try:
        fast.wait_for(_wanted(etcd))
        writer = Writer(EtcdClient(etcd.endpoints), pad=20000, pause=0.0)

        # the flood goes on until the stuck client is dropped and well past what it could buffer
        def dropped() -> bool:
            slow = typha.metric("typha_connections_dropped_total", 'reason="slow"')
            return slow == 1 and writer.writes * 20000 > (2 << 20)

        wait_until(dropped, 30, "the stuck client dropped")
        writer.stop()
        # the others never waited: a write now reaches the fast client at once
        etcd.put(POL + "marker", policy(999))
        took = wait_until(lambda: POL + "marker" in fast.state, 10, "marker at the fast client")
        assert took < 2.0
        fast.wait_for(_wanted(etcd))
        assert fast.syncer.disconnects == 0
        blocked.set()  # it wakes up, finds itself dropped, reconnects and resyncs
        stuck.wait_for(_wanted(etcd), timeout=30)
        assert stuck.repeated() == {}
        assert stuck.syncer.state.resyncs >= 1
    finally:
        blocked.set()
        stuck.stop()
        fast.stop()
        typha.stop()


def test_a_killed_typha_clients_move_to_the_other_and_resync_without_duplicates(
    etcd_server: EtcdServer, etcd: EtcdClient, tmp_path: Path
) -> None:
    a = TyphaProcess(etcd_server.endpoint, tmp_path / "a.log").start()
    b = TyphaProcess(etcd_server.endpoint, tmp_path / "b.log").start()
    for i in range(20):
        etcd.put(POL + f"p{i}", policy(i))
    agents = [Agent([a.addr, b.addr], f"n{i}") for i in range(4)]
    try:
        for agent in agents:
            agent.wait_for(_wanted(etcd))
            assert agent.syncer.current == a.addr
        writer = Writer(EtcdClient(etcd.endpoints))
        wait_until(lambda: writer.writes >= 30, 30, "30 writes")
        a.kill()
        wait_until(lambda: writer.writes >= 80, 30, "50 more writes")
        writer.stop()
        want = _wanted(etcd)
        for agent in agents:
            agent.wait_for(want)
            assert agent.syncer.current == b.addr
            assert agent.repeated() == {}
            assert agent.syncer.state.resyncs == 1
            assert agent.statuses.count(SyncStatus.IN_SYNC) == 1
        # and back: a fresh A (listing from scratch), B killed
        a.start(wait_ready=False)
        b.kill()
        etcd.put(POL + "after", policy(1000))
        want = _wanted(etcd)
        for agent in agents:
            agent.wait_for(want, timeout=30)
            assert agent.syncer.current == a.addr
            assert agent.repeated() == {}
    finally:
        for agent in agents:
            agent.stop()
        a.stop()
        b.stop()


def test_typha_started_before_etcd_serves_once_etcd_is_up(tmp_path: Path) -> None:
    server = EtcdServer.on_free_ports(tmp_path / "etcd")
    typha = TyphaProcess(server.endpoint, tmp_path / "typha.log").start(wait_ready=False)
    agent = Agent([typha.addr])
    try:
        wait_until(lambda: agent.syncer.connects == 1, 10, "connected to a Typha without etcd")
        assert typha.get("/readiness")[0] == 503
        assert agent.statuses == [SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS]
        server.start()
        etcd = EtcdClient(server.endpoint)
        etcd.put(POL + "p1", policy(1))
        agent.wait_for(_wanted(etcd), timeout=30)
        wait_until(lambda: SyncStatus.IN_SYNC in agent.statuses, 10, "in sync")
        typha.wait(lambda: typha.get("/readiness")[0] == 200, 10, "Typha ready")
    finally:
        agent.stop()
        typha.stop()
        server.stop()


def test_health_and_metrics(etcd: EtcdClient, typha: TyphaProcess) -> None:
    for i in range(10):
        etcd.put(POL + f"p{i}", policy(i))
    agents = [Agent([typha.addr], f"n{i}") for i in range(3)]
    try:
        for agent in agents:
            agent.wait_for(_wanted(etcd))
        typha.wait(lambda: json.loads(typha.get("/readiness")[1])["connections"] == 3, 5,
                   "readiness reports 3 connections")  # fmt: skip
        assert typha.get("/liveness")[0] == 200
        assert typha.metric("typha_connections_active") == 3
        assert typha.metric("typha_connections_accepted_total") == 3
        assert typha.metric("typha_cache_size", 'syncer="felix"') == 10
        generated = typha.metric("typha_snapshots_generated_total", 'syncer="felix"')
        reused = typha.metric("typha_snapshots_reused_total", 'syncer="felix"')
        assert generated + reused == 3
        assert reused >= 1  # one snapshot served every client that found nothing changed
        assert typha.metric("typha_snapshot_raw_bytes", 'syncer="felix"') > 0
        assert typha.metric("typha_bytes_sent_total") >= sum(
            a.syncer.bytes_received for a in agents
        )
    finally:
        for agent in agents:
            agent.stop()
