"""KubeStream: a syncer's source over one Kubernetes collection (the Kubernetes datastore).

Lists the collection in pages (``limit``/``continue``: every page at the first one's
resourceVersion) and watches it from that resourceVersion, turning objects into records with the
collection's mapper (:mod:`calico.datastore.kube_map`): an object that stops holding a record (a
pod whose address annotation was removed) is the record's deletion. Each collection has its own
stream, listed and resumed on its own; a 410 Gone (the resourceVersion is no longer in the API
server's watch cache) is :class:`~calico.datastore.backend.Compacted`, and since the API server
keeps no history to check, the syncer then lists that collection again and hands over exactly the
differences.

Each watch request asks the server to end it after ``probe_after`` seconds (``timeoutSeconds``):
a healthy server always answers within that, so a stream silent for longer than ``probe_after +
probe_timeout`` is a dead one and is resumed (no re-list) on a new connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from calico.datastore.backend import (
    KV,
    Compacted,
    Unavailable,
    WatchEvent,
    WatchResponse,
)
from calico.datastore.kube_api import Access, KubeApi
from calico.datastore.kube_map import Mapper


class KubeStream:
    def __init__(self, acc: Access, mapper: Mapper, prefixes: Sequence[str]) -> None:
        self.mapper = mapper
        c = mapper.collection
        self.name = (
            f"{c.plural}.{c.group_version.split('/')[0]}" if "/" in c.group_version else c.plural
        )
        self.prefixes = tuple(p if p.startswith(mapper.prefix) else mapper.prefix for p in prefixes)
        self._access = acc
        self._keys: dict[str, str] = {}  # object (ns/name) -> the key it held, for deletions

    def _api(self, timeout: float = 10.0) -> KubeApi:
        return KubeApi(self._access, timeout=timeout)

    def _wanted(self, key: str) -> bool:
        return key.startswith(self.prefixes) and self.mapper.owns(key)

    def _record(self, obj: dict[str, Any]) -> tuple[str | None, bytes | None]:
        """(key, value) of an object; (key it held before, None) when it holds no record now."""
        m = obj.get("metadata") or {}
        ident = f"{m.get('namespace', '')}/{m.get('name', '')}"
        rec = self.mapper.record(obj)
        if rec is not None and self._wanted(rec[0]):
            old = self._keys.get(ident)
            self._keys[ident] = rec[0]
            if old is not None and old != rec[0]:
                return old, None  # moved: rare (a pod's node is set once)
            return rec[0], rec[1]
        return self._keys.pop(ident, None), None

    def list_pages(self, *, limit: int) -> Iterator[tuple[list[KV], int]]:
        from calico.datastore.kube import KubeBackend

        backend = KubeBackend(self._access)
        self._keys.clear()
        try:
            for items, rv in backend._pages(self.mapper, limit=limit):
                out = []
                for obj in items:
                    key, value = self._record(obj)
                    if key is not None and value is not None:
                        r = int(obj["metadata"]["resourceVersion"])
                        out.append(KV(key, value, r, r))
                yield out, rv
        finally:
            backend.close()

    def watch(
        self, start_revision: int, *, probe_after: float, probe_timeout: float,
        stopped: Callable[[], bool],
    ) -> Iterator[WatchResponse]:  # fmt: skip
        api = self._api()
        query = {"resourceVersion": str(max(start_revision - 1, 0)), "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(max(int(probe_after), 1))}  # fmt: skip
        path = self.mapper.collection.path()
        try:
            for ev in api.watch(path, query, read_timeout=probe_after + probe_timeout + 1):
                if stopped():
                    return
                resp = self._event(ev)
                if resp is not None:
                    yield resp
        finally:
            api.close()

    def _event(self, ev: dict[str, Any]) -> WatchResponse | None:
        kind, obj = ev.get("type"), ev.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Compacted(0, f"{self.name}: {obj.get('message', '410 Gone')}")
            raise Unavailable(f"{self.name}: watch error: {obj.get('message', obj)}")
        rv = int((obj.get("metadata") or {}).get("resourceVersion") or 0)
        if kind == "BOOKMARK":
            return WatchResponse([], rv)
        if kind == "DELETED":
            m = obj.get("metadata") or {}
            key = self._keys.pop(f"{m.get('namespace', '')}/{m.get('name', '')}", None)
            return WatchResponse([WatchEvent("DELETE", key, b"", rv)] if key else [], rv)
        key, value = self._record(obj)
        if key is None:
            return WatchResponse([], rv)
        if value is None:
            return WatchResponse([WatchEvent("DELETE", key, b"", rv)], rv)
        return WatchResponse([WatchEvent("PUT", key, value, rv)], rv)

    def unchanged_since(self, revision: int, known: dict[str, int]) -> tuple[int, str]:
        return 0, "the Kubernetes API keeps no history to check"


__all__ = ["KubeStream"]
