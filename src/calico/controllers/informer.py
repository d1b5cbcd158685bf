"""Informer: list then watch one Kubernetes resource into an in-memory store, keys to a queue.

    list (pages of 500) ──> replace store, enqueue every added/changed/removed key ──> synced
      │                                                                                 │
      └─<── 410 Gone (resourceVersion too old): re-list and reconcile ─────────── watch from rv
                                                                                       │
            connection lost / API server away: back off, resume the watch at rv ─<─────┘

The store maps ``(namespace, name)`` to the object as the API returned it (a plain dict). The
watch asks for BOOKMARK events, which only move the resourceVersion on, so a reconnect after a quiet
period resumes where it left off instead of hitting 410.

A dead watch is noticed within a bound, also one whose connection stays open while nothing comes
(a wedged API server or proxy, a peer gone without FIN/RST): each watch asks the server to end it
after ``timeoutSeconds`` = ``server_timeout`` × [1, 1.2] (jitter, so informers do not reconnect
in step), and the client reads it with a deadline ``grace`` seconds past that. A watch still open
then is presumed dead, closed and resumed from the last resourceVersion (no re-list). With the
defaults (30 s, 5 s) a silent watch is left at most ~41 s after it opened. (lightkube's watch has
no read timeout of its own: its httpx timeout sets ``read=None`` for watches. Nor does it ever end:
it reconnects by itself when the server ends a response, which would hide the server's orderly end
from the deadline; so each watch here is exactly one request, :func:`_watch_once`.)

AdminNetworkPolicy and BaselineAdminNetworkPolicy come from CRDs a cluster may not have: for
them a 404 means "none exist" (synced, empty store; anything cached is deleted) and the list is
tried again every ``absent_retry`` seconds, so installing the CRDs later is picked up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.core.generic_client import WatchDriver
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericNamespacedResource,
    create_api_info,
)

logger = logging.getLogger(__name__)

Resource = dict[str, Any]
StoreKey = tuple[str, str]


class WatchStalled(Exception):
    """A watch stayed open past its ``timeoutSeconds`` plus the grace: presumed dead."""


class Pod(GenericNamespacedResource):
    _api_info = create_api_info("", "v1", "Pod", "pods")


class Namespace(GenericGlobalResource):
    _api_info = create_api_info("", "v1", "Namespace", "namespaces")


class Node(GenericGlobalResource):
    _api_info = create_api_info("", "v1", "Node", "nodes")


class ServiceAccount(GenericNamespacedResource):
    _api_info = create_api_info("", "v1", "ServiceAccount", "serviceaccounts")


class NetworkPolicy(GenericNamespacedResource):
    _api_info = create_api_info("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies")


class AdminNetworkPolicy(GenericGlobalResource):
    _api_info = create_api_info(
        "policy.networking.k8s.io", "v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies"
    )


class BaselineAdminNetworkPolicy(GenericGlobalResource):
    _api_info = create_api_info(
        "policy.networking.k8s.io",
        "v1alpha1",
        "BaselineAdminNetworkPolicy",
        "baselineadminnetworkpolicies",
    )


class Event(GenericNamespacedResource):
    _api_info = create_api_info("", "v1", "Event", "events")


# Dict-backed resource classes (not registered with lightkube's global registry, so they cannot
# clash with the typed models): lists decode straight to dicts, which is what the conversions take.
RESOURCES: dict[str, type[GenericNamespacedResource] | type[GenericGlobalResource]] = {
    "Pod": Pod,
    "Namespace": Namespace,
    "Node": Node,
    "ServiceAccount": ServiceAccount,
    "NetworkPolicy": NetworkPolicy,
    "AdminNetworkPolicy": AdminNetworkPolicy,
    "BaselineAdminNetworkPolicy": BaselineAdminNetworkPolicy,
}
# Kinds whose CRDs may not be installed: a 404 on list means "none exist" (the informer counts as
# synced with an empty store and lists again every ``absent_retry`` seconds), not a failure.
OPTIONAL = frozenset({"AdminNetworkPolicy", "BaselineAdminNetworkPolicy"})


def _status_code(exc: httpx2.HTTPStatusError) -> int:
    """The HTTP status of a failed request: lightkube's ApiError carries the server's Status; a
    plain-text answer (a real API server's "404 page not found" for an API group it does not
    serve) only the response's code."""
    if isinstance(exc, ApiError) and exc.status.code:
        return int(exc.status.code)
    return exc.response.status_code


async def _watch_once(generic: Any, br: Any) -> Any:
    """One watch request: yields (type, object) until the server ends the response."""
    driver: Any = WatchDriver(br, generic._client.build_request)  # lightkube: untyped
    resp = await generic.send(driver.get_request(timeout=generic._watch_timeout), stream=True)
    try:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            yield driver.process_one_line(line)
    finally:
        await resp.aclose()


def _key(obj: Resource) -> StoreKey:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _rv(obj: Resource) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Informer:
    def __init__(
        self,
        client: AsyncClient,
        kind: str,
        *,
        enqueue: Callable[[StoreKey, float], None],
        on_restart: Callable[[str], None] = lambda reason: None,
        page_size: int = 500,
        server_timeout: float = 30,
        grace: float = 5.0,
        retry_delay: float = 0.2,
        max_retry_delay: float = 10.0,
        absent_retry: float = 30.0,
    ) -> None:
        self.kind = kind
        self.res = RESOURCES[kind]
        self._client = client
        self._enqueue = enqueue
        self._on_restart = on_restart
        self._page_size = page_size
        self._server_timeout = server_timeout
        self._grace = grace
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self.store: dict[StoreKey, Resource] = {}
        self.synced = False
        self.rv: str | None = None
        self.lists = 0
        self.absent = False  # an optional kind the API server does not serve (CRD missing)
        self._absent_retry = absent_retry
        self.stalls = 0  # watches presumed dead: silent past timeoutSeconds + grace

    def get(self, key: StoreKey) -> Resource | None:
        return self.store.get(key)

    def store_keys(self) -> list[StoreKey]:
        return list(self.store)

    def snapshot(self) -> list[Resource]:
        """The cached objects, from any thread: ``list(dict.values())`` runs in one C call under
        the GIL, so it never sees the store mid-update (order unspecified)."""
        return list(self.store.values())

    def items(self) -> list[Resource]:
        """The cached objects sorted by (namespace, name): a new list (the objects themselves are
        replaced on change, never mutated). Call it on the informer's event loop."""
        return [self.store[k] for k in sorted(self.store)]

    async def run(self) -> None:
        delay = self._retry_delay
        while True:
            try:
                if self.rv is None:
                    await self._list()
                delay = self._retry_delay
                await self._watch()
            except httpx2.HTTPStatusError as exc:
                code = _status_code(exc)
                if code == 404 and self.kind in OPTIONAL:
                    self.rv = None
                    self._not_served()
                    await asyncio.sleep(self._absent_retry)
                    continue
                if code == 410:
                    logger.info(
                        "%s: watch resourceVersion %s expired (410); re-listing", self.kind, self.rv
                    )
                    self.rv = None
                    self._on_restart("gone")
                    continue
                logger.warning("%s: API error %s; retrying in %.1fs", self.kind, exc, delay)
                self._on_restart("error")
            except WatchStalled as exc:
                self.stalls += 1
                logger.warning("%s: %s; resuming from resourceVersion %s", self.kind, exc, self.rv)
                self._on_restart("stalled")
            except (httpx2.HTTPError, OSError, TimeoutError) as exc:
                logger.warning(
                    "%s: connection to the API server lost (%s: %s); retrying in %.1fs",
                    self.kind,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._on_restart("reconnect")
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._max_retry_delay)

    def _not_served(self) -> None:
        if not self.absent:
            logger.warning(
                "%s: not served by the API server (is its CRD installed?); treated as none, "
                "listing again every %.0fs",
                self.kind,
                self._absent_retry,
            )
        self.absent = True
        for key in list(self.store):  # served before, gone now (CRD deleted): all deleted
            self.store.pop(key)
            self._enqueue(key, time.monotonic())
        self.synced = True

    async def _list(self) -> None:
        namespaced = issubclass(self.res, GenericNamespacedResource)
        res: Any = self.res
        listing = self._client.list(
            res, namespace="*" if namespaced else None, chunk_size=self._page_size
        )
        fresh: dict[StoreKey, Resource] = {}
        async for item in listing:
            obj = dict(item)
            fresh[_key(obj)] = obj
        now = time.monotonic()
        old = self.store
        self.store = fresh
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None or _rv(prev) != _rv(obj):
                self._enqueue(key, now)
        for key in old.keys() - fresh.keys():
            self._enqueue(key, now)
        self.rv = listing.resourceVersion
        self.lists += 1
        self.synced = True
        self.absent = False
        logger.info("%s: listed %d objects at resourceVersion %s", self.kind, len(fresh), self.rv)

    async def _watch(self) -> None:
        namespaced = issubclass(self.res, GenericNamespacedResource)
        # lightkube's watch() has no allowWatchBookmarks argument; build the request the same way.
        generic = self._client._client
        timeout = max(1, round(self._server_timeout * random.uniform(1.0, 1.2)))
        br = generic.prepare_request(
            "list",
            res=self.res,
            namespace="*" if namespaced else None,
            watch=True,
            params={
                "resourceVersion": self.rv,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": timeout,
            },
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + self._grace
        stream = _watch_once(generic, br).__aiter__()
        try:
            while True:
                # The server ends the watch at ``timeout``; still open past the grace: dead.
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    kind, item = await asyncio.wait_for(stream.__anext__(), remaining)
                except TimeoutError:
                    raise WatchStalled(
                        f"watch still open {timeout + self._grace:.0f}s after it asked the "
                        f"server to end it at {timeout}s: presumed dead"
                    ) from None
                self._on_event(kind, dict(item))
        except StopAsyncIteration:
            return
        finally:
            await stream.aclose()

    def _on_event(self, kind: str, obj: Resource) -> None:
        rv = _rv(obj)
        if rv:
            self.rv = rv
        if kind == "BOOKMARK":
            return
        key = _key(obj)
        if kind == "DELETED":
            self.store.pop(key, None)
        else:
            self.store[key] = obj
        self._enqueue(key, time.monotonic())
