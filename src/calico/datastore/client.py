"""Client: Calico v3 resources in the datastore: get/list/create/update/apply/delete, revisions.

``metadata.resourceVersion`` is the mod revision of the resource's key (etcd's; the Kubernetes
API's resourceVersion in KDD mode). ``update`` with a
resourceVersion is a compare-and-swap: a stale version fails with :class:`Conflict`. ``create`` sets
``metadata.uid`` and ``metadata.creationTimestamp``. Every write validates first (see
:mod:`calico.model.validation`) unless the caller passes ``validate=False`` (the CNI plugin, which
builds its WorkloadEndpoint itself and keeps its imports small).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Sequence
from typing import Any

from calico.datastore import bulk
from calico.datastore.backend import Backend, StoreError
from calico.model import kinds

Resource = dict[str, Any]


class DatastoreError(StoreError):
    """A datastore operation failed."""


class NotFound(DatastoreError):
    pass


class AlreadyExists(DatastoreError):
    pass


class Conflict(DatastoreError):
    pass


class NotSupported(DatastoreError):
    """An operation Calico refuses on this resource (deleting the default tier, a non-empty one)."""


# Tiers (Calico's clientv3 rules): a policy can only be created in a tier that exists (the
# built-in ones always do); a built-in tier cannot be deleted, nor one that still holds policies.
BUILT_IN_TIERS = ("default", "kube-admin", "kube-baseline")
POLICY_KINDS = (
    "NetworkPolicy",
    "GlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
)


def _ident(obj: Resource) -> tuple[kinds.Kind, str, str | None]:
    kind = kinds.lookup(str(obj.get("kind", "")))
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise DatastoreError(f"{kind.name}: metadata.name is required")
    ns = meta.get("namespace") if kind.namespaced else None
    if kind.namespaced and not ns:
        ns = "default"
        meta["namespace"] = ns
    return kind, str(name), ns


def describe(kind: kinds.Kind, name: str, namespace: str | None) -> str:
    return f"{kind.name}({namespace}/{name})" if namespace else f"{kind.name}({name})"


def decode(value: bytes, mod_revision: int) -> Resource:
    obj: Resource = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


def _encode(obj: Resource) -> str:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return json.dumps(
        {**obj, "apiVersion": kinds.API_VERSION, "metadata": meta},
        separators=(",", ":"),
        sort_keys=True,
    )


class Client:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def etcd(self) -> Backend:
        """The old name of :attr:`backend` (kept for code written before the seam)."""
        return self.backend

    # ---- reads ------------------------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str | None = None) -> Resource:
        k = kinds.lookup(kind)
        ns = (namespace or "default") if k.namespaced else None
        kv = self.backend.get(k.key(name, ns))
        if kv is None:
            raise NotFound(f"resource does not exist: {describe(k, name, ns)}")
        return decode(kv.value, kv.mod_revision)

    def list(self, kind: str, namespace: str | None = None) -> list[Resource]:
        """All resources of ``kind`` (namespaced kinds: in ``namespace``, or all when None)."""
        k = kinds.lookup(kind)
        kvs, _ = self.backend.get_prefix(k.prefix(namespace))
        return [decode(kv.value, kv.mod_revision) for kv in kvs]

    # ---- writes -----------------------------------------------------------------------------

    def _prepare(self, obj: Resource, validate: bool) -> Resource:
        if validate:
            from calico.model import validation  # lazy: the CNI plugin skips this import

            obj = validation.validate(obj)
        return obj

    def create(self, obj: Resource, *, validate: bool = True) -> Resource:
        obj = self._prepare(obj, validate)
        kind, name, ns = _ident(obj)
        if kind.name in POLICY_KINDS:
            self._check_tier_exists(obj, describe(kind, name, ns))
        meta = obj["metadata"]
        for field, value in self.new_identity().items():
            meta.setdefault(field, value)
        rev = self.backend.create(kind.key(name, ns), _encode(obj))
        if rev is None:
            raise AlreadyExists(f"resource already exists: {describe(kind, name, ns)}")
        meta["resourceVersion"] = str(rev)
        return obj

    @staticmethod
    def new_identity() -> dict[str, str]:
        """``uid`` and ``creationTimestamp`` for a resource being created."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"uid": str(uuid.uuid4()), "creationTimestamp": now}

    def update(self, obj: Resource, *, validate: bool = True) -> Resource:
        """Replace an existing resource; CAS on metadata.resourceVersion when it is set."""
        obj = self._prepare(obj, validate)
        kind, name, ns = _ident(obj)
        key = kind.key(name, ns)
        meta = obj["metadata"]
        if meta.get("resourceVersion") and meta.get("uid"):
            # The caller read this object (it carries uid and resourceVersion): one CAS, no re-read.
            rev = self.backend.update(key, _encode(obj), int(meta["resourceVersion"]))
            if rev is not None:
                meta["resourceVersion"] = str(rev)
                return obj
        current = self.backend.get(key)
        if current is None:
            raise NotFound(f"resource does not exist: {describe(kind, name, ns)}")
        want_rev = int(meta["resourceVersion"]) if meta.get("resourceVersion") else None
        if want_rev is not None and want_rev != current.mod_revision:
            raise Conflict(
                f"update conflict: {describe(kind, name, ns)} has resourceVersion "
                f"{current.mod_revision}, not {want_rev}"
            )
        old_meta = json.loads(current.value).get("metadata", {})
        for field in ("uid", "creationTimestamp"):
            if field in old_meta:
                meta.setdefault(field, old_meta[field])
        rev = self.backend.update(key, _encode(obj), current.mod_revision)
        if rev is None:
            raise Conflict(f"update conflict: {describe(kind, name, ns)} changed concurrently")
        meta["resourceVersion"] = str(rev)
        return obj

    def write_many(self, changes: Sequence[tuple[str, Resource | None, int]]) -> bulk.Results:
        """Compare-and-swap many resources in few transactions (:mod:`calico.datastore.bulk`):
        each change is (key, the resource to store or None to delete it, the mod revision the
        writer read the key at, 0 for "must not exist"). A created resource gets uid and
        creationTimestamp unless it has them; a replaced one is stored as given (carry the stored
        uid and creationTimestamp over: the compare guarantees it is still the object read).
        Each stored resource gets its new resourceVersion. Nothing is validated; no tier checks
        (callers write into tiers that always exist). One result per change, in order."""
        writes = []
        for key, obj, rev in changes:
            value = None
            if obj is not None:
                meta = obj.setdefault("metadata", {})
                if not rev:
                    for field, value in self.new_identity().items():
                        meta.setdefault(field, value)
                value = _encode(obj)
            writes.append(bulk.Write(key, value, rev))
        results = bulk.write_many(self.backend, writes)
        for (_, obj, _), res in zip(changes, results, strict=True):
            if obj is not None and isinstance(res, bulk.Written):
                obj["metadata"]["resourceVersion"] = str(res.revision)
        return results

    # ---- tiers ------------------------------------------------------------------------------

    def _check_tier_exists(self, obj: Resource, what: str) -> None:
        tier = (obj.get("spec") or {}).get("tier") or "default"
        if tier in BUILT_IN_TIERS:
            return
        if self.backend.get(kinds.lookup("Tier").key(tier)) is None:
            raise NotFound(
                f"{what}: spec.tier: tier {tier!r} does not exist (create the Tier first)"
            )

    def tier_policies(self, tier: str) -> tuple[str, ...]:
        """The policies ``spec.tier`` puts in ``tier``, as ``Kind(namespace/name)``."""
        out: tuple[str, ...] = ()
        for kind in POLICY_KINDS:
            for pol in self.list(kind):
                if ((pol.get("spec") or {}).get("tier") or "default") == tier:
                    meta = pol["metadata"]
                    out += (describe(kinds.lookup(kind), meta["name"], meta.get("namespace")),)
        return out

    def _check_tier_deletable(self, name: str) -> None:
        what = f"operation Delete is not supported on Tier({name})"
        if name in BUILT_IN_TIERS:
            raise NotSupported(f"{what}: Cannot delete {name} tier")
        held = self.tier_policies(name)
        if held:
            shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
            raise NotSupported(f"{what}: Cannot delete a non-empty tier (it holds {shown})")

    def apply(self, obj: Resource, *, validate: bool = True) -> Resource:
        """Create or replace, ignoring resourceVersion (the last writer wins)."""
        obj = self._prepare(obj, validate)
        obj["metadata"].pop("resourceVersion", None)
        for _ in range(10):
            try:
                return self.create(obj, validate=False)
            except AlreadyExists:
                pass
            try:
                return self.update(obj, validate=False)
            except (NotFound, Conflict):
                obj["metadata"].pop("resourceVersion", None)
                continue
        kind, name, ns = _ident(obj)
        raise Conflict(f"apply: {describe(kind, name, ns)} kept changing; gave up")

    def delete(
        self, kind: str, name: str, namespace: str | None = None, *, resource_version: str = ""
    ) -> Resource:
        k = kinds.lookup(kind)
        ns = (namespace or "default") if k.namespaced else None
        if k.name == "Tier":
            self._check_tier_deletable(name)
        key = k.key(name, ns)
        current = self.backend.get(key)
        if current is None:
            raise NotFound(f"resource does not exist: {describe(k, name, ns)}")
        if resource_version and int(resource_version) != current.mod_revision:
            raise Conflict(f"delete conflict: {describe(k, name, ns)} has changed")
        if not self.backend.delete(key, mod_revision=current.mod_revision):
            raise Conflict(f"delete conflict: {describe(k, name, ns)} changed concurrently")
        return decode(current.value, current.mod_revision)
