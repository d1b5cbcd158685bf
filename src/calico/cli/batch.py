"""create / apply / replace in etcd transactions: up to 128 resources (and ~1 MiB) per round trip,
with calicoctl's semantics per resource.

* create: one transaction "every key absent -> put them all" whose failure branch reads the keys,
  so a failed attempt says which exist; those fail ("already exists", or count as skipped with
  ``--skip-exists``) and the rest go again.
* apply: the same first transaction; the keys it finds are then replaced in a second one that
  compares each key's mod revision (as read), keeping the stored uid and creationTimestamp. New
  resources: one round trip per batch; existing ones: two.
* replace: a document that carries resourceVersion and uid is written with no read (a CAS on that
  revision); the others are read in one transaction first: missing is "does not exist", a
  resourceVersion other than the stored one a conflict, as :meth:`Client.update` words them.

A batch whose write loses a race (a compare fails) is retried; one that keeps losing, or that etcd
refuses whole, falls back to one :class:`Client` call per resource, which has its own retries and
messages. An unreachable etcd stops the command (every later write would fail the same way).
Resources arrive validated (:mod:`calico.cli.loading`): nothing here validates again.
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from calico.cli.writing import Outcome
from calico.datastore import client as ds
from calico.datastore.backend import (
    KV,
    StoreError,
    Unavailable,
    cmp_absent,
    cmp_mod,
    op_get,
    op_put,
)

Resource = dict[str, Any]
MAX_OPS = 128  # etcd's default --max-txn-ops
MAX_BYTES = 1 << 20  # well under etcd's default 1.5 MiB request limit (values travel in base64)
RETRIES = 3
SKIPPED = "skipped"
Result = Exception | str | None  # an error, SKIPPED, or None (written)


@dataclass(slots=True)
class Doc:
    index: int  # position in the input (results are reported in this order)
    res: Resource
    key: str
    what: str  # "Kind(ns/name)", as the Client's messages name it


def _docs(resources: list[Resource]) -> list[Doc]:
    out = []
    for i, res in enumerate(resources):
        kind, name, ns = ds._ident(res)
        out.append(Doc(i, res, kind.key(name, ns), ds.describe(kind, name, ns)))
    return out


def batches(docs: list[Doc]) -> Iterator[list[Doc]]:
    """Runs of at most MAX_OPS docs and ~MAX_BYTES, never the same key twice (a transaction may
    not put one key twice; the later document must see the earlier one's write)."""
    batch: list[Doc] = []
    keys: set[str] = set()
    size = 0
    for doc in docs:
        n = len(json.dumps(doc.res)) * 4 // 3 + len(doc.key) + 64
        if batch and (len(batch) >= MAX_OPS or size + n > MAX_BYTES or doc.key in keys):
            yield batch
            batch, keys, size = [], set(), 0
        batch.append(doc)
        keys.add(doc.key)
        size += n
    if batch:
        yield batch


def _value(doc: Doc, old: KV | None) -> str:
    """The stored form: a new resource gets uid and creationTimestamp (unless the document has
    them), a replaced one keeps the stored ones; resourceVersion is never stored."""
    meta = dict(doc.res.get("metadata") or {})
    if old is None:
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault(
            "creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    else:
        old_meta = json.loads(old.value).get("metadata", {})
        for field in ("uid", "creationTimestamp"):
            if field in old_meta:
                meta.setdefault(field, old_meta[field])
    return ds._encode({**doc.res, "metadata": meta})


def _one(fn: Callable[[], object], skip: tuple[type[Exception], ...] = ()) -> Result:
    try:
        fn()
    except skip:
        return SKIPPED
    except (ds.DatastoreError, StoreError) as exc:
        return exc
    return None


def _create(client: ds.Client, batch: list[Doc], skip_exists: bool) -> dict[int, Result]:
    out: dict[int, Result] = {}
    pending = batch
    for _ in range(RETRIES):
        if not pending:
            return out
        r = client.backend.txn(
            [cmp_absent(d.key) for d in pending],
            [op_put(d.key, _value(d, None)) for d in pending],
            [op_get(d.key) for d in pending],
        )
        if r.succeeded:
            out.update((d.index, None) for d in pending)
            return out
        still = []
        for doc, found in zip(pending, r.responses, strict=True):
            if not found:
                still.append(doc)
            elif skip_exists:
                out[doc.index] = SKIPPED
            else:
                out[doc.index] = ds.AlreadyExists(f"resource already exists: {doc.what}")
        pending = still
    skip = (ds.AlreadyExists,) if skip_exists else ()
    for doc in pending:
        out[doc.index] = _one(functools.partial(client.create, doc.res, validate=False), skip)
    return out


def _apply(client: ds.Client, batch: list[Doc]) -> dict[int, Result]:
    stored: dict[str, KV | None] = {}  # unknown: assume absent (a new resource: one round trip)
    for _ in range(RETRIES):
        compares = []
        for doc in batch:
            old = stored.get(doc.key)
            compares.append(
                cmp_absent(doc.key) if old is None else cmp_mod(doc.key, old.mod_revision)
            )
        r = client.backend.txn(
            compares,
            [op_put(d.key, _value(d, stored.get(d.key))) for d in batch],
            [op_get(d.key) for d in batch],
        )
        if r.succeeded:
            return {d.index: None for d in batch}
        stored = {
            d.key: (found[0] if found else None)
            for d, found in zip(batch, r.responses, strict=True)
        }
    out: dict[int, Result] = {}
    for doc in batch:
        doc.res["metadata"].pop("resourceVersion", None)
        out[doc.index] = _one(functools.partial(client.apply, doc.res, validate=False))
    return out


def _replace(client: ds.Client, batch: list[Doc]) -> dict[int, Result]:
    out: dict[int, Result] = {}

    def known(doc: Doc) -> bool:
        meta = doc.res.get("metadata") or {}
        return bool(meta.get("resourceVersion") and meta.get("uid"))

    unknown = [d for d in batch if not known(d)]
    current: dict[str, KV | None] = {}
    if unknown:
        r = client.backend.txn([], [op_get(d.key) for d in unknown])
        current = {d.key: (f[0] if f else None) for d, f in zip(unknown, r.responses, strict=True)}
    writes: list[tuple[Doc, int, str]] = []
    for doc in batch:
        rv = doc.res["metadata"].get("resourceVersion")
        want = int(rv) if rv else None
        if known(doc):
            assert want is not None
            writes.append((doc, want, ds._encode(doc.res)))  # the caller read it: as it is
            continue
        cur = current[doc.key]
        if cur is None:
            out[doc.index] = ds.NotFound(f"resource does not exist: {doc.what}")
        elif want is not None and want != cur.mod_revision:
            out[doc.index] = ds.Conflict(
                f"update conflict: {doc.what} has resourceVersion {cur.mod_revision}, not {want}"
            )
        else:
            writes.append((doc, cur.mod_revision, _value(doc, cur)))
    if writes:
        r = client.backend.txn(
            [cmp_mod(d.key, rev) for d, rev, _ in writes], [op_put(d.key, v) for d, _, v in writes]
        )
        for doc, _, _ in writes:
            if r.succeeded:
                out[doc.index] = None
            else:  # changed or deleted meanwhile: the per-resource path says which, and retries
                out[doc.index] = _one(functools.partial(client.update, doc.res, validate=False))
    return out


def _fallback(
    client: ds.Client, verb: str, batch: list[Doc], skip_exists: bool
) -> dict[int, Result]:
    ops: dict[str, Callable[[Resource], object]] = {
        "create": lambda r: client.create(r, validate=False),
        "apply": lambda r: client.apply(r, validate=False),
        "replace": lambda r: client.update(r, validate=False),
    }
    skip = (ds.AlreadyExists,) if skip_exists and verb == "create" else ()
    out: dict[int, Result] = {}
    for doc in batch:
        out[doc.index] = _one(functools.partial(ops[verb], doc.res), skip)
        if isinstance(out[doc.index], Unavailable):
            break
    return out


def write(client: ds.Client, resources: list[Resource], verb: str, *, skip_exists: bool = False
          ) -> Outcome:  # fmt: skip
    """``verb`` (create / apply / replace) every resource, in transactions; the outcome in the
    input's order, as :func:`calico.cli.writing.run` reports it."""
    out = Outcome(total=len(resources), kinds=[str(r.get("kind")) for r in resources])
    docs = _docs(resources)
    try:
        client.backend.preflight([d.key for d in docs])
    except StoreError as exc:  # a CRD missing, RBAC, unreachable: before anything is written
        out.errors.append(f"{exc} (nothing was written)")
        return out
    for batch in batches(docs):
        try:
            if verb == "create":
                results = _create(client, batch, skip_exists)
            elif verb == "apply":
                results = _apply(client, batch)
            else:
                results = _replace(client, batch)
        except Unavailable as exc:
            out.errors.append(str(exc))
            return out
        except StoreError:  # refused whole (too big, too many operations): one at a time
            results = _fallback(client, verb, batch, skip_exists)
        for doc in batch:
            if doc.index not in results:
                return out  # not attempted: etcd went away during the fallback
            result = results[doc.index]
            if isinstance(result, Exception):
                out.errors.append(str(result))
                if isinstance(result, Unavailable):
                    return out
            else:
                out.done += 1
                out.skipped += result == SKIPPED
    return out
