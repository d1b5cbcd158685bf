"""What the datastore integration tests share: a recording syncer consumer, etcd snapshots and
an etcd client that loses one transaction."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from calico.datastore.etcd import EtcdClient, EtcdUnavailable, TxnResult
from calico.datastore.syncer import SyncStatus, Update

PREFIX = "/calico/resources/v3/projectcalico.org/"


class Recorder:
    """Applies updates to a dict, counting deliveries per (key, revision)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.deliveries: dict[tuple[str, int], int] = {}
        self.statuses: list[SyncStatus] = []
        self.lock = threading.Lock()

    def on_updates(self, updates: list[Update]) -> None:
        with self.lock:
            for u in updates:
                self.deliveries[(u.key, u.revision)] = (
                    self.deliveries.get((u.key, u.revision), 0) + 1
                )
                if u.value is None:
                    self.state.pop(u.key, None)
                else:
                    self.state[u.key] = u.value

    def wait_for(self, expected: dict[str, Any], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.state == expected:
                    return
            time.sleep(0.02)
        with self.lock:
            assert self.state == expected

    def repeated(self) -> dict[tuple[str, int], int]:
        with self.lock:
            return {k: n for k, n in self.deliveries.items() if n != 1}


def snapshot(etcd: EtcdClient, prefix: str = PREFIX) -> dict[str, Any]:
    kvs, _ = etcd.get_prefix(prefix)
    return {kv.key: json.loads(kv.value) for kv in kvs}


def history(etcd: EtcdClient, prefix: str, upto: int) -> set[tuple[str, int]]:
    """Every event etcd holds under ``prefix`` up to revision ``upto`` (nothing compacted), as
    (key, revision): what a syncer that started on an empty prefix must have delivered."""
    seen: set[tuple[str, int]] = set()
    if upto < 2:
        return seen
    for resp in etcd.watch(prefix, 1, probe_after=5):
        seen.update((e.key, e.mod_revision) for e in resp.events)
        if resp.revision >= upto:
            break
    return seen


def wait_until(cond: Any, timeout: float, what: str) -> float:
    """Poll ``cond()`` until true; the seconds it took. Fails naming ``what``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - start


class FailingTxn(EtcdClient):
    """A real client whose ``fail_at``-th transaction is lost: not sent (``applied`` False) or
    sent and applied, its answer then lost (``applied`` True), as when etcd dies mid-request."""

    def __init__(self, endpoint: str, *, fail_at: int, applied: bool) -> None:
        super().__init__(endpoint)
        self.calls = 0
        self.fail_at = fail_at
        self.applied = applied

    def txn(self, *args: Any, **kw: Any) -> TxnResult:
        self.calls += 1
        if self.calls == self.fail_at:
            if self.applied:
                super().txn(*args, **kw)
            raise EtcdUnavailable("etcd /v3/kv/txn: connection lost (injected)")
        return super().txn(*args, **kw)
