"""KubeControllers: wiring of the policy controller (Calico's kube-controllers, etcd mode).

    Kubernetes API ──lightkube list+watch──> Informer (one per kind, asyncio loop thread)
                                               │ store: (ns, name) -> latest object
                                               ▼ key + event time
    etcd ──Syncer──> CalicoCache ──owned ───> WorkQueue (coalescing, per-key backoff)
       ▲             (policies, profiles,      │
       │              WEPs by pod)             ▼
       └── Client.write_many (CAS, ── worker threads: Reconciler.reconcile_many(keys)
           128 per etcd txn)           (up to ``batch`` due keys at a time)
                                               │ conversion problems
                                               ▼
                                          EventRecorder ──> Kubernetes Event + log line

Controllers (``ENABLED_CONTROLLERS``, Calico's names): ``policy`` (NetworkPolicy -> knp.default.*,
AdminNetworkPolicy -> kanp.kube-admin.*, BaselineAdminNetworkPolicy -> kbanp.kube-baseline.*),
``namespace`` (-> kns.*), ``serviceaccount`` (-> ksa.*), ``workloadendpoint`` (pod labels -> WEP),
``node`` (a deleted Kubernetes Node -> its Calico Node and IPAM cleaned up: :mod:`.nodes`).
With the Kubernetes datastore (``DATASTORE_TYPE=kubernetes``) Calico's datastore reads
NetworkPolicies, Namespaces, ServiceAccounts and Pods itself, so, as Calico's docs say of those
controllers ("only valid when using etcd"), their kinds are not watched or written
(:data:`READ_BY_DATASTORE`); the policy controller keeps the AdminNetworkPolicy kinds, which this
datastore does not read, and the node controller runs. Workers start once the datastore cache is
in sync; after every informer has listed, a full resync (every key of every store, plus every
owned Calico object, so orphans left while the controller was down are deleted) runs once and then
every ``resync_period`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient, KubeConfig

from calico.controllers import nodes
from calico.controllers.calico_cache import CalicoCache, Key
from calico.controllers.events import EventRecorder
from calico.controllers.health import HealthServer, Metrics
from calico.controllers.informer import Informer, StoreKey
from calico.controllers.reconciler import Outcome, Reconciler
from calico.controllers.workqueue import WorkQueue
from calico.datastore.config import DatastoreConfig

logger = logging.getLogger(__name__)

CONTROLLER_KINDS: dict[str, tuple[str, ...]] = {
    "policy": ("NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"),
    "namespace": ("Namespace",),
    "serviceaccount": ("ServiceAccount",),
    "workloadendpoint": ("Pod",),
    "node": ("Node",),  # see calico.controllers.nodes
}

# Kinds the Kubernetes datastore reads directly (kube_map): no controller converts them there.
READ_BY_DATASTORE = frozenset({"NetworkPolicy", "Namespace", "ServiceAccount", "Pod"})


@dataclass
class ControllerConfig:
    datastore: DatastoreConfig = field(default_factory=DatastoreConfig)
    kubeconfig: str | None = None  # None: in-cluster service account, else $KUBECONFIG / ~/.kube
    controllers: tuple[str, ...] = tuple(CONTROLLER_KINDS)
    workers: int = 8
    batch: int = 128  # keys a worker reconciles at once, their writes in few etcd transactions
    resync_period: float = 300.0
    listen: tuple[str, int] | None = ("127.0.0.1", 9094)
    page_size: int = 500
    server_timeout: float = 30  # a watch's timeoutSeconds (jittered up to 1.2x)
    watch_grace: float = 5.0  # still open this long after: presumed dead, resumed
    absent_retry: float = 30.0  # how often to list a kind whose CRD is not installed

    def kinds(self) -> list[str]:
        unknown = set(self.controllers) - set(CONTROLLER_KINDS)
        if unknown:
            raise ValueError(
                f"ENABLED_CONTROLLERS: unknown controller(s) {sorted(unknown)} "
                f"(known: {', '.join(CONTROLLER_KINDS)})"
            )
        kinds = [kind for c in self.controllers for kind in CONTROLLER_KINDS[c]]
        if self.datastore.datastore_type == "kubernetes":
            kinds = [k for k in kinds if k not in READ_BY_DATASTORE]
        return kinds


class KubeControllers:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.kinds = config.kinds()
        self._kdd = config.datastore.datastore_type == "kubernetes"
        if config.datastore.datastore_type == "kubernetes":
            direct, kinds = ", ".join(sorted(READ_BY_DATASTORE)), ", ".join(self.kinds)
            logger.info("Kubernetes datastore: it reads %s itself; watching %s", direct,
                        kinds or "nothing")  # fmt: skip
        self.metrics = Metrics()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.informers: dict[str, Informer] = {}
        self.cache = CalicoCache(config.datastore.backend(), on_owned_change=self._owned_changed)
        self.loop = asyncio.new_event_loop()
        self.recorder: EventRecorder | None = None
        self.health: HealthServer | None = None
        self._client: AsyncClient | None = None
        self._threads: list[threading.Thread] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = threading.Event()
        self.resyncs = 0

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn(self.loop.run_forever, "k8s-loop")
        asyncio.run_coroutine_threadsafe(self._start_informers(), self.loop).result(30)
        self.cache.start()
        for i in range(self.config.workers):
            self._spawn(self._work, f"worker-{i}")
        self._spawn(self._resync_loop, "resync")
        if self.config.listen is not None:
            host, port = self.config.listen
            self.health = HealthServer(host, port, metrics=self.metrics, status=self.status)
            self.health.start()
            logger.info("health and metrics on http://%s:%d", host, self.health.port)

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    async def _start_informers(self) -> None:
        config = KubeConfig.from_file(self.config.kubeconfig) if self.config.kubeconfig else None
        self._client = AsyncClient(config, field_manager="calico-kube-controllers")
        self.recorder = EventRecorder(self._client, self.loop)
        for kind in self.kinds:
            inf = Informer(
                self._client,
                kind,
                enqueue=self._enqueuer(kind),
                on_restart=self._restart_counter(kind),
                page_size=self.config.page_size,
                server_timeout=self.config.server_timeout,
                absent_retry=self.config.absent_retry,
                grace=self.config.watch_grace,
            )
            self.informers[kind] = inf
            self._tasks.append(self.loop.create_task(inf.run(), name=f"informer-{kind}"))

    def _enqueuer(self, kind: str) -> Any:
        def enqueue(key: StoreKey, at: float) -> None:
            self.queue.add((kind, key[0], key[1]), at)

        return enqueue

    def _restart_counter(self, kind: str) -> Any:
        def count(reason: str) -> None:
            self.metrics.watch_restarts.labels(kind, reason).inc()

        return count

    def stop(self) -> None:
        self._stopping.set()
        self.queue.shutdown()
        self.cache.stop()

        async def _cancel() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.close()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(_cancel(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.health is not None:
            self.health.stop()
        for t in self._threads:
            t.join(10)
        if not self.loop.is_running():
            self.loop.close()

    # ---- state -------------------------------------------------------------------------------

    def ready(self) -> bool:
        return (
            self.cache.in_sync.is_set()
            and all(i.synced for i in self.informers.values())
            and len(self.informers) == len(self.kinds)
        )

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def status(self) -> tuple[bool, bool, dict[str, Any]]:
        live = self.loop.is_running() and all(t.is_alive() for t in self._threads)
        ready = self.ready()
        for kind, inf in self.informers.items():
            self.metrics.objects.labels(kind).set(len(inf.store))
        self.metrics.queue_depth.set(self.queue.depth())
        self.metrics.in_sync.set(1 if ready else 0)
        detail = {
            "informers": {
                k: {"synced": i.synced, "resourceVersion": i.rv, "objects": len(i.store)}
                for k, i in self.informers.items()
            },
            "datastoreInSync": self.cache.in_sync.is_set(),
            "queueDepth": self.queue.depth(),
        }
        return live, ready, detail

    # ---- work --------------------------------------------------------------------------------

    def _owned_changed(self, key: Key) -> None:
        inf = self.informers.get(key[0])
        if inf is not None and inf.synced:
            self.queue.add(key)

    def resync(self) -> None:
        """Enqueue every Kubernetes key and every owned Calico object's source key."""
        for kind, inf in self.informers.items():
            for ns, name in inf.store_keys():
                self.queue.add((kind, ns, name))
        for key in self.cache.owned_keys():
            if key[0] in self.informers:
                self.queue.add(key)
        if "Node" in self.informers:
            self.queue.add(nodes.SWEEP)  # Calico Nodes whose Kubernetes Node went meanwhile
        self.resyncs += 1

    def _resync_loop(self) -> None:
        while not self._stopping.is_set() and not self.ready():
            self._stopping.wait(0.05)
        while not self._stopping.is_set():
            self.resync()
            self._stopping.wait(self.config.resync_period)

    def _work(self) -> None:
        while not self._stopping.is_set() and not self.cache.in_sync.wait(0.1):
            pass
        client = self.config.datastore.client()
        assert self.recorder is not None
        reconciler: Any = Reconciler(client, self.cache, self.informers, report=self._report)
        if "Node" in self.informers:
            lister = nodes.pod_lister(self._client, self.loop)
            node_ctl = nodes.NodeController(client, self.informers["Node"], self.queue,
                                            list_pods=lister, kdd=self._kdd)  # fmt: skip
            reconciler = nodes.Dispatch(node_ctl, reconciler)
        while items := self.queue.get_many(self.config.batch):
            try:
                self._process(reconciler, items)
            finally:
                for key, _ in items:
                    self.queue.done(key)
        client.backend.close()

    def _report(self, obj: dict[str, Any], problems: list[str], **kw: str) -> None:
        kind = str(obj.get("kind") or "NetworkPolicy")
        if not kw:  # a conversion problem (not, e.g., a priority conflict)
            self.metrics.conversion_errors.labels(kind).inc()
        if self.recorder is not None:
            self.recorder.report(obj, problems, **kw)

    def _process(
        self, reconciler: Reconciler | nodes.Dispatch, items: list[tuple[Key, float]]
    ) -> None:
        """Reconcile a batch of keys (their writes batched), then account for each."""
        try:
            results = reconciler.reconcile_many([key for key, _ in items])
        except Exception as exc:  # a failure of the batch as a whole: every key is retried
            results = dict.fromkeys((key for key, _ in items), exc)
        for key, added_at in items:
            self._account(key, added_at, results[key])

    def _account(self, key: Key, added_at: float, result: Outcome | Exception | None) -> None:
        kind = key[0]
        if isinstance(result, Exception):
            self.metrics.sync_errors.labels(kind).inc()
            delay = self.queue.retry(key, added_at)
            logger.warning(
                "sync of %s failed (%s: %s); retry %d in %.2fs",
                key,
                type(result).__name__,
                result,
                self.queue.failures(key),
                delay,
            )
            return
        self.queue.forget(key)
        if result is None:
            return
        self.metrics.reconciles.labels(kind).inc()
        for op, n in result.writes.items():
            if n:
                self.metrics.writes.labels(kind, op).inc(n)
        if result.wrote():
            self.metrics.latency.labels(kind).observe(time.monotonic() - added_at)
