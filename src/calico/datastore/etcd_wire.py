"""What etcd v3's JSON gateway speaks: errors, records and request builders (no I/O here).

Keys and values are ``str``/``bytes`` in Python and base64 on the wire; revisions are ints (the
gateway sends int64s as strings). The records and transaction operations are the datastore
seam's (:mod:`calico.datastore.backend`); here they are put on the wire.
"""

from __future__ import annotations

import base64
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from calico.datastore.backend import (
    KV,
    Cmp,
    Compacted,
    Delete,
    Op,
    Put,
    StoreError,
    TxnResult,
    Unavailable,
    WatchEvent,
    prefix_end,
)


class EtcdError(StoreError):
    """etcd answered with an error."""


class EtcdUnavailable(EtcdError, Unavailable):
    """No endpoint could be reached (or the one that was stopped answering)."""


class EtcdTLSError(EtcdUnavailable):
    """A TLS problem between this client and etcd: certificate files, trust or client auth."""


class EtcdCompacted(EtcdError, Compacted):
    """A watch asked for a revision that etcd has compacted away."""

    def __init__(self, compact_revision: int) -> None:
        Compacted.__init__(self, compact_revision)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class MemberStatus:
    member_id: str
    leader: str
    revision: int
    version: str


def b64(s: str | bytes) -> str:
    raw = s.encode() if isinstance(s, str) else s
    return base64.b64encode(raw).decode()


def unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def kv_from(d: dict[str, Any]) -> KV:
    return KV(
        key=unb64(d["key"]).decode(),
        value=unb64(d.get("value")),
        mod_revision=int(d.get("mod_revision", 0)),
        create_revision=int(d.get("create_revision", 0)),
    )


def event_from(e: dict[str, Any]) -> WatchEvent:
    kv = kv_from(e["kv"])
    return WatchEvent(
        type=e.get("type", "PUT"), key=kv.key, value=kv.value, mod_revision=kv.mod_revision
    )


def txn_result(resp: dict[str, Any]) -> TxnResult:
    out: list[list[KV]] = []
    counts: list[int] = []
    for r in resp.get("responses") or []:
        rng = r.get("response_range") or {}
        out.append([kv_from(d) for d in rng.get("kvs") or []])
        counts.append(int(rng.get("count", 0)))
    return TxnResult(bool(resp.get("succeeded")), int(resp["header"]["revision"]), out, counts)


# ---- transactions on the wire -----------------------------------------------------------------


def wire_cmp(c: Cmp) -> dict[str, Any]:
    """A :class:`Cmp` as the gateway's compare: mod revision equal, or create revision 0."""
    if c.mod_revision:
        return {"key": b64(c.key), "target": "MOD", "result": "EQUAL",
                "mod_revision": str(c.mod_revision)}  # fmt: skip
    return {"key": b64(c.key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def wire_op(op: Op) -> dict[str, Any]:
    """A :class:`Get`, :class:`Put` or :class:`Delete` as the gateway's request operation."""
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": b64(op.key), "value": b64(op.value)}
        if op.lease:
            put["lease"] = op.lease
        return {"request_put": put}
    if isinstance(op, Delete):
        return {"request_delete_range": {"key": b64(op.key)}}
    rng: dict[str, Any] = {"key": b64(op.key)}
    if op.prefix:
        rng["range_end"] = b64(prefix_end(op.key))
    if op.keys_only:
        rng["keys_only"] = True
    if op.count_only:
        rng["count_only"] = True
    if op.min_mod_revision:
        rng["min_mod_revision"] = str(op.min_mod_revision)
    return {"request_range": rng}


# ---- endpoints and TLS, in words -------------------------------------------------------------


def tls_problem(exc: OSError, tls: TLSFiles) -> str:
    """What a TLS failure means for the user, naming the files involved."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        ca = tls.ca_file or "the system's CA certificates"
        why = getattr(exc, "verify_message", "") or text
        return f"TLS: the server's certificate is not trusted by {ca} ({why})"
    # TLS 1.3 checks the client's certificate after the handshake: the server answers the first
    # request with an alert, or just closes the connection (the EOF case)
    if "ALERT" in text.upper() or isinstance(exc, ssl.SSLEOFError):
        if not tls.cert_file:
            return (
                "TLS: the server refused this client: it requires a client certificate and none "
                f"is configured (ETCD_CERT_FILE and ETCD_KEY_FILE) ({text})"
            )
        return (
            f"TLS: the server refused the client certificate {tls.cert_file} (is it signed by "
            f"a CA the server trusts, for client auth?) ({text})"
        )
    if "WRONG_VERSION_NUMBER" in text:
        return f"TLS: the server did not answer in TLS (an http:// endpoint?) ({text})"
    return f"TLS: {text}"


def parse_endpoints(endpoints: list[str] | str) -> list[urllib.parse.SplitResult]:
    if isinstance(endpoints, str):
        endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
    if not endpoints:
        raise ValueError("etcd endpoints: at least one endpoint is required")
    parsed = [urllib.parse.urlsplit(e) for e in endpoints]
    for raw, ep in zip(endpoints, parsed, strict=True):
        try:
            ep.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"etcd endpoint {raw!r}: bad port") from None
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise ValueError(f"etcd endpoint {raw!r}: expected http(s)://host:port")
    return parsed
