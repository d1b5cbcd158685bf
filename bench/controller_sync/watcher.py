"""An etcd watch for bench.controller_sync: when does every wanted key have its wanted content."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from calico.datastore.etcd import EtcdClient, EtcdUnavailable


class Watcher:
    """Follows etcd from a revision; reports when every wanted key has its wanted content."""

    def __init__(self, endpoint: str, start_rev: int) -> None:
        self.etcd = EtcdClient(endpoint)
        self.start_rev = start_rev
        self.cond = threading.Condition()
        self.seen: dict[str, tuple[float, Any]] = {}
        self.changed: set[str] = set()  # keys updated since the last wait_all check
        self.puts = 0
        self.revisions: set[int] = set()  # distinct revisions of those puts: write transactions
        self.from_rev = 0  # events before this revision are not counted (see forget)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self._follow()
        except EtcdUnavailable:
            return  # etcd stopped at the end of the run

    def _follow(self) -> None:
        for batch in self.etcd.watch_prefix("/calico/resources/v3/", self.start_rev):
            now = time.monotonic()
            with self.cond:
                for ev in batch:
                    if ev.type != "PUT" or ev.mod_revision < self.from_rev:
                        continue
                    self.puts += 1
                    self.revisions.add(ev.mod_revision)
                    obj = json.loads(ev.value)
                    body = (
                        obj["metadata"].get("labels")
                        if obj["kind"] == "WorkloadEndpoint"
                        else obj["spec"]
                    )
                    self.seen[ev.key] = (now, body)
                    self.changed.add(ev.key)
                self.cond.notify_all()

    def forget(self, from_rev: int = 0) -> None:
        """Start over (a new cold start): nothing seen, no puts counted, and no event before
        ``from_rev`` counted (a reset's writes the watch has not delivered yet)."""
        with self.cond:
            self.from_rev = from_rev
            self.seen.clear()
            self.changed.clear()
            self.puts = 0
            self.revisions.clear()

    def wait_all(self, want: dict[str, Any], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            missing = {k for k, v in want.items() if self.seen.get(k, (0, None))[1] != v}
            self.changed.clear()
            while True:
                if not missing:
                    return max(self.seen[k][0] for k in want)
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(missing)} keys not converged, e.g. {list(missing)[:3]}"
                    )
                self.cond.wait(0.5)
                for k in self.changed:  # only what moved (an O(changes) check, not O(world))
                    if k in want:
                        if self.seen[k][1] == want[k]:
                            missing.discard(k)
                        else:
                            missing.add(k)
                self.changed.clear()
