"""KubeWatch: the kube-controllers' informers, run for the lab's synchronous sync daemon.

``calico-lab up --kubeconfig`` follows Namespaces, NetworkPolicies and Pods with the same
:class:`calico.controllers.informer.Informer` the kube-controllers use (list in pages, watch from
the list's resourceVersion with BOOKMARKs, resume after a dropped connection, list again only on
``410 Gone``; see that module). They run as tasks on one asyncio loop in a daemon thread with one
``AsyncClient``; every change calls ``on_change`` from that thread (the daemon sets its wake-up
event), and :meth:`items` reads a cache on the loop, so the daemon's thread never sees a store
in the middle of an update.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from lightkube import AsyncClient, KubeConfig

from calico.controllers.informer import Informer, StoreKey

KINDS = ("Namespace", "NetworkPolicy", "Pod")


class KubeWatch:
    def __init__(
        self,
        kubeconfig: str,
        *,
        on_change: Callable[[], None],
        kinds: tuple[str, ...] = KINDS,
        retry_delay: float = 0.2,
        server_timeout: float = 30,
        grace: float = 5.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.on_change = on_change
        self.kinds = kinds
        self.retry_delay = retry_delay
        self.server_timeout = server_timeout  # the informers' dead-watch bound (see informer)
        self.grace = grace
        self.informers: dict[str, Informer] = {}
        self.loop = asyncio.new_event_loop()
        self._client: AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="kube-watch", daemon=True
        )

    def start(self) -> KubeWatch:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    async def _start(self) -> None:
        self._client = AsyncClient(
            KubeConfig.from_file(self.kubeconfig), field_manager="calico-lab"
        )
        for kind in self.kinds:
            inf = Informer(
                self._client,
                kind,
                enqueue=self._changed,
                retry_delay=self.retry_delay,
                server_timeout=self.server_timeout,
                grace=self.grace,
            )
            self.informers[kind] = inf
            self._tasks.append(self.loop.create_task(inf.run(), name=f"informer-{kind}"))

    def _changed(self, _key: StoreKey, _at: float) -> None:
        self.on_change()

    def synced(self) -> bool:
        return len(self.informers) == len(self.kinds) and all(
            i.synced for i in self.informers.values()
        )

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every kind has been listed once (then wake the daemon for its first pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.synced():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        self.on_change()
        return True

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The cached objects of ``kind``, sorted by (namespace, name)."""
        inf = self.informers[kind]

        async def read() -> list[dict[str, Any]]:
            return inf.items()

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(30)

    def stop(self) -> None:
        async def cancel() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.close()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()
