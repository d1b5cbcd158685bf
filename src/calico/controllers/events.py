"""EventRecorder: conversion problems as a log line and a Kubernetes Event on the object.

Reasons: ``CalicoConversionFailed`` (a rule or policy that could not be converted exactly) and
``ConflictingPriority`` (two AdminNetworkPolicies with one ``spec.priority``). Events about
cluster-scoped objects (AdminNetworkPolicies) are posted in namespace ``default``, as
Kubernetes' recorders do for cluster-scoped objects.

Called from worker threads; the Event is posted on the controller's event loop (fire and forget, a
failure to post is logged, never raised). One Event per (object uid, resourceVersion, message): a
resync that meets the same unconvertible policy again does not post it again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
from typing import Any, cast

from lightkube import AsyncClient

from calico.controllers.informer import Event

logger = logging.getLogger(__name__)

COMPONENT = "calico-kube-controllers"
REASON = "CalicoConversionFailed"
API_VERSIONS = {
    "NetworkPolicy": "networking.k8s.io/v1",
    "AdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
    "BaselineAdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
}


class EventRecorder:
    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str, str]] = set()
        self.posted = 0

    def report(self, obj: dict[str, Any], problems: list[str], *, reason: str = REASON) -> None:
        meta = obj.get("metadata") or {}
        kind = str(obj.get("kind") or "NetworkPolicy")
        for problem in problems:
            logger.error("%s: %s", "conversion problem" if reason == REASON else reason, problem)
            ident = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")), problem)
            with self._lock:
                if ident in self._seen:
                    continue
                self._seen.add(ident)
            event = self._event(kind, meta, problem, reason)
            asyncio.run_coroutine_threadsafe(self._post(event), self._loop)

    @staticmethod
    def _event(kind: str, meta: dict[str, Any], message: str, reason: str) -> Any:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = meta.get("namespace") or "default"
        return cast(Any, Event)(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name')}.", "namespace": ns},
                "involvedObject": {
                    "kind": kind,
                    "apiVersion": API_VERSIONS.get(kind, "v1"),
                    "name": meta.get("name"),
                    "namespace": ns,
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message[:1024],
                "type": "Warning",
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
        )

    async def _post(self, event: Any) -> None:
        try:
            await self._client.create(event)
            self.posted += 1
        except Exception as exc:
            logger.warning("could not post Event for %s: %s", event["involvedObject"]["name"], exc)
