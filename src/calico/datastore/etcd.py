"""EtcdClient: a small stdlib client for etcd v3's JSON gateway (``/v3/...``), over a member list.

One client for every process: the CNI plugin (import cost matters), the CLI, the controllers and the
agent. It speaks HTTP/1.1 to etcd's grpc-gateway, which etcd >= 3.4 serves on its client port:
range (whole, or in pages at one revision), put, delete, txn (compare-and-swap), lease, compaction,
status and a streaming watch of one key range (:mod:`calico.datastore.etcd_watch`, imported only
by processes that watch).

Failover: requests go to one member, the first of ``endpoints`` until it fails; then to the next.
Nothing is probed up front, so a short-lived process whose first member answers pays nothing for
the others. A member is left for the next one when it cannot be reached, when it answers that it
cannot serve (no leader, not capable, ...) or, for reads only, when it times out. A write whose
answer was lost (the member died or hung after the request went out) is not re-sent elsewhere:
it may have been applied, so it fails with :class:`EtcdUnavailable` saying so, and the caller's
next request goes to the next member.

Failures raise :class:`EtcdError`, :class:`EtcdUnavailable` (no member answered) or its
:class:`EtcdTLSError` (certificates: a clear message naming the file or the refusal).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from calico.datastore.backend import (
    KV,
    Cmp,
    Op,
    SyncStream,
    TxnResult,
    WatchEvent,
    WatchResponse,
    cmp_absent,
    cmp_mod,
    op_delete,
    op_get,
    op_put,
    prefix_end,
)
from calico.datastore.etcd_wire import (
    EtcdCompacted,
    EtcdError,
    EtcdTLSError,
    EtcdUnavailable,
    MemberStatus,
    TLSFiles,
    b64,
    kv_from,
    parse_endpoints,
    tls_problem,
    txn_result,
    wire_cmp,
    wire_op,
)

# etcd's answers meaning "this member cannot serve now, another may"; each is given before the
# request is proposed to raft, so even a write may go to the next member.
_NOT_HERE = (
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: server stopped",
    "etcdserver: too many requests",
    "etcdserver: unhealthy cluster",
    "raft proposal dropped",
)
# ... and these too, for reads only: a write may have been applied (raft may still commit it)
_READ_ELSEWHERE = (
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "context deadline exceeded",
)


def _read_only(path: str, body: dict[str, Any]) -> bool:
    """Whether a request only reads (so it may be sent again, to any member)."""
    if path == "/v3/kv/txn":
        ops = [*body.get("success", []), *body.get("failure", [])]
        return all(set(op) == {"request_range"} for op in ops)
    return path in ("/v3/kv/range", "/v3/maintenance/status")


class _MemberFailed(Exception):
    def __init__(self, reason: str, *, tls: bool = False, answered: bool = False) -> None:
        super().__init__(reason)
        self.tls = tls
        self.answered = answered  # the member answered "not now" (no leader, an election, ...)


class EtcdClient:
    """Talks to one of ``endpoints`` (``http(s)://host:port``, a list or a comma-separated
    string), failing over in order. Not thread-safe: one client per thread. The etcd
    :class:`~calico.datastore.backend.Backend`."""

    atomic_txn = True
    datastore_type = "etcdv3"

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        tls: TLSFiles | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self._endpoints = parse_endpoints(endpoints)
        self._tls = tls or TLSFiles()
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._ssl: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_index = 0
        self._current = 0
        self.watches_opened = 0  # watch streams this client started (a metric for tests)
        self.probes = 0  # liveness probes its watches sent

    # ---- members ----------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [urllib.parse.urlunsplit(e) for e in self._endpoints]

    def endpoints_text(self) -> str:
        return ",".join(self.endpoints)

    def where(self) -> str:
        return f"etcd {self.endpoints_text()}"

    def member_url(self, index: int) -> str:
        return urllib.parse.urlunsplit(self._endpoints[index])

    @property
    def current(self) -> int:
        """The index of the member requests go to now."""
        return self._current

    def member_failed(self, index: int) -> None:
        """Requests move on from member ``index`` to the next one."""
        if self._current == index:
            self._current = (index + 1) % len(self._endpoints)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                ctx = ssl.create_default_context(cafile=self._tls.ca_file)
            except OSError as exc:
                raise EtcdTLSError(f"etcd CA certificate {self._tls.ca_file}: {exc}") from exc
            if self._tls.cert_file:
                try:
                    ctx.load_cert_chain(self._tls.cert_file, self._tls.key_file)
                except OSError as exc:
                    raise EtcdTLSError(
                        f"etcd client certificate {self._tls.cert_file} "
                        f"(key {self._tls.key_file or 'in the same file'}): {exc}"
                    ) from exc
            self._ssl = ctx
        return self._ssl

    def open_socket(self, index: int, timeout: float) -> socket.socket:
        """A connected socket to member ``index`` (TLS done for https), reads timing out after
        ``timeout``. Raises OSError (ssl.SSLError for TLS)."""
        ep = self._endpoints[index]
        assert ep.hostname is not None
        ctx = self._ssl_context() if ep.scheme == "https" else None
        sock = socket.create_connection((ep.hostname, ep.port or 2379), self._connect_timeout)
        try:
            # http.client sends a request's head and body in two writes: without this, Nagle
            # holds the body for the server's delayed ACK (40 ms a request)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=ep.hostname)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def open_http(self, index: int, timeout: float) -> http.client.HTTPConnection:
        """A connected HTTP(S) connection to member ``index``. Raises OSError."""
        ep = self._endpoints[index]
        assert ep.hostname is not None
        conn: http.client.HTTPConnection
        if ep.scheme == "https":
            conn = http.client.HTTPSConnection(
                ep.hostname, ep.port or 2379, timeout=timeout, context=self._ssl_context()
            )
        else:
            conn = http.client.HTTPConnection(ep.hostname, ep.port or 2379, timeout=timeout)
        conn.sock = self.open_socket(index, timeout)
        return conn

    def describe(self, exc: OSError | http.client.HTTPException) -> str:
        """A failure to talk to a member, in words (TLS failures explained)."""
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return tls_problem(exc, self._tls)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    # ---- requests ---------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the current member, then to each next one. When every member failed but
        one of them answered "not now" (a leader election: about a second), go round again
        until ``timeout`` has passed; when none answered, fail at once."""
        data = json.dumps(body).encode()
        idempotent = _read_only(path, body)
        deadline = time.monotonic() + self._timeout
        pause = 0.05
        while True:
            problems: list[str] = []
            all_tls, answered = True, False
            for _ in range(len(self._endpoints)):
                index = self._current
                try:
                    return self._post_to(index, path, data, idempotent)
                except _MemberFailed as exc:
                    problems.append(f"{self.member_url(index)}: {exc}")
                    all_tls = all_tls and exc.tls
                    answered = answered or exc.answered
                    self.member_failed(index)
            if not answered or time.monotonic() + pause > deadline:
                kind = EtcdTLSError if all_tls else EtcdUnavailable
                raise kind(f"etcd unavailable: {'; '.join(problems)}")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _idle_conn(self, index: int) -> http.client.HTTPConnection | None:
        """The kept-alive connection to ``index``, unless the server has closed it meanwhile."""
        conn = self._conn
        if conn is None or self._conn_index != index or conn.sock is None:
            return None
        try:
            readable, _, _ = select.select([conn.sock], [], [], 0)
        except (OSError, ValueError):
            readable = [conn.sock]
        return None if readable else conn  # readable while idle: EOF (or junk) from the server

    def _post_to(self, index: int, path: str, data: bytes, idempotent: bool) -> dict[str, Any]:
        conn = self._idle_conn(index)
        fresh = conn is None
        if conn is None:
            self.close()
            try:
                conn = self.open_http(index, self._timeout)
            except OSError as exc:
                raise _MemberFailed(self.describe(exc), tls=isinstance(exc, ssl.SSLError)) from exc
            self._conn, self._conn_index = conn, index
        try:
            conn.request("POST", path, data, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            # TLS 1.3 reports a refused client certificate here, on a fresh connection
            if isinstance(exc, ssl.SSLError) and (fresh or not isinstance(exc, ssl.SSLEOFError)):
                raise _MemberFailed(self.describe(exc), tls=True) from exc
            if not idempotent:
                self.member_failed(index)
                raise EtcdUnavailable(
                    f"etcd {path} at {self.member_url(index)}: {self.describe(exc)}; "
                    "the change may or may not have been applied"
                ) from exc
            raise _MemberFailed(self.describe(exc)) from exc
        try:
            result: dict[str, Any] = json.loads(payload) if payload else {}
        except ValueError:
            result = {}
        if resp.status == 200:
            return result
        msg = str(result.get("message") or result.get("error") or payload.decode(errors="replace"))
        msg = msg.strip()
        if any(m in msg for m in _NOT_HERE) or (
            idempotent and any(m in msg for m in _READ_ELSEWHERE)
        ):
            raise _MemberFailed(msg, answered=True)
        if any(m in msg for m in _READ_ELSEWHERE):
            self.member_failed(index)
            raise EtcdUnavailable(
                f"etcd {path} at {self.member_url(index)}: {msg}; "
                "the change may or may not have been applied"
            )
        raise EtcdError(f"etcd {path}: {msg}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- KV -------------------------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        resp = self._post("/v3/kv/range", {"key": b64(key)})
        kvs = resp.get("kvs") or []
        return kv_from(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, *, revision: int = 0) -> tuple[list[KV], int]:
        """All keys under ``prefix`` (sorted by key) and the store revision they were read at."""
        body: dict[str, Any] = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
        if revision:
            body["revision"] = revision
        resp = self._post("/v3/kv/range", body)
        return [kv_from(d) for d in resp.get("kvs") or []], int(resp["header"]["revision"])

    def get_prefix_pages(
        self, prefix: str, *, revision: int = 0, limit: int = 500
    ) -> Iterator[tuple[list[KV], int]]:
        """The keys under ``prefix`` (sorted by key), ``limit`` per page, every page read at one
        revision: ``revision``, or the store's revision when the first page is read. Yields each
        page with that revision. A page's request fails with :class:`EtcdError` if the revision
        is compacted meanwhile."""
        key, end = prefix, prefix_end(prefix)
        while True:
            body: dict[str, Any] = {"key": b64(key), "range_end": b64(end), "limit": limit}
            if revision:
                body["revision"] = revision
            resp = self._post("/v3/kv/range", body)
            # with a revision asked for, the header's is the store's newest, not the one read at
            revision = revision or int(resp["header"]["revision"])
            kvs = [kv_from(d) for d in resp.get("kvs") or []]
            yield kvs, revision
            if not resp.get("more") or not kvs:
                return
            key = kvs[-1].key + "\0"

    def revision(self) -> int:
        resp = self._post("/v3/kv/range", {"key": b64("\0"), "limit": 1, "count_only": True})
        return int(resp["header"]["revision"])

    def member_status(self) -> MemberStatus:
        """The status of the member requests go to now (its id, its leader's id, revision)."""
        resp = self._post("/v3/maintenance/status", {})
        return MemberStatus(
            member_id=str(resp["header"]["member_id"]),
            leader=str(resp.get("leader", "")),
            revision=int(resp["header"].get("revision", 0)),
            version=str(resp.get("version", "")),
        )

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int:
        resp = self._post("/v3/kv/put", wire_op(op_put(key, value, lease=lease))["request_put"])
        return int(resp["header"]["revision"])

    def txn(
        self, compare: Sequence[Cmp], success: Sequence[Op], failure: Sequence[Op] | None = None
    ) -> TxnResult:
        """One multi-operation transaction: if every ``compare`` holds, run ``success``, else
        ``failure``; build them with :func:`cmp_mod`, :func:`cmp_absent`, :func:`op_get`,
        :func:`op_put`, :func:`op_delete`. ``responses[i]`` is the KVs read by the i-th operation
        of the branch that ran (empty for a put or delete), ``counts[i]`` its range's count."""
        body: dict[str, Any] = {
            "compare": [wire_cmp(c) for c in compare],
            "success": [wire_op(op) for op in success],
        }
        if failure:
            body["failure"] = [wire_op(op) for op in failure]
        return txn_result(self._post("/v3/kv/txn", body))

    def create(self, key: str, value: bytes | str, *, lease: int = 0) -> int | None:
        """Put ``key`` only if it does not exist. The new revision, or None if it existed."""
        res = self.txn([cmp_absent(key)], [op_put(key, value, lease=lease)])
        return res.revision if res.succeeded else None

    def update(self, key: str, value: bytes | str, mod_revision: int) -> int | None:
        """Compare-and-swap: put only if the key's mod revision is ``mod_revision``."""
        res = self.txn([cmp_mod(key, mod_revision)], [op_put(key, value)])
        return res.revision if res.succeeded else None

    def delete(self, key: str, *, mod_revision: int = 0) -> bool:
        """Delete ``key`` (only at ``mod_revision`` when given). True if something was deleted."""
        if mod_revision:
            return self.txn([cmp_mod(key, mod_revision)], [op_delete(key)]).succeeded
        resp = self._post("/v3/kv/deleterange", {"key": b64(key)})
        return int(resp.get("deleted", 0)) > 0

    def delete_prefix(self, prefix: str) -> int:
        resp = self._post(
            "/v3/kv/deleterange", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
        )
        return int(resp.get("deleted", 0))

    def compact(self, revision: int) -> None:
        self._post("/v3/kv/compaction", {"revision": revision, "physical": True})

    def lease_grant(self, ttl: int) -> int:
        resp = self._post("/v3/lease/grant", {"TTL": ttl})
        return int(resp["ID"])

    # ---- watch ----------------------------------------------------------------------------

    def watch(
        self,
        prefix: str,
        start_revision: int,
        *,
        range_end: str | None = None,
        probe_after: float = 10.0,
        probe_timeout: float = 5.0,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[WatchResponse]:
        """Yield the watch responses for keys under ``prefix`` (or from ``prefix`` up to
        ``range_end``) from ``start_revision`` on: event batches and progress notifications,
        each with the revision up to which everything has been delivered. Raises
        :class:`EtcdCompacted` when that revision is gone, and :class:`EtcdUnavailable` when the
        stream breaks or its member fails a liveness probe (sent after ``probe_after`` s of
        silence, answered within ``probe_timeout`` s); the caller resumes from its last
        revision, and the next watch goes to the next member. The watch ends (at its next read
        timeout) once ``stopped()`` is true."""
        from calico.datastore import etcd_watch  # lazy: short-lived processes never watch

        yield from etcd_watch.watch(
            self,
            prefix,
            start_revision,
            range_end=range_end or prefix_end(prefix),
            probe_after=probe_after,
            probe_timeout=probe_timeout,
            stopped=stopped,
        )

    def preflight(self, keys: Sequence[str]) -> None:
        """etcd holds any key: nothing to check before writing."""

    def sync_streams(self, prefixes: Sequence[str]) -> list[SyncStream]:
        """One stream: the prefixes listed at one revision, watched as one key range."""
        from calico.datastore.kv_stream import KVStream  # lazy: short-lived processes never sync

        return [KVStream(self, prefixes)]

    def watch_prefix(
        self, prefix: str, start_revision: int, *, probe_after: float = 10.0
    ) -> Iterator[list[WatchEvent]]:
        """Like :meth:`watch`, yielding only the event batches."""
        for resp in self.watch(prefix, start_revision, probe_after=probe_after):
            if resp.events:
                yield resp.events


__all__ = [
    "KV",
    "Cmp",
    "EtcdClient",
    "EtcdCompacted",
    "EtcdError",
    "EtcdTLSError",
    "EtcdUnavailable",
    "MemberStatus",
    "Op",
    "TLSFiles",
    "TxnResult",
    "WatchEvent",
    "WatchResponse",
    "cmp_absent",
    "cmp_mod",
    "op_delete",
    "op_get",
    "op_put",
    "parse_endpoints",
    "prefix_end",
]
