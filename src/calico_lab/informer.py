"""Informer: a list+watch cache of one Kubernetes kind for ``calico-lab up --kubeconfig``.

One thread per kind (lightkube): list (remember the list's resourceVersion), then watch from that
resourceVersion and apply each event to the cache. A watch that ends or breaks resumes from the
last resourceVersion seen (events and BOOKMARKs), so nothing is listed again; only ``410 Gone``
(the resourceVersion was compacted away) makes it list again, and the new list replaces the cache
wholesale, so objects deleted meanwhile go too. Every change calls ``on_change`` (the sync daemon
sets its wake-up event). The cache holds plain dicts (``to_dict()``), replaced, never mutated.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("calico_lab.kube")
Key = tuple[str, str]  # (namespace or "", name)
WATCH_SECONDS = 300  # server-side watch timeout; lightkube reopens from the last resourceVersion
RETRY_SECONDS = 1.0


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Informer:
    def __init__(
        self, client: Any, res: Any, *, namespaced: bool, on_change: Callable[[], None]
    ) -> None:
        self.client = client
        self.res = res
        self.namespaced = namespaced
        self.on_change = on_change
        self.name = str(res.__name__)
        self.synced = threading.Event()  # set after the first list
        self.stopped = threading.Event()
        self.lists = 0  # how many times the kind was listed (1 + one per 410)
        self.resource_version: str | None = None
        self._items: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- reading -----------------------------------------------------------------------------

    def items(self) -> list[dict[str, Any]]:
        """The cached objects, sorted by (namespace, name)."""
        with self._lock:
            return [self._items[k] for k in sorted(self._items)]

    # ---- running -----------------------------------------------------------------------------

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current request (a watch in progress ends at its server timeout)."""
        self.stopped.set()

    def run(self) -> None:
        from lightkube import ApiError

        while not self.stopped.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch()
            except ApiError as exc:
                if exc.status.code == 410:
                    logger.info("watch %s: %s; listing again", self.name, exc.status.message)
                    self.resource_version = None
                    continue
                logger.warning("watch %s: %s", self.name, exc.status.message)
                self.stopped.wait(RETRY_SECONDS)
            except Exception as exc:  # connection refused/reset: resume from the same version
                logger.info("watch %s: %s; resuming at %s", self.name, exc, self.resource_version)
                self.stopped.wait(RETRY_SECONDS)

    def _list(self) -> None:
        found = (
            self.client.list(self.res, namespace="*")
            if self.namespaced
            else self.client.list(self.res)
        )
        items = {_key(d): d for d in (o.to_dict() for o in found)}
        rv = str(found.resourceVersion)
        with self._lock:
            self._items = items
            self.resource_version = rv
            self.lists += 1
        logger.info("listed %d %s at resourceVersion %s", len(items), self.name, rv)
        self.synced.set()
        self.on_change()

    def _watch(self) -> None:
        kwargs: dict[str, Any] = {
            "resource_version": self.resource_version,
            "server_timeout": WATCH_SECONDS,
        }
        if self.namespaced:
            kwargs["namespace"] = "*"
        for kind, obj in self.client.watch(self.res, **kwargs):
            if self.stopped.is_set():
                return
            self._apply(kind, obj.to_dict())

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                self._items[_key(obj)] = obj
            elif kind == "DELETED":
                self._items.pop(_key(obj), None)
            if rv:
                self.resource_version = str(rv)
        if kind != "BOOKMARK":
            self.on_change()
