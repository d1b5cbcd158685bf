"""EtcdClient: a small stdlib client for etcd v3's JSON gateway (``/v3/...``).

One client for every process: the CNI plugin (import cost matters), the CLI, the controllers and the
agent. It speaks HTTP/1.1 to etcd's grpc-gateway, which etcd >= 3.4 serves on its client port:
range, put, delete, txn (compare-and-swap), lease, compaction and a streaming watch.

Keys and values are ``str``/``bytes`` here and base64 on the wire. Revisions are ints.
Failures raise :class:`EtcdError` (or :class:`EtcdUnavailable` when no endpoint answers), so callers
can tell "etcd said no" from "etcd is not there".
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class EtcdError(Exception):
    """etcd answered with an error."""


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached."""


class EtcdCompacted(EtcdError):
    """A watch asked for a revision that etcd has compacted away."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(
            f"required revision has been compacted (compact revision {compact_revision})"
        )
        self.compact_revision = compact_revision


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
    prev_value: bytes | None = None


def _b64(s: str | bytes) -> str:
    raw = s.encode() if isinstance(s, str) else s
    return base64.b64encode(raw).decode()


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1]).decode("latin-1")
    return "\0"


def _kv(d: dict[str, Any]) -> KV:
    return KV(
        key=_unb64(d["key"]).decode(),
        value=_unb64(d.get("value")),
        mod_revision=int(d.get("mod_revision", 0)),
        create_revision=int(d.get("create_revision", 0)),
    )


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[list[KV]]


def cmp_mod(key: str, mod_revision: int) -> dict[str, Any]:
    """Txn compare: ``key``'s mod revision is ``mod_revision``."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}


def cmp_absent(key: str) -> dict[str, Any]:
    """Txn compare: ``key`` does not exist."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def op_get(key: str, *, prefix: bool = False) -> dict[str, Any]:
    """Txn operation: read ``key`` (every key under it with ``prefix``)."""
    rng: dict[str, Any] = {"key": _b64(key)}
    if prefix:
        rng["range_end"] = _b64(prefix_end(key))
    return {"request_range": rng}


def op_put(key: str, value: bytes | str) -> dict[str, Any]:
    return {"request_put": {"key": _b64(key), "value": _b64(value)}}


def op_delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


@dataclass(frozen=True, slots=True)
class TLSFiles:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class EtcdClient:
    """Talks to one of ``endpoints`` (``http(s)://host:port``), failing over in order."""

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        tls: TLSFiles | None = None,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("etcd endpoints: at least one endpoint is required")
        self._endpoints = [urllib.parse.urlsplit(e) for e in endpoints]
        for raw, ep in zip(endpoints, self._endpoints, strict=True):
            if ep.scheme not in ("http", "https") or not ep.hostname:
                raise ValueError(f"etcd endpoint {raw!r}: expected http(s)://host:port")
        self._tls = tls or TLSFiles()
        self._timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._current = 0

    # ---- plumbing -------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self._tls.ca_file)
            if self._tls.cert_file:
                ctx.load_cert_chain(self._tls.cert_file, self._tls.key_file)
            self._ssl = ctx
        return self._ssl

    def _connect(self, index: int, timeout: float | None) -> http.client.HTTPConnection:
        ep = self._endpoints[index]
        port = ep.port or 2379
        assert ep.hostname is not None
        if ep.scheme == "https":
            return http.client.HTTPSConnection(
                ep.hostname, port, timeout=timeout, context=self._ssl_context()
            )
        return http.client.HTTPConnection(ep.hostname, port, timeout=timeout)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        last: Exception | None = None
        for attempt in range(len(self._endpoints) * 2):
            if self._conn is None:
                self._conn = self._connect(self._current, self._timeout)
            try:
                self._conn.request("POST", path, data, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                self._conn.close()
                self._conn = None
                if attempt % 2 == 1:
                    self._current = (self._current + 1) % len(self._endpoints)
                continue
            result: dict[str, Any] = json.loads(payload) if payload else {}
            if resp.status != 200:
                msg = (
                    result.get("message") or result.get("error") or payload.decode(errors="replace")
                )
                raise EtcdError(f"etcd {path}: {msg}")
            return result
        raise EtcdUnavailable(f"etcd unavailable at {self.endpoints_text()}: {last}")

    def endpoints_text(self) -> str:
        return ",".join(urllib.parse.urlunsplit(e) for e in self._endpoints)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- KV -------------------------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        resp = self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = resp.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, *, revision: int = 0) -> tuple[list[KV], int]:
        """All keys under ``prefix`` (sorted by key) and the store revision they were read at."""
        body: dict[str, Any] = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        if revision:
            body["revision"] = revision
        resp = self._post("/v3/kv/range", body)
        return [_kv(d) for d in resp.get("kvs") or []], int(resp["header"]["revision"])

    def revision(self) -> int:
        resp = self._post("/v3/kv/range", {"key": _b64("\0"), "limit": 1, "count_only": True})
        return int(resp["header"]["revision"])

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        resp = self._post("/v3/kv/put", body)
        return int(resp["header"]["revision"])

    def _txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]]
    ) -> tuple[bool, int]:
        resp = self._post("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(resp.get("succeeded")), int(resp["header"]["revision"])

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> TxnResult:
        """One multi-operation transaction: if every ``compare`` holds, run ``success``, else
        ``failure``; build them with :func:`cmp_mod`, :func:`cmp_absent`, :func:`op_get`,
        :func:`op_put`, :func:`op_delete`. ``responses[i]`` is the KVs read by the i-th operation
        of the branch that ran (empty for a put or delete)."""
        body: dict[str, Any] = {"compare": compare, "success": success}
        if failure:
            body["failure"] = failure
        resp = self._post("/v3/kv/txn", body)
        out: list[list[KV]] = []
        for r in resp.get("responses") or []:
            rng = r.get("response_range")
            out.append([_kv(d) for d in (rng or {}).get("kvs") or []])
        return TxnResult(bool(resp.get("succeeded")), int(resp["header"]["revision"]), out)

    def create(self, key: str, value: bytes | str, *, lease: int = 0) -> int | None:
        """Put ``key`` only if it does not exist. The new revision, or None if it existed."""
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = lease
        ok, rev = self._txn(
            [{"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            [{"request_put": put}],
        )
        return rev if ok else None

    def update(self, key: str, value: bytes | str, mod_revision: int) -> int | None:
        """Compare-and-swap: put only if the key's mod revision is ``mod_revision``."""
        ok, rev = self._txn(
            [
                {
                    "key": _b64(key),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": str(mod_revision),
                }
            ],
            [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
        )
        return rev if ok else None

    def delete(self, key: str, *, mod_revision: int = 0) -> bool:
        """Delete ``key`` (only at ``mod_revision`` when given). True if something was deleted."""
        if mod_revision:
            ok, _ = self._txn(
                [
                    {
                        "key": _b64(key),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(mod_revision),
                    }
                ],
                [{"request_delete_range": {"key": _b64(key)}}],
            )
            return ok
        resp = self._post("/v3/kv/deleterange", {"key": _b64(key)})
        return int(resp.get("deleted", 0)) > 0

    def delete_prefix(self, prefix: str) -> int:
        resp = self._post(
            "/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        )
        return int(resp.get("deleted", 0))

    def compact(self, revision: int) -> None:
        self._post("/v3/kv/compaction", {"revision": revision, "physical": True})

    def lease_grant(self, ttl: int) -> int:
        resp = self._post("/v3/lease/grant", {"TTL": ttl})
        return int(resp["ID"])

    # ---- watch ----------------------------------------------------------------------------

    def watch_prefix(
        self, prefix: str, start_revision: int, *, idle_timeout: float = 30.0
    ) -> Iterator[list[WatchEvent]]:
        """Yield batches of events under ``prefix`` from ``start_revision`` on.

        Raises :class:`EtcdCompacted` when the revision is gone and :class:`EtcdUnavailable`
        when the stream breaks (etcd stopped, network gone) or stays silent for ``idle_timeout``
        + 10 s; the caller resumes from its last revision. The watch asks for progress
        notifications, which etcd sends at its ``--experimental-watch-progress-notify-interval``
        (EtcdServer sets 5 s), so a healthy idle stream is not mistaken for a dead one.
        """
        conn = self._connect(self._current, idle_timeout + 10)
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": start_revision,
                "progress_notify": True,
                "prev_kv": True,
            }
        }
        try:
            conn.request(
                "POST", "/v3/watch", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise EtcdError(f"etcd watch: HTTP {resp.status}: {resp.read()!r}")
            while True:
                line = resp.readline()
                if not line:
                    raise EtcdUnavailable("etcd watch stream closed")
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise EtcdUnavailable(f"etcd watch error: {msg['error']}")
                result = msg.get("result", {})
                compact = int(result.get("compact_revision", 0) or 0)
                if compact:
                    raise EtcdCompacted(compact)
                if result.get("canceled"):
                    raise EtcdUnavailable(f"etcd watch canceled: {result.get('cancel_reason')}")
                events = [self._event(e) for e in result.get("events") or []]
                if events:
                    yield events
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise EtcdUnavailable(f"etcd watch failed: {exc}") from exc
        finally:
            conn.close()

    @staticmethod
    def _event(e: dict[str, Any]) -> WatchEvent:
        kv = _kv(e["kv"])
        prev = e.get("prev_kv")
        return WatchEvent(
            type=e.get("type", "PUT"),
            key=kv.key,
            value=kv.value,
            mod_revision=kv.mod_revision,
            prev_value=_unb64(prev.get("value")) if prev else None,
        )


def wait_ready(client: EtcdClient, timeout: float = 10.0) -> None:
    """Block until etcd answers, or raise EtcdUnavailable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.revision()
            return
        except EtcdUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
