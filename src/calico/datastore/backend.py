"""The datastore seam: what every component asks of the store, whichever store it is.

Three backends implement :class:`Backend`: :class:`~calico.datastore.etcd.EtcdClient` (etcd v3,
Calico's etcd mode), :class:`~calico.datastore.kube.KubeBackend` (the Kubernetes API: Calico's
"KDD" mode, custom resources and Kubernetes objects behind the same keys) and
:class:`~calico.datastore.memory.MemoryBackend` (in-process, for unit tests of IPAM and controller
logic). The same contract tests run against all three (tests/integration/datastore).

The interface speaks Calico's etcd key space (``/calico/resources/v3/projectcalico.org/...``,
``/calico/ipam/v2/...``; values are the JSON stored there) and etcd's revision discipline: every
record read carries its ``mod_revision``; a write may be conditional on it (:class:`Cmp`);
``txn(compare, success, failure)`` runs ``success`` when every compare holds, else ``failure``.

* get / get_prefix / get_prefix_pages (pages at one revision);
* create (absent → put) / update (CAS on ``mod_revision``) / put / delete (optionally CAS) /
  delete_prefix;
* txn: several compares and writes. Atomic in etcd and in memory. In the Kubernetes API there
  is no multi-object transaction: the Kubernetes backend checks every compare first, writes in the
  caller's order, each write conditional on the revision compared (resourceVersion), and on a
  conflict undoes what it wrote, newest first (see :mod:`calico.datastore.kube_txn`); callers
  put the record that decides (an IPAM block) where a conflict is caught before anything else is
  left, and the contract says what holds in both (:attr:`Backend.atomic_txn`);
* preflight(keys): before a command writes several records, what would refuse one of them
  (nothing in etcd; the Kubernetes API: a CRD, an RBAC verb), so nothing is half-written;
* sync_streams(prefixes): what :class:`~calico.datastore.syncer.Syncer` lists and watches (one
  stream over a key range in etcd; one per Kubernetes resource type).

Failures: :class:`StoreError`, :class:`Unavailable` (the store cannot be reached: "try again"),
:class:`Compacted` (a watch's revision is gone: list again), :class:`Refused` (the store refused
for a reason naming what is missing: a CRD not installed, RBAC, a kind it cannot hold).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """The datastore answered with an error."""


class Unavailable(StoreError):
    """The datastore could not be reached, or stopped answering (try again later)."""


class Compacted(StoreError):
    """A watch asked for a revision the store no longer has (list again)."""

    def __init__(self, compact_revision: int, msg: str = "") -> None:
        super().__init__(
            msg or f"required revision has been compacted (compact revision {compact_revision})"
        )
        self.compact_revision = compact_revision


class Refused(StoreError):
    """The store refused the request for a reason that retrying will not fix: a resource type
    it does not serve (a CRD not installed), a permission (RBAC), a record it cannot hold. The
    message names what is missing."""


# ---- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "PUT" or "DELETE"
    key: str
    value: bytes  # b"" for a delete
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One message of a watch stream: its events (none for a progress notification) and
    ``revision``, the newest revision up to which this stream has delivered every event in the
    watched range (0 when the message says nothing about that, e.g. "created")."""

    events: list[WatchEvent]
    revision: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[list[KV]]
    counts: list[int] = field(default_factory=list)  # the range's count per read operation
    # the new mod revision of each key the transaction wrote, where it differs from ``revision``
    # (the Kubernetes API: one resourceVersion per object written)
    revisions: dict[str, int] = field(default_factory=dict)

    def revision_of(self, key: str) -> int:
        return self.revisions.get(key, self.revision)


# ---- transaction building blocks -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cmp:
    """``key``'s mod revision is ``mod_revision`` (0: the key does not exist)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Get:
    """Read ``key`` (every key under it with ``prefix``); ``min_mod_revision`` keeps only keys
    modified at or after it (``count`` still counts the whole range)."""

    key: str
    prefix: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes | str
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Get | Put | Delete


def cmp_mod(key: str, mod_revision: int) -> Cmp:
    """Txn compare: ``key``'s mod revision is ``mod_revision``."""
    return Cmp(key, mod_revision)


def cmp_absent(key: str) -> Cmp:
    """Txn compare: ``key`` does not exist."""
    return Cmp(key, 0)


def op_get(
    key: str,
    *,
    prefix: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    min_mod_revision: int = 0,
) -> Get:
    return Get(key, prefix, keys_only, count_only, min_mod_revision)


def op_put(key: str, value: bytes | str, *, lease: int = 0) -> Put:
    return Put(key, value, lease)


def op_delete(key: str) -> Delete:
    return Delete(key)


def as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1]).decode("latin-1")
    return "\0"


# ---- the interface -------------------------------------------------------------------------------


class SyncStream(Protocol):
    """One list-then-watch source of the keys under some of a syncer's prefixes.

    ``list_pages`` reads every key the stream serves at one revision, in pages, yielding each
    page with that revision; ``watch(start)`` yields what changed from revision ``start`` on
    (raising :class:`Compacted` when ``start`` is gone, :class:`Unavailable` when the stream
    breaks); ``unchanged_since(rev, known)`` is (R, "") when no key the stream serves changed after
    ``rev`` and each prefix still holds ``known[prefix]`` keys, as read at revision R — else
    (0, why), and the syncer lists again."""

    prefixes: tuple[str, ...]
    name: str

    def list_pages(self, *, limit: int) -> Iterator[tuple[list[KV], int]]: ...

    def watch(
        self, start_revision: int, *, probe_after: float, probe_timeout: float,
        stopped: Callable[[], bool],
    ) -> Iterator[WatchResponse]: ...  # fmt: skip

    def unchanged_since(self, revision: int, known: dict[str, int]) -> tuple[int, str]: ...


@runtime_checkable
class Backend(Protocol):
    """What the product asks of a datastore (see the module docstring)."""

    #: a multi-key txn is all or nothing (etcd, memory); False: compensated (Kubernetes API)
    atomic_txn: bool
    #: "etcdv3", "kubernetes" or "memory"
    datastore_type: str

    def where(self) -> str:
        """The store, for messages: "etcd http://127.0.0.1:2379", "kubernetes https://..."."""
        ...

    def close(self) -> None: ...

    def get(self, key: str) -> KV | None: ...

    def get_prefix(self, prefix: str, *, revision: int = 0) -> tuple[list[KV], int]: ...

    def get_prefix_pages(
        self, prefix: str, *, revision: int = 0, limit: int = 500
    ) -> Iterator[tuple[list[KV], int]]: ...

    def create(self, key: str, value: bytes | str, *, lease: int = 0) -> int | None: ...

    def update(self, key: str, value: bytes | str, mod_revision: int) -> int | None: ...

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int: ...

    def delete(self, key: str, *, mod_revision: int = 0) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def txn(
        self, compare: Sequence[Cmp], success: Sequence[Op], failure: Sequence[Op] | None = None
    ) -> TxnResult: ...

    def sync_streams(self, prefixes: Sequence[str]) -> list[SyncStream]: ...

    def preflight(self, keys: Sequence[str]) -> None:
        """Raise :class:`Refused`, naming what is missing, when a write of ``keys`` cannot
        succeed for a reason retrying will not fix (Kubernetes: a CRD not installed, a verb RBAC
        forbids, a read-only record); a multi-resource command checks first, writes after."""
        ...


__all__ = [
    "KV",
    "Backend",
    "Cmp",
    "Compacted",
    "Delete",
    "Get",
    "Op",
    "Put",
    "Refused",
    "StoreError",
    "SyncStream",
    "TxnResult",
    "Unavailable",
    "WatchEvent",
    "WatchResponse",
    "as_bytes",
    "cmp_absent",
    "cmp_mod",
    "op_delete",
    "op_get",
    "op_put",
    "prefix_end",
]
