"""WorkQueue: per-key work queue with coalescing, in-flight exclusion and per-key retry backoff.

client-go's workqueue semantics, which the controller's correctness rests on:

* a key is queued at most once: adding it again while queued only keeps the *earliest* add time
  (the latest Kubernetes object wins, because workers read the object from the informer cache, not
  from the event);
* a key is never processed by two workers at once: adding it while it is being processed marks it
  dirty, and ``done`` re-queues it;
* ``retry`` re-queues a failed key after ``base * 2**failures`` (capped), and ``forget`` resets it,
  so one bad object backs off alone and never blocks the others.

Thread-safe; ``get`` blocks until a key is due or the queue is shut down (then returns None).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, base_delay: float = 0.05, max_delay: float = 30.0) -> None:
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._added_at: dict[K, float] = {}
        self._delayed: list[tuple[float, int, K, float]] = []  # (due, seq, key, added_at)
        self._seq = 0
        self._failures: dict[K, int] = {}
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._shutdown = False

    def add(self, key: K, added_at: float | None = None) -> None:
        now = time.monotonic() if added_at is None else added_at
        with self._cond:
            if self._shutdown:
                return
            first = self._added_at.get(key)
            self._added_at[key] = now if first is None else min(first, now)
            if key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float, added_at: float | None = None) -> None:
        with self._cond:
            self._seq += 1
            when = time.monotonic()
            heapq.heappush(
                self._delayed,
                (when + delay, self._seq, key, when if added_at is None else added_at),
            )
            self._cond.notify()

    def retry(self, key: K, added_at: float | None = None) -> float:
        """Re-queue a failed key with exponential backoff; returns the delay used."""
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        delay = min(self._base_delay * float(2**n), self._max_delay)
        self.add_after(key, delay, added_at)
        return delay

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def _promote_due(self) -> float | None:
        """Move due delayed keys to the queue; seconds until the next one (None if none)."""
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key, added_at = heapq.heappop(self._delayed)
            self._cond.release()
            try:
                self.add(key, added_at)
            finally:
                self._cond.acquire()
        return self._delayed[0][0] - now if self._delayed else None

    def get(self, timeout: float | None = None) -> tuple[K, float] | None:
        """The next key and its earliest add time; None on shutdown or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                wait = self._promote_due()
                if self._shutdown:
                    return None
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key, self._added_at.pop(key, time.monotonic())
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def get_many(self, limit: int, timeout: float | None = None) -> list[tuple[K, float]]:
        """Like :meth:`get`, then up to ``limit`` - 1 more keys that are due now (no waiting
        for them); each must be handed back with :meth:`done`. Empty on shutdown or timeout."""
        first = self.get(timeout)
        if first is None:
            return []
        out = [first]
        with self._cond:
            while self._queue and len(out) < limit and not self._shutdown:
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
                out.append((key, self._added_at.pop(key, time.monotonic())))
        return out

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def depth(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._delayed)

    def idle(self) -> bool:
        """Nothing queued, delayed or being processed."""
        with self._cond:
            return not (self._queue or self._processing or self._delayed)
