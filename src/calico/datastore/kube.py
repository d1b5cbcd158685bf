"""KubeBackend: the datastore seam over the Kubernetes API (``DATASTORE_TYPE=kubernetes``).

Keys map to Kubernetes objects as :mod:`calico.datastore.kube_map` says; a record's revision is
its object's ``resourceVersion`` (the API server's etcd revision, an integer in practice), so
every compare-and-swap of the etcd mode becomes a write conditional on the resourceVersion read:
an update carries ``metadata.resourceVersion`` (409 Conflict when stale), a create is a POST
(409 AlreadyExists), a delete carries ``preconditions.resourceVersion``, a Node or Pod patch
carries the resourceVersion it was computed from.

Transactions (:meth:`KubeBackend.txn`): the API server has no multi-object transaction. Every
compare is checked first (one read per key); then the writes run in the caller's order, each one
conditional on the revision compared (or read); if one loses (409), the writes already made are
undone, newest first, and the result is the failure branch, as if the compare had failed. So a
conflict never double-books anything: the IPAM writes its block first, and two writers of one
block revision cannot both win it. What differs from etcd: another reader may see the first
writes of a transaction that is then undone (milliseconds), and an undo that fails (the API
server gone mid-transaction) leaves those writes (an extra IPAMHandle count or affinity, which
``calicoctl ipam check`` reports and the node controller's IPAM GC releases).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from calico.datastore.backend import (
    KV,
    Cmp,
    Delete,
    Get,
    Op,
    Put,
    Refused,
    StoreError,
    SyncStream,
    TxnResult,
    as_bytes,
)
from calico.datastore.kube_api import Access, KubeApi, check, missing_type
from calico.datastore.kube_map import Mapper, mapper_for, mappers_under

logger = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"


class KubeBackend:
    atomic_txn = False
    datastore_type = "kubernetes"

    def __init__(self, acc: Access, *, timeout: float = 10.0) -> None:
        self.access = acc
        self.api = KubeApi(acc, timeout=timeout)

    def where(self) -> str:
        return self.api.where()

    def close(self) -> None:
        self.api.close()

    # ---- objects ------------------------------------------------------------------------------

    def _obj(self, m: Mapper, ns: str | None, name: str) -> dict[str, Any] | None:
        path = m.collection.path(ns, name)
        status, doc = self.api.request("GET", path)
        if status == 404:
            if (doc.get("details") or {}).get("name") == name:
                return None
            raise missing_type(m.collection.path(ns), self.api)
        check(status, doc, what=f"GET {path}", api=self.api)
        return doc

    def _kv(self, m: Mapper, key: str, obj: dict[str, Any] | None) -> KV | None:
        rec = m.record(obj) if obj is not None else None
        if rec is None or rec[0] != key or obj is None:
            return None
        rv = int(obj["metadata"]["resourceVersion"])
        return KV(key, rec[1], rv, rv)

    def get(self, key: str) -> KV | None:
        m = mapper_for(key)
        ns, name = m.locate(key)
        return self._kv(m, key, self._obj(m, ns, name))

    def _pages(
        self, m: Mapper, *, namespace: str | None = None, limit: int = 500, revision: int = 0
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        path = m.collection.path(namespace)
        query: dict[str, str] = {"limit": str(limit)}
        if revision:
            query |= {"resourceVersion": str(revision), "resourceVersionMatch": "Exact"}
        while True:
            status, doc = self.api.request("GET", path, query=query)
            if status == 404:
                raise missing_type(path, self.api)
            check(status, doc, what=f"list {path}", api=self.api)
            meta = doc.get("metadata") or {}
            yield list(doc.get("items") or []), int(meta.get("resourceVersion") or 0)
            if not meta.get("continue"):
                return
            query = {"limit": str(limit), "continue": str(meta["continue"])}

    def records(
        self, m: Mapper, prefix: str, *, revision: int = 0, limit: int = 500
    ) -> Iterator[tuple[list[KV], int]]:
        """Pages of ``m``'s records under ``prefix``, each with the list's resourceVersion."""
        ns = None
        if m.collection.namespaced and prefix.startswith(m.prefix):
            ns = (
                prefix[len(m.prefix) :].split("/", 1)[0] if "/" in prefix[len(m.prefix) :] else None
            )
        for items, rv in self._pages(m, namespace=ns, limit=limit, revision=revision):
            out = []
            for obj in items:
                rec = m.record(obj)
                if rec is not None and rec[0].startswith(prefix) and m.owns(rec[0]):
                    r = int(obj["metadata"]["resourceVersion"])
                    out.append(KV(rec[0], rec[1], r, r))
            yield out, rv

    def get_prefix(self, prefix: str, *, revision: int = 0) -> tuple[list[KV], int]:
        out: list[KV] = []
        newest = 0
        for m in mappers_under(prefix):
            for kvs, rv in self.records(m, prefix, revision=revision):
                out += kvs
                newest = max(newest, rv)
        out.sort(key=lambda kv: kv.key)
        return out, newest

    def get_prefix_pages(
        self, prefix: str, *, revision: int = 0, limit: int = 500
    ) -> Iterator[tuple[list[KV], int]]:
        """Sorted pages: the records are read first (one list per collection), then paged."""
        kvs, rev = self.get_prefix(prefix, revision=revision)
        for i in range(0, max(len(kvs), 1), limit):
            yield kvs[i : i + limit], revision or rev

    # ---- writes -------------------------------------------------------------------------------

    def _write(self, method: str, m: Mapper, key: str, body: dict[str, Any],
               content_type: str = "application/json") -> int | None:  # fmt: skip
        """One write; its new resourceVersion, or None when it lost (409, or 404 on an update)."""
        ns, name = m.locate(key)
        path = m.collection.path(ns, None if method == "POST" else name)
        status, doc = self.api.request(method, path, body=body, content_type=content_type)
        if status == 409 or (status == 404 and (doc.get("details") or {}).get("name") == name):
            return None
        if status == 404:
            raise missing_type(m.collection.path(ns), self.api)
        if status == 422:
            raise Refused(f"{self.where()}: {key}: the API server refused the object: "
                          f"{doc.get('message', '')}")  # fmt: skip
        check(status, doc, what=f"{method} {path}", api=self.api)
        return int((doc.get("metadata") or {}).get("resourceVersion") or 0)

    def _patch(self, m: Mapper, key: str, patch: dict[str, Any], rv: int) -> int | None:
        patch = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": str(rv)}}
        return self._write("PATCH", m, key, patch, MERGE_PATCH)

    def _holder(self, m: Mapper, key: str) -> dict[str, Any]:
        ns, name = m.locate(key)
        obj = self._obj(m, ns, name)
        if obj is None:
            what = f"{m.collection.kind} {ns + '/' if ns else ''}{name}"
            raise Refused(f"{key}: the Kubernetes {what} does not exist (in the Kubernetes "
                          f"datastore this record is part of that object)")  # fmt: skip
        return obj

    def create(self, key: str, value: bytes | str, *, lease: int = 0) -> int | None:
        m = mapper_for(key)
        value = as_bytes(value)
        if m.mode == "replace":
            return self._write("POST", m, key, m.body(key, value))
        body = m.body(key, value)  # read-only mappers refuse here
        obj = self._holder(m, key)
        if self._kv(m, key, obj) is not None:
            return None
        return self._patch(m, key, body, int(obj["metadata"]["resourceVersion"]))

    def update(self, key: str, value: bytes | str, mod_revision: int) -> int | None:
        m = mapper_for(key)
        body = m.body(key, as_bytes(value))
        if m.mode == "replace":
            body["metadata"]["resourceVersion"] = str(mod_revision)
            return self._write("PUT", m, key, body)
        if self.get(key) is None:
            return None
        return self._patch(m, key, body, mod_revision)

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int:
        for _ in range(20):
            kv = self.get(key)
            rev = (self.update(key, value, kv.mod_revision) if kv is not None
                   else self.create(key, value))  # fmt: skip
            if rev is not None:
                return rev
        raise StoreError(f"{self.where()}: {key}: kept changing under 20 writes")

    def delete(self, key: str, *, mod_revision: int = 0) -> bool:
        m = mapper_for(key)
        if m.mode == "read":
            m.body(key, b"{}")  # raises: read-only
        kv = self.get(key)
        if kv is None or (mod_revision and kv.mod_revision != mod_revision):
            return False
        if m.mode == "patch":
            return self._patch(m, key, m.removal(key), kv.mod_revision) is not None
        ns, name = m.locate(key)
        path = m.collection.path(ns, name)
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": str(kv.mod_revision)}}  # fmt: skip
        status, doc = self.api.request("DELETE", path, body=body)
        if status in (404, 409):
            return False
        check(status, doc, what=f"DELETE {path}", api=self.api)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete the records under ``prefix``; read-only ones (derived from Kubernetes objects:
        profiles, knp.default.* policies) are not Calico's to delete and stay."""
        kvs, _ = self.get_prefix(prefix)
        kvs = [kv for kv in kvs if mapper_for(kv.key).mode != "read"]
        return sum(1 for kv in kvs if self.delete(kv.key, mod_revision=kv.mod_revision))

    # ---- transactions ---------------------------------------------------------------------------

    def _read(self, op: Get) -> tuple[list[KV], int]:
        if not op.prefix:
            kv = self.get(op.key)
            kvs = [kv] if kv is not None else []
        else:
            kvs, _ = self.get_prefix(op.key)
        count = len(kvs)
        if op.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= op.min_mod_revision]
        if op.count_only:
            return [], count
        if op.keys_only:
            kvs = [KV(kv.key, b"", kv.mod_revision, kv.create_revision) for kv in kvs]
        return kvs, count

    def _reads(self, ops: Sequence[Op]) -> tuple[list[list[KV]], list[int]]:
        responses, counts = [], []
        for op in ops:
            if isinstance(op, Get):
                kvs, n = self._read(op)
                responses.append(kvs)
                counts.append(n)
            else:
                raise StoreError("kubernetes datastore: a transaction's failure branch only reads")
        return responses, counts

    def txn(
        self, compare: Sequence[Cmp], success: Sequence[Op], failure: Sequence[Op] | None = None
    ) -> TxnResult:
        seen: dict[str, KV | None] = {c.key: self.get(c.key) for c in compare}
        ok = all(
            (seen[c.key] is None) if c.mod_revision == 0
            else (seen[c.key] is not None and seen[c.key].mod_revision == c.mod_revision)  # type: ignore[union-attr]
            for c in compare
        )  # fmt: skip
        if ok:
            done: list[tuple[str, KV | None, int]] = []
            try:
                result = self._apply(seen, success, done)
            except StoreError:
                self._undo(done)  # refused or unreachable midway: nothing is left half-written
                raise
            if result is not None:
                return result
        responses, counts = self._reads(failure or [])
        return TxnResult(False, 0, responses, counts)

    def _apply(
        self, seen: dict[str, KV | None], ops: Sequence[Op], done: list[tuple[str, KV | None, int]]
    ) -> TxnResult | None:
        """Run ``ops``; ``done`` collects (key, before, our revision; 0: deleted) for an undo."""
        responses: list[list[KV]] = []
        counts: list[int] = []
        revisions: dict[str, int] = {}
        for op in ops:
            if isinstance(op, Get):
                kvs, n = self._read(op)
                responses.append(kvs)
                counts.append(n)
                continue
            responses.append([])
            counts.append(0)
            before = seen[op.key] if op.key in seen else self.get(op.key)
            if isinstance(op, Put):
                rev = (self.update(op.key, op.value, before.mod_revision) if before is not None
                       else self.create(op.key, op.value))  # fmt: skip
            elif isinstance(op, Delete):
                lost = before is not None and not self.delete(
                    op.key, mod_revision=before.mod_revision
                )
                rev = None if lost else 0
            if rev is None:
                self._undo(done)
                return None
            done.append((op.key, before, rev))
            if rev:
                revisions[op.key] = rev
                seen[op.key] = KV(op.key, as_bytes(op.value), rev, rev)  # type: ignore[union-attr]
            else:
                seen[op.key] = None
        return TxnResult(True, max(revisions.values(), default=0), responses, counts, revisions)

    def _undo(self, done: list[tuple[str, KV | None, int]]) -> None:
        for key, before, rev in reversed(done):
            try:
                if before is None and rev:
                    undone = self.delete(key, mod_revision=rev)
                elif before is not None and not rev:
                    undone = self.create(key, before.value) is not None
                elif before is not None:
                    undone = self.update(key, before.value, rev) is not None
                else:
                    undone = True
            except StoreError as exc:
                undone = False
                logger.warning("txn undo of %s failed: %s", key, exc)
            if not undone:
                logger.warning("txn undo of %s: it changed meanwhile; left as it is", key)

    def preflight(self, keys: Sequence[str]) -> None:
        """Per collection of ``keys``: read-only records refused; the collection served (its CRD
        installed) and listable; a dry-run create permitted (RBAC); a Node's or Pod's record:
        that object exists. Nothing is stored."""
        checked: set[int] = set()
        for key in keys:
            m = mapper_for(key)
            if m.mode == "patch":
                self._holder(m, key)  # the Node / Pod the record is part of exists
            if id(m) in checked:
                continue
            checked.add(id(m))
            if m.mode == "read":
                m.body(key, b"{}")  # raises, saying why
            path = m.collection.path(m.locate(key)[0])
            status, doc = self.api.request("GET", path, query={"limit": "1"})
            if status == 404:
                raise missing_type(path, self.api)
            check(status, doc, what=f"list {path}", api=self.api)
            if m.mode == "replace":
                body = m.body(key, b'{"spec": {}}')
                status, doc = self.api.request("POST", path, query={"dryRun": "All"}, body=body)
                if status == 404:
                    raise missing_type(path, self.api)

    # ---- sync ---------------------------------------------------------------------------------

    def sync_streams(self, prefixes: Sequence[str]) -> list[SyncStream]:
        from calico.datastore.kube_stream import KubeStream

        out: list[SyncStream] = []
        seen: set[int] = set()
        for p in prefixes:
            for m in mappers_under(p):
                if id(m) not in seen:
                    seen.add(id(m))
                    mine = [q for q in prefixes if m in mappers_under(q)]
                    out.append(KubeStream(self.access, m, mine))
        return out


__all__ = ["KubeBackend"]
