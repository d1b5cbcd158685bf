"""CalicoCache: the controller's view of the Calico objects it may own, kept by a datastore Syncer.

Holds every NetworkPolicy, GlobalNetworkPolicy, Profile and WorkloadEndpoint (decoded, with
``resourceVersion``), and an index of Kubernetes WorkloadEndpoints by (namespace, pod). Reconcilers
compare desired state with this cache and write only differences, so a restart over a converged
datastore writes nothing.

Writes by the controller itself are recorded straight away (``written`` / ``removed``), and updates
from the Syncer are accepted only when newer than what is cached, so the echo of an older write
never rolls the cache back. A change the controller did not make to an object it owns (someone
edited ``knp.default.x`` in etcd) is reported through ``on_owned_change`` so that it is put right.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from calico.datastore.backend import Backend
from calico.datastore.syncer import Syncer, SyncStatus, Update
from calico.k8s import names
from calico.model import kinds

logger = logging.getLogger(__name__)

Resource = dict[str, Any]
Key = tuple[str, str, str]  # (controller kind, namespace, name) of the Kubernetes object

KIND_POLICY = kinds.lookup("NetworkPolicy")
KIND_GLOBAL_POLICY = kinds.lookup("GlobalNetworkPolicy")
KIND_PROFILE = kinds.lookup("Profile")
KIND_WEP = kinds.lookup("WorkloadEndpoint")
PREFIXES = (
    KIND_POLICY.prefix(),
    KIND_GLOBAL_POLICY.prefix(),
    KIND_PROFILE.prefix(),
    KIND_WEP.prefix(),
)


def source_key(etcd_key: str, value: Resource | None) -> Key | None:
    """The Kubernetes object a Calico object comes from; None if the controller does not own it."""
    parsed = kinds.parse_key(etcd_key)
    if parsed is None:
        return None
    kind, ns, name = parsed
    if kind is KIND_POLICY:
        k8s = names.policy_name_to_k8s(name)
        return ("NetworkPolicy", ns or "", k8s) if k8s else None
    if kind is KIND_GLOBAL_POLICY:
        src = names.global_policy_source(name)
        return (src[0], "", src[1]) if src else None
    if kind is KIND_PROFILE:
        ns_name = names.profile_name_to_namespace(name)
        if ns_name:
            return ("Namespace", "", ns_name)
        sa = names.profile_name_to_service_account(name)
        return ("ServiceAccount", sa[0], sa[1]) if sa else None
    if kind is KIND_WEP and value is not None:
        spec = value.get("spec") or {}
        pod = spec.get("pod") or spec.get("workload")
        if spec.get("orchestrator") == names.ORCHESTRATOR_K8S and pod:
            return ("Pod", ns or "", str(pod))
    return None


class CalicoCache:
    def __init__(
        self,
        backend: Backend,
        *,
        on_owned_change: Callable[[Key], None],
        on_status: Callable[[SyncStatus], None] = lambda s: None,
    ) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, Resource] = {}
        self._revs: dict[str, int] = {}
        self._weps: dict[tuple[str, str], set[str]] = {}
        self._wep_owner: dict[str, tuple[str, str]] = {}
        self._on_owned_change = on_owned_change
        self._on_status = on_status
        self.in_sync = threading.Event()
        self._syncer = Syncer(
            backend, PREFIXES, on_updates=self._on_updates, on_status=self._status
        )

    def start(self) -> None:
        self._syncer.start()

    def stop(self) -> None:
        self._syncer.stop()

    def _status(self, status: SyncStatus) -> None:
        if status is SyncStatus.IN_SYNC:
            self.in_sync.set()
        self._on_status(status)

    # ---- reads -------------------------------------------------------------------------------

    def get(self, etcd_key: str) -> Resource | None:
        with self._lock:
            return self._objects.get(etcd_key)

    def weps_of(self, namespace: str, pod: str) -> list[str]:
        with self._lock:
            return sorted(self._weps.get((namespace, pod), ()))

    def owned_keys(self) -> list[Key]:
        """Source keys of every Calico object the controller owns (for the resync sweep)."""
        with self._lock:
            items = list(self._objects.items())
        return [k for k in (source_key(key, v) for key, v in items) if k is not None]

    # ---- writes ------------------------------------------------------------------------------

    def _set(self, key: str, value: Resource | None, rev: int) -> bool:
        """Record ``value`` at ``rev`` unless something newer is cached; True if it changed."""
        if rev <= self._revs.get(key, 0):
            return False
        self._revs[key] = rev
        old_pod = self._wep_owner.pop(key, None)
        if old_pod is not None:
            self._weps.get(old_pod, set()).discard(key)
        if value is None:
            self._objects.pop(key, None)
            return True
        value.setdefault("metadata", {})["resourceVersion"] = str(rev)
        self._objects[key] = value
        src = source_key(key, value)
        if src is not None and src[0] == "Pod":
            self._wep_owner[key] = (src[1], src[2])
            self._weps.setdefault((src[1], src[2]), set()).add(key)
        return True

    def written(self, key: str, value: Resource) -> None:
        with self._lock:
            self._set(key, value, int(value["metadata"]["resourceVersion"]))

    def removed(self, key: str, rev: int) -> None:
        with self._lock:
            self._set(key, None, rev)

    def _on_updates(self, updates: list[Update]) -> None:
        changed: list[Key] = []
        with self._lock:
            for u in updates:
                value = u.value if isinstance(u.value, dict) else None
                previous = self._objects.get(u.key)
                if self._set(u.key, value, u.revision):
                    for src in (source_key(u.key, value), source_key(u.key, previous)):
                        if src is not None and src not in changed:
                            changed.append(src)
        for src in changed:
            self._on_owned_change(src)
