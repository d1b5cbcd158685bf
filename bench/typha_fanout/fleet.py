"""N simulated agents for bench.typha_fanout, a calico-typha process, and etcd's own counters.

A simulated agent is the agent's sync stack without its dataplane: the same prefixes
(``calc.graph.watched_prefixes``), the same feed (a datastore ``Syncer`` with its own etcd
client, or a ``TyphaSyncer``), applying every update to its own copy of the state. The fleet notes
when each agent receives each revision of one marked key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from calico.calc.graph import watched_prefixes
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import free_port
from calico.datastore.syncer import Syncer, SyncStatus, Update
from calico.datastore.typha_client import TyphaSyncer
from calico.lib import cmd

TYPHA = Path(sys.executable).with_name("calico-typha")
WATCHERS = "etcd_debugging_mvcc_watcher_total"
SENT = "etcd_network_client_grpc_sent_bytes_total"


def etcd_metrics(endpoint: str) -> dict[str, float]:
    """Watchers open and bytes sent to clients so far, from etcd's ``/metrics``."""
    with urllib.request.urlopen(endpoint + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {"watchers": 0.0, "sent": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == WATCHERS:
            out["watchers"] = float(value)
        elif name == SENT:
            out["sent"] = float(value)
    return out


class Agent:
    def __init__(self, fleet: Fleet, index: int, *, typha: str | None, etcd: str) -> None:
        self.fleet = fleet
        self.state: dict[str, Any] = {}
        self.feed: Syncer | TyphaSyncer
        if typha is not None:
            self.feed = TyphaSyncer(
                lambda: [typha],
                node=f"bench{index}",
                on_updates=self.on_updates,
                on_status=self.on_status,
                prefixes=watched_prefixes(),
            )
        else:
            self.feed = Syncer(
                EtcdClient(etcd),
                watched_prefixes(),
                on_updates=self.on_updates,
                on_status=self.on_status,
            )

    def on_updates(self, updates: list[Update]) -> None:
        for u in updates:
            if u.value is None:
                self.state.pop(u.key, None)
            else:
                self.state[u.key] = u.value
            if u.key == self.fleet.mark:
                self.fleet.arrived(u.revision, time.monotonic())

    def on_status(self, status: SyncStatus) -> None:
        if status is SyncStatus.IN_SYNC:
            self.fleet.synced()

    def stop(self) -> None:
        self.feed.stop()
        if isinstance(self.feed, TyphaSyncer):
            self.feed.close_connection()


class Fleet:
    def __init__(self, n: int, mark: str, *, typha: str | None, etcd: str) -> None:
        self.n = n
        self.mark = mark
        self.cond = threading.Condition()
        self.in_sync = 0
        self.arrivals: dict[int, list[float]] = {}
        self.agents = [Agent(self, i, typha=typha, etcd=etcd) for i in range(n)]
        for agent in self.agents:
            agent.feed.start()

    def arrived(self, revision: int, at: float) -> None:
        with self.cond:
            self.arrivals.setdefault(revision, []).append(at)
            if len(self.arrivals[revision]) >= self.n:
                self.cond.notify_all()

    def synced(self) -> None:
        with self.cond:
            self.in_sync += 1
            if self.in_sync >= self.n:
                self.cond.notify_all()

    def wait_in_sync(self, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.in_sync >= self.n, timeout):
                raise TimeoutError(f"{self.in_sync} of {self.n} agents in sync after {timeout}s")

    def wait_arrivals(self, revision: int, timeout: float) -> list[float]:
        with self.cond:
            done = self.cond.wait_for(
                lambda: len(self.arrivals.get(revision, ())) >= self.n, timeout
            )
            got = list(self.arrivals.get(revision, ()))
        if not done:
            raise TimeoutError(f"revision {revision}: {len(got)} of {self.n} agents in {timeout}s")
        return got

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()


class TyphaProcess:
    """``calico-typha`` with its shipped defaults, only its addresses set (127.0.0.1)."""

    def __init__(self, etcd_endpoint: str, log: Path) -> None:
        self.port = free_port()
        self.health_port = free_port()
        self.log = log
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ETCD_ENDPOINTS": etcd_endpoint,
            "TYPHA_SERVERHOST": "127.0.0.1",
            "TYPHA_SERVERPORT": str(self.port),
            "TYPHA_HEALTHENABLED": "true",
            "TYPHA_HEALTHHOST": "127.0.0.1",
            "TYPHA_HEALTHPORT": str(self.health_port),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> TyphaProcess:
        with self.log.open("ab") as log:
            self.proc = cmd.start([str(TYPHA)], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"calico-typha not ready (exit {self.proc.poll()}):\n{tail}")
            time.sleep(0.05)
        return self

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health_port}/readiness"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
