"""A watch witness: the product's Syncer, run by the test over every etcd member of the lab,
recording each delivered event, so a scenario can count events lost and delivered twice.

It watches what the agents watch (``calc.graph.watched_prefixes``) through the same client and
failover code the agents use; at the end its view (key -> mod revision) is compared with a
snapshot of etcd: a key missing or at another revision is an event lost, the same (key,
revision) delivered twice is a duplicate. Its thread is started from a thread inside the lab's
core namespace, so its sockets are made there (a thread inherits its creator's namespace).
"""

from __future__ import annotations

import threading
from typing import Any

from calico.calc import graph as calc_graph
from calico.datastore.etcd import EtcdClient
from calico.datastore.syncer import Syncer, SyncStatus, Update
from calico.lib.netns import NetnsExecutor
from calico_lab.state import LabState
from tests.chaos import converge


class Witness:
    def __init__(self, lab: LabState) -> None:
        self._ex = NetnsExecutor(lab.core)
        self.etcd: EtcdClient = self._ex.call(
            EtcdClient, lab.etcd_endpoint, tls=lab.etcd_tls("calico-lab"), timeout=5
        )
        self.view: dict[str, int] = {}
        self.seen: set[tuple[str, int]] = set()
        self.duplicates: list[tuple[str, int]] = []
        self.in_sync = threading.Event()
        self._lock = threading.Lock()
        self.syncer = Syncer(
            self.etcd,
            calc_graph.watched_prefixes(),
            on_updates=self._on_updates,
            on_status=self._on_status,
            probe_after=2.0,
            probe_timeout=2.0,
        )
        self._ex.call(self.syncer.start)

    def _on_status(self, status: SyncStatus) -> None:
        if status is SyncStatus.IN_SYNC:
            self.in_sync.set()

    def _on_updates(self, updates: list[Update]) -> None:
        with self._lock:
            for u in updates:
                if u.value is None:
                    self.view.pop(u.key, None)
                    continue
                if (u.key, u.revision) in self.seen:
                    self.duplicates.append((u.key, u.revision))
                self.seen.add((u.key, u.revision))
                self.view[u.key] = u.revision

    def lost(self, etcd_call: Any) -> list[str]:
        """Keys whose current state the witness does not have (after it caught up)."""
        updates, _ = etcd_call(converge.snapshot)
        truth = {u.key: u.revision for u in updates if u.value is not None}
        with self._lock:
            mine = dict(self.view)
        out = [f"{k} @{r}: not delivered" for k, r in truth.items() if mine.get(k) != r]
        out += [f"{k}: delivered, but deleted in etcd" for k in mine.keys() - truth.keys()]
        return sorted(out)

    def close(self) -> None:
        self.syncer.stop()
        self.syncer.join(5)
        self._ex.call(self.etcd.close)
        self._ex.close()
