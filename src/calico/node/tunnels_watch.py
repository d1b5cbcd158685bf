"""``calico-node --allocate-tunnel-addrs``: keep this node's tunnel addresses right, live.

A child service of calico-node (Calico's flag and service name). Two syncers watch the IPPools and
this node's Node; any change (or the first in-sync) marks the state dirty, and the loop runs one
:class:`~calico.node.tunnels.TunnelAllocator` pass, which reads what it needs fresh — the watch is
only the trigger, so a burst of changes coalesces into one pass::

    Syncer(ippools/) ──┐
                       ├─ dirty ─► (both in sync) ─► TunnelAllocator.reconcile()
    Syncer(nodes/<me>) ┘                               │ failed (IPAM full, etcd away...)
                                                       └─► retry after 1 s, doubling to 30 s

Each syncer and the allocator get their own etcd connection (an EtcdClient is one HTTP
connection, not to be shared between threads). A pass also runs every ``resync`` seconds (default
300), which catches an address released behind our back (``calicoctl ipam release``). Switching a
pool's ``ipipMode``/``vxlanMode`` with ``calicoctl apply`` takes effect without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from calico.datastore.backend import Backend, StoreError
from calico.datastore.syncer import Syncer, SyncStatus, Update
from calico.ipam.errors import IPAMError
from calico.model import kinds
from calico.node.tunnels import TunnelAllocator, TunnelError

logger = logging.getLogger(__name__)


class TunnelService:
    def __init__(
        self,
        connect: Callable[[], Backend],
        node_name: str,
        *,
        resync: float = 300.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.allocator = TunnelAllocator(connect(), node_name)
        self.resync = resync
        self.max_backoff = max_backoff
        self.dirty = threading.Event()
        self.passes = 0  # reconcile passes that completed (for tests and logs)
        self.failures = 0
        self._in_sync: set[str] = set()
        self._syncers = {
            "pools": Syncer(
                connect(),
                [kinds.KINDS["IPPool"].prefix()],
                on_updates=self._on_updates,
                on_status=lambda s: self._on_status("pools", s),
            ),
            "node": Syncer(
                connect(),
                [kinds.KINDS["Node"].key(node_name)],
                on_updates=self._on_updates,
                on_status=lambda s: self._on_status("node", s),
            ),
        }

    # ---- syncer callbacks (syncer threads) -------------------------------------------------

    def _on_updates(self, updates: list[Update]) -> None:
        self.dirty.set()

    def _on_status(self, which: str, status: SyncStatus) -> None:
        if status is SyncStatus.IN_SYNC:
            self._in_sync.add(which)
            self.dirty.set()

    @property
    def in_sync(self) -> bool:
        return len(self._in_sync) == len(self._syncers)

    # ---- main loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        for s in self._syncers.values():
            s.start()
        backoff = 1.0
        next_pass = time.monotonic() + self.resync
        try:
            while not stop.is_set():
                self.dirty.wait(max(0.0, min(1.0, next_pass - time.monotonic())))
                if stop.is_set():
                    break
                due = self.dirty.is_set() or time.monotonic() >= next_pass
                if not (due and self.in_sync):
                    continue
                self.dirty.clear()
                stop.wait(0.05)  # coalesce a burst of changes into one pass
                if self._pass():
                    backoff = 1.0
                    next_pass = time.monotonic() + self.resync
                else:
                    next_pass = time.monotonic() + backoff
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            for s in self._syncers.values():
                s.stop()

    def _pass(self) -> bool:
        try:
            self.allocator.reconcile()
        except (IPAMError, TunnelError, StoreError) as exc:
            self.failures += 1
            logger.warning("tunnel addresses not settled (will retry): %s", exc)
            return False
        self.passes += 1
        return True


def run(connect: Callable[[], Backend], node_name: str, stop: threading.Event) -> None:
    logger.info("allocate-tunnel-addrs for node %s", node_name)
    TunnelService(connect, node_name).run(stop)
