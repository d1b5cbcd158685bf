"""Bulk compare-and-swap writes: many independent resources in few datastore transactions.

Each :class:`Write` is conditional on what its writer last saw of its key: the key's mod revision
(``revision``), or its absence (``revision`` 0). The writes go in chunks of at most
:data:`MAX_OPS` operations (etcd's default ``--max-txn-ops``) and about :data:`MAX_BYTES`, one
transaction per chunk: "every compare holds -> write them all", whose failure branch reads every
key of the chunk. So:

* a chunk is applied whole or not at all: etcd transactions are atomic (so is the memory
  backend's); the Kubernetes backend checks every compare first and undoes what it wrote on a
  late conflict (:attr:`calico.datastore.backend.Backend.atomic_txn`): nothing half-applied;
* a write whose compare fails is never applied (a value changed concurrently is not clobbered).
  The failure branch's reads say which compares failed: those writes are answered :class:`Lost`
  with what the key holds now (the caller re-reads nothing), and the rest of the chunk is sent
  again, up to :data:`RETRIES` times, so one lost race never holds the others back;
* a chunk the store refuses whole (:class:`StoreError`: too many operations, too large) is split in
  halves until it fits; a single write refused alone is answered with the error;
* :class:`Unavailable` (no answer: the chunk may or may not have been applied) answers every
  write not yet known applied with that error; no later chunk is sent. Sending one again is safe:
  its compare fails if it was applied, and the caller learns the new revision.

Results come back in the order of the writes; no key may appear twice in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calico.datastore.backend import (
    KV,
    Backend,
    StoreError,
    Unavailable,
    cmp_absent,
    cmp_mod,
    op_delete,
    op_get,
    op_put,
)

MAX_OPS = 128  # etcd's default --max-txn-ops
MAX_BYTES = 1 << 20  # well under etcd's default 1.5 MiB request (values travel in base64)
RETRIES = 3


@dataclass(frozen=True, slots=True)
class Write:
    """Put ``value`` (encoded) at ``key``, or delete it (``value`` None), only if the key's mod
    revision is ``revision`` (0: only if the key does not exist)."""

    key: str
    value: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class Written:
    revision: int  # the key's new mod revision (of a delete: the revision it was deleted at)


@dataclass(frozen=True, slots=True)
class Lost:
    """The compare failed: the key changed (or appeared, or went) since ``Write.revision``."""

    current: KV | None  # what the key holds now (None: absent)
    revision: int  # the store revision ``current`` was read at


Result = Written | Lost | Exception
Results = list[Result]  # (a name Client can use: its own "list" is a method)


def _size(w: Write) -> int:
    return (len(w.value) if w.value else 0) * 4 // 3 + len(w.key) * 3 + 96


def chunks(writes: Sequence[Write]) -> list[list[int]]:
    """Indexes of ``writes`` in runs of at most MAX_OPS writes and about MAX_BYTES."""
    out: list[list[int]] = []
    run: list[int] = []
    size = 0
    for i, w in enumerate(writes):
        n = _size(w)
        if run and (len(run) >= MAX_OPS or size + n > MAX_BYTES):
            out.append(run)
            run, size = [], 0
        run.append(i)
        size += n
    if run:
        out.append(run)
    return out


def _holds(w: Write, found: list[KV]) -> bool:
    current = found[0].mod_revision if found else 0
    return current == w.revision


def _txn(store: Backend, writes: Sequence[Write], run: list[int], out: list[Result | None]
         ) -> None:  # fmt: skip
    """One chunk: the transaction, sent again without the writes whose compare failed."""
    pending = run
    for _ in range(RETRIES):
        ws = [writes[i] for i in pending]
        r = store.txn(
            [cmp_absent(w.key) if not w.revision else cmp_mod(w.key, w.revision) for w in ws],
            [op_put(w.key, w.value) if w.value is not None else op_delete(w.key) for w in ws],
            [op_get(w.key) for w in ws],
        )
        if r.succeeded:
            for i in pending:
                out[i] = Written(r.revision_of(writes[i].key))
            return
        still = []
        for i, w, found in zip(pending, ws, r.responses, strict=True):
            if _holds(w, found):
                still.append(i)
            else:
                out[i] = Lost(found[0] if found else None, r.revision)
        if not still:
            return
        pending = still
    # Lost races every time (a key changing under us as fast as we write): one by one.
    for i in pending:
        _txn_single(store, writes, i, out)


def _txn_single(store: Backend, writes: Sequence[Write], i: int, out: list[Result | None]
                ) -> None:  # fmt: skip
    w = writes[i]
    r = store.txn(
        [cmp_absent(w.key) if not w.revision else cmp_mod(w.key, w.revision)],
        [op_put(w.key, w.value) if w.value is not None else op_delete(w.key)],
        [op_get(w.key)],
    )
    found = r.responses[0] if r.responses else []
    out[i] = (
        Written(r.revision_of(w.key))
        if r.succeeded
        else Lost(found[0] if found else None, r.revision)
    )


def _chunk(store: Backend, writes: Sequence[Write], run: list[int], out: list[Result | None]
           ) -> None:  # fmt: skip
    """A chunk, split in halves while the store refuses it whole."""
    try:
        _txn(store, writes, run, out)
    except Unavailable:
        raise
    except StoreError as exc:
        if len(run) == 1:
            out[run[0]] = exc
            return
        half = len(run) // 2
        _chunk(store, writes, run[:half], out)
        _chunk(store, writes, run[half:], out)


def write_many(store: Backend, writes: Sequence[Write]) -> list[Result]:
    """Apply ``writes`` (see the module's docstring); one result per write, in order."""
    keys = [w.key for w in writes]
    if len(set(keys)) != len(keys):
        raise ValueError("write_many: a key appears twice")
    out: list[Result | None] = [None] * len(writes)
    for run in chunks(writes):
        try:
            _chunk(store, writes, run, out)
        except Unavailable as exc:
            return [exc if r is None else r for r in out]
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]
