"""Reconciler: one Kubernetes key -> the Calico objects it implies, written only when they differ.

    ("NetworkPolicy", ns, name) -> NetworkPolicy knp.default.<name> in ns   (or its deletion)
    ("AdminNetworkPolicy", "", name) -> GlobalNetworkPolicy kanp.kube-admin.<name>
    ("BaselineAdminNetworkPolicy", "", name) -> GlobalNetworkPolicy kbanp.kube-baseline.<name>
    ("Namespace", "", name)     -> Profile kns.<name>                        (or its deletion)
    ("ServiceAccount", ns, sa)  -> Profile ksa.<ns>.<sa>                     (or its deletion)
    ("Pod", ns, name)           -> labels of the pod's existing k8s WorkloadEndpoints

Level-triggered: the desired state comes from the informer cache (the latest object), the actual
state from :class:`CalicoCache`; a missing Kubernetes object means "delete what we made for it",
which is only decided once that kind's informer has listed (never from a partial cache).

Keys are reconciled in batches: :meth:`Reconciler.plan` computes each key's writes (``Intent``)
without writing; :meth:`Reconciler.reconcile_many` sends every intent of the batch through
:meth:`Client.write_many` (compare-and-swap on the cached resourceVersion, 128 writes an etcd
transaction). A write whose compare fails takes that key alone down the one-write path: the object
re-read and the comparison repeated, a few times, before the key goes back to the queue with
backoff.
WorkloadEndpoints are never created or deleted here (the CNI plugin owns them); only their labels.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from calico.controllers.calico_cache import (
    KIND_GLOBAL_POLICY,
    KIND_POLICY,
    KIND_PROFILE,
    KIND_WEP,
    CalicoCache,
    Key,
)
from calico.datastore import bulk
from calico.datastore.client import AlreadyExists, Client, Conflict, NotFound, decode
from calico.k8s import admin_policy, conversion, names
from calico.model import kinds, validation

logger = logging.getLogger(__name__)

Resource = dict[str, Any]
ATTEMPTS = 4
PRIORITY_CONFLICT = "ConflictingPriority"


class _Unconvertible(Exception):
    """The Kubernetes object cannot be converted at all (already reported)."""


class Store(Protocol):
    synced: bool

    def get(self, key: tuple[str, str]) -> Resource | None: ...

    def snapshot(self) -> list[Resource]: ...


@dataclass
class Outcome:
    """What one reconcile did: writes by op, and conversion problems reported."""

    writes: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"create": 0, "update": 0, "delete": 0}
    )
    problems: list[str] = dataclasses.field(default_factory=list)

    def wrote(self) -> bool:
        return any(self.writes.values())


@dataclass(slots=True)
class Intent:
    """One write a reconcile wants: ``value`` at etcd ``key`` (None: delete it) if the key is
    still at ``revision`` (0: absent); ``again`` is the one-write-at-a-time path (re-reads and
    retries a few times) for when that compare fails."""

    key: str
    op: str  # create / update / delete
    value: Resource | None
    revision: int
    again: Callable[[Outcome], None]


@dataclass
class Plan:
    outcome: Outcome
    intents: list[Intent]


def _rv(obj: Resource) -> int:
    return int(obj["metadata"]["resourceVersion"])


def _target(kind: str, ns: str, name: str) -> tuple[kinds.Kind, str, str | None] | None:
    """The Calico object a Kubernetes object of ``kind`` becomes (Pods: see ``_pod``)."""
    if kind == "NetworkPolicy":
        return KIND_POLICY, names.policy_name(name), ns
    if kind == "Namespace":
        return KIND_PROFILE, names.namespace_profile_name(name), None
    if kind == "ServiceAccount":
        return KIND_PROFILE, names.service_account_profile_name(ns, name), None
    if kind == "AdminNetworkPolicy":
        return KIND_GLOBAL_POLICY, names.admin_policy_name(name), None
    if kind == "BaselineAdminNetworkPolicy":
        return KIND_GLOBAL_POLICY, names.baseline_policy_name(name), None
    return None


class Reconciler:
    def __init__(
        self,
        client: Client,
        cache: CalicoCache,
        stores: Mapping[str, Store],
        *,
        report: Callable[..., None],
    ) -> None:
        self.client = client
        self.cache = cache
        self.stores = stores
        # (k8s object, problems[, reason=...]) -> log line + Kubernetes Event
        self.report = report

    def plan(self, key: Key) -> Plan | None:
        """What ``key`` needs written (conversion problems reported); None when its informer has
        not synced yet. Nothing is written."""
        kind, ns, name = key
        store = self.stores.get(kind)
        if store is None or not store.synced:
            return None
        obj = store.get((ns, name))
        if obj is not None and obj.get("kind") != kind:  # list items carry no kind
            obj = {**obj, "kind": kind}
        out = Outcome()
        if kind == "Pod":
            return Plan(out, self._pod(ns, name, obj, out))
        try:
            desired = self._desired(kind, ns, name, obj, out)
        except _Unconvertible:
            return Plan(out, [])  # keep the last good Calico object (or none); reported
        target = _target(kind, ns, name)
        if target is None:
            return Plan(out, [])
        intents = self._intents(*target, desired)
        if kind == "AdminNetworkPolicy" and obj is not None:
            self._priority_conflicts(store, obj)
        return Plan(out, intents)

    def reconcile_many(self, keys: Sequence[Key]) -> dict[Key, Outcome | Exception | None]:
        """Reconcile ``keys`` (distinct) with their writes batched (:meth:`Client.write_many`):
        each key's outcome, None (informer not synced) or the exception that failed it. A write
        that lost a race (its object changed since cached) is retried alone, from what the
        failed compare read: re-read and compared again, a few times (``Intent.again``)."""
        results: dict[Key, Outcome | Exception | None] = {}
        plans = self._plans(keys, results)
        batch: list[tuple[Key, Intent]] = []
        again: list[tuple[Key, Intent]] = []
        seen: set[str] = set()
        for key, plan in plans.items():
            for intent in plan.intents:
                (again if intent.key in seen else batch).append((key, intent))
                seen.add(intent.key)
        answers = self.client.write_many([(i.key, i.value, i.revision) for _, i in batch])
        for (key, intent), answer in zip(batch, answers, strict=True):
            if isinstance(answer, Exception):
                results[key] = answer
            elif self._settle(intent, answer):
                plans[key].outcome.writes[intent.op] += 1
            else:
                again.append((key, intent))
        for key, intent in again:
            if isinstance(results[key], Exception):
                continue
            try:
                intent.again(plans[key].outcome)
            except Exception as exc:
                results[key] = exc
        return results

    def _plans(
        self, keys: Sequence[Key], results: dict[Key, Outcome | Exception | None]
    ) -> dict[Key, Plan]:
        """Each key's plan; a key not planned gets its result now (None: not synced; or the
        exception that failed it)."""
        plans: dict[Key, Plan] = {}
        for key in keys:
            try:
                plan = self.plan(key)
            except Exception as exc:
                results[key] = exc
                continue
            results[key] = plan.outcome if plan is not None else None
            if plan is not None:
                plans[key] = plan
        return plans

    def _settle(self, intent: Intent, answer: bulk.Written | bulk.Lost) -> bool:
        """The cache after one batched write: True when it was written; False when it lost a
        race (the cache then holds what the failed compare read, for the one-write path)."""
        if isinstance(answer, bulk.Written):
            if intent.value is None:
                self.cache.removed(intent.key, answer.revision)
            else:  # write_many set its resourceVersion
                self.cache.written(intent.key, intent.value)
            return True
        cur = answer.current
        if cur is None:
            self.cache.removed(intent.key, answer.revision)
        else:
            self.cache.written(intent.key, decode(cur.value, cur.mod_revision))
        return False

    def _priority_conflicts(self, store: Store, anp: Resource) -> None:
        """Two ANPs with one priority: allowed by Kubernetes (the order between them is
        implementation-defined; Calico's is by name), reported on each as a Warning Event."""
        name = anp["metadata"]["name"]
        others = admin_policy.priority_conflicts(store.snapshot()).get(name, [])
        if others:
            prio = anp["spec"]["priority"]
            self.report(
                anp,
                [
                    f"AdminNetworkPolicy {name}: spec.priority: {prio} is also the priority of "
                    f"{', '.join(others)}; policies of one priority are applied in name order "
                    f"({', '.join(sorted([name, *others]))})"
                ],
                reason=PRIORITY_CONFLICT,
            )

    # ---- desired state -----------------------------------------------------------------------

    def _desired(
        self, kind: str, ns: str, name: str, obj: Resource | None, out: Outcome
    ) -> Resource | None:
        """The Calico object wanted (None = delete); _Unconvertible = leave what is there."""
        if obj is None:
            return None
        try:
            if kind == "NetworkPolicy":
                result = conversion.convert_network_policy(obj)
                out.problems = [str(p) for p in result.problems]
                desired = result.policy
            elif kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
                result = (
                    admin_policy.convert_admin_network_policy(obj)
                    if kind == "AdminNetworkPolicy"
                    else admin_policy.convert_baseline_admin_network_policy(obj)
                )
                out.problems = [str(p) for p in result.problems]
                desired = result.policy
            elif kind == "Namespace":
                desired = conversion.namespace_to_profile(obj)
            else:
                desired = conversion.service_account_to_profile(obj)
            desired = validation.validate(desired)
        except (conversion.ConversionError, validation.ValidationError) as exc:
            out.problems = [str(exc)]
            self.report(obj, out.problems)
            raise _Unconvertible from None
        if out.problems:
            self.report(obj, out.problems)
        return desired

    # ---- writes ------------------------------------------------------------------------------

    def _intents(
        self, kind: kinds.Kind, name: str, ns: str | None, desired: Resource | None
    ) -> list[Intent]:
        """The write (if any) that makes ``kind``/``ns``/``name`` the ``desired`` (None: gone)."""
        key = kind.key(name, ns)
        current = self.cache.get(key)
        again = functools.partial(self._converge, kind, name, ns, desired)
        if desired is None:
            return [] if current is None else [Intent(key, "delete", None, _rv(current), again)]
        if current is not None and current.get("spec") == desired.get("spec"):
            return []
        meta = {k: v for k, v in desired["metadata"].items() if k != "resourceVersion"}
        if current is None:
            return [Intent(key, "create", {**desired, "metadata": meta}, 0, again)]
        for field in ("uid", "creationTimestamp"):  # kept, as Client.update keeps them
            if field in current["metadata"]:
                meta.setdefault(field, current["metadata"][field])
        return [Intent(key, "update", {**desired, "metadata": meta}, _rv(current), again)]

    def _refresh(self, kind: kinds.Kind, name: str, ns: str | None) -> Resource | None:
        try:
            current = self.client.get(kind.name, name, ns)
        except NotFound:
            return None
        self.cache.written(kind.key(name, ns), copy.deepcopy(current))
        return current

    def _converge(
        self,
        kind: kinds.Kind,
        name: str,
        ns: str | None,
        desired: Resource | None,
        out: Outcome,
    ) -> None:
        key = kind.key(name, ns)
        current = self.cache.get(key)
        for _ in range(ATTEMPTS):
            try:
                if desired is None:
                    if current is None:
                        return
                    rv = current["metadata"]["resourceVersion"]
                    self.client.delete(kind.name, name, ns, resource_version=rv)
                    self.cache.removed(key, int(rv) + 1)
                    out.writes["delete"] += 1
                    return
                if current is not None and current.get("spec") == desired.get("spec"):
                    return
                obj = copy.deepcopy(desired)
                if current is None:
                    written = self.client.create(obj, validate=False)
                    out.writes["create"] += 1
                else:
                    obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    written = self.client.update(obj, validate=False)
                    out.writes["update"] += 1
                self.cache.written(key, copy.deepcopy(written))
                return
            except NotFound:
                self.cache.removed(
                    key, int((current or {}).get("metadata", {}).get("resourceVersion", 0)) + 1
                )
                current = self._refresh(kind, name, ns)
            except (AlreadyExists, Conflict):
                current = self._refresh(kind, name, ns)
        raise Conflict(f"{kind.name} {ns + '/' if ns else ''}{name}: kept changing; will retry")

    def _pod(self, ns: str, name: str, pod: Resource | None, out: Outcome) -> list[Intent]:
        if pod is None:
            return []  # the CNI plugin deletes the WorkloadEndpoint; we only own its labels
        try:
            labels = conversion.pod_to_workload_labels(pod)
        except conversion.ConversionError as exc:
            out.problems = [str(exc)]
            self.report(pod, out.problems)
            return []
        intents = []
        for key in self.cache.weps_of(ns, name):
            current = self.cache.get(key)
            if current is None or (current.get("metadata") or {}).get("labels") == labels:
                continue
            # a new top level and metadata; the rest is shared with the cached (never mutated)
            value = {**current, "metadata": {**current["metadata"], "labels": dict(labels)}}
            again = functools.partial(self._wep_labels, key, labels)
            intents.append(Intent(key, "update", value, _rv(current), again))
        return intents

    def _wep_labels(self, key: str, labels: dict[str, str], out: Outcome) -> None:
        parsed = kinds.parse_key(key)
        assert parsed is not None
        _, ns, wep_name = parsed
        current = self.cache.get(key)
        for _ in range(ATTEMPTS):
            if current is None:
                return  # gone (CNI DEL); nothing to label
            if (current.get("metadata") or {}).get("labels") == labels:
                return
            obj = copy.deepcopy(current)
            obj["metadata"]["labels"] = dict(labels)
            try:
                written = self.client.update(obj, validate=False)
                self.cache.written(key, copy.deepcopy(written))
                out.writes["update"] += 1
                return
            except (Conflict, NotFound):
                current = self._refresh(KIND_WEP, wep_name, ns)
        raise Conflict(f"WorkloadEndpoint {ns}/{wep_name}: kept changing; will retry")
