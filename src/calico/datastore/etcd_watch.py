"""The etcd watch stream: one watch on one member, read off a raw socket, noticing a dead member.

etcd's JSON gateway serves a watch as one long HTTP/1.1 response of JSON lines. A quiet watch is
legitimately silent for hours: etcd sends progress notifications only every 10 minutes by default
(``--experimental-watch-progress-notify-interval``), and a client cannot ask for one here (the
gateway's HTTP/1.1 is not full duplex: it reads no more of the request once it has answered, and
its websocket form drops messages over 64 KiB in etcd 3.4). So silence alone proves nothing.
Instead the stream is read with a timeout, ``probe_after``; when it expires, a liveness probe (a
linearizable one-key read on a second, kept-alive connection to the same member) must answer
within ``probe_timeout`` or the watch is declared dead. TCP keepalive on the stream's socket
(same idle time, 3 probes ``probe_timeout``/3 apart) catches a stream whose own connection died
while the member still answers. A dead watch is thus noticed within ``probe_after`` +
``probe_timeout`` (15 s by default) and a healthy quiet one is never reopened.

The watch asks etcd to cancel it when its member loses the leader (``hasleader`` metadata, sent
as the gateway's ``Grpc-Metadata-`` header), so a member cut off from the cluster ends its watches
within a few election timeouts instead of serving a stale, silent stream.

A stream carries one watch (one key range): several create requests sent together in the body
are not reliably taken, as the gateway reads all but the first of them while it already streams
its answer, and Go's HTTP/1.1 server discards the unread rest of a body once an answer starts
(tried with etcd 3.4.23 and 12 creates: now and then only the first one or two watches were
created, the others never answered).

The socket is read here rather than through http.client because a read that times out must leave
a half-received chunk intact.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from calico.datastore.backend import WatchResponse
from calico.datastore.etcd_wire import (
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    b64,
    event_from,
)

if TYPE_CHECKING:
    from calico.datastore.etcd import EtcdClient

MAX_HEAD = 64 * 1024


class _StartFailed(Exception):
    """The member did not take the watch; another member may."""


class _Stopped(Exception):
    """The caller asked the watch to end."""


class _Body:
    """Decodes an HTTP/1.1 body (chunked, or up to the end of the connection) fed in pieces and
    hands out its complete lines."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.done = False
        self._raw = bytearray()
        self._text = bytearray()
        self._left = -1  # chunked: -1 = a size line is next, 0 = the CRLF after a chunk

    def feed(self, data: bytes) -> None:
        if not self.chunked:
            self._text += data
            return
        self._raw += data
        while not self.done:
            if self._left < 0:
                end = self._raw.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self._raw[:end]).split(b";")[0].strip() or b"0", 16)
                del self._raw[: end + 2]
                self._left = size
                self.done = size == 0
            elif self._left == 0:
                if len(self._raw) < 2:
                    return
                del self._raw[:2]
                self._left = -1
            else:
                take = bytes(self._raw[: self._left])
                if not take:
                    return
                del self._raw[: len(take)]
                self._text += take
                self._left -= len(take)

    def line(self) -> bytes | None:
        end = self._text.find(b"\n")
        if end < 0:
            return None
        out = bytes(self._text[:end])
        del self._text[: end + 1]
        return out

    def rest(self) -> bytes:
        return bytes(self._text)


class WatchStream:
    """One watch request on member ``index`` of ``client``."""

    def __init__(
        self,
        client: EtcdClient,
        index: int,
        request: dict[str, Any],
        *,
        probe_key: str,
        probe_after: float,
        probe_timeout: float,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self._client = client
        self._stopped = stopped
        self._index = index
        self.url = client.member_url(index)
        self._request = json.dumps(request).encode()
        self._probe_body = json.dumps({"key": b64(probe_key), "count_only": True}).encode()
        self._probe_after = probe_after
        self._probe_timeout = probe_timeout
        self._sock: socket.socket | None = None
        self._http: http.client.HTTPConnection | None = None
        self._body = _Body(chunked=True)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, send the watch request and read up to etcd's "created" answer."""
        try:
            self._sock = self._client.open_socket(self._index, self._probe_timeout)
            self._keepalive(self._sock)
            self._sock.sendall(self._head() + self._request)
            status, headers, rest = self._read_head()
        except OSError as exc:
            raise _StartFailed(self._client.describe(exc)) from exc
        except EtcdUnavailable as exc:
            raise _StartFailed(str(exc)) from exc
        self._body = _Body(chunked="chunked" in headers.get("transfer-encoding", "").lower())
        self._body.feed(rest)
        if status != 200:
            self._refused(status, headers)
        try:
            first = self._message(self._next_line(probe=False))
        except EtcdUnavailable as exc:
            raise _StartFailed(str(exc)) from exc
        if first is not None:
            raise _StartFailed(f"expected the watch to be created first, got {first}")
        self._sock.settimeout(self._probe_after)

    def close(self) -> None:
        for c in (self._sock, self._http):
            if c is not None:
                c.close()
        self._sock = self._http = None

    def responses(self) -> Iterator[WatchResponse]:
        while True:
            resp = self._message(self._next_line(probe=True))
            if resp is not None:
                yield resp

    # ---- HTTP -------------------------------------------------------------------------------

    def _head(self) -> bytes:
        host = self.url.split("://", 1)[1].rstrip("/")
        return (
            f"POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self._request)}\r\nGrpc-Metadata-hasleader: true\r\n\r\n"
        ).encode()

    def _read_head(self) -> tuple[int, dict[str, str], bytes]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD:
                raise _StartFailed("the watch response's header is too long")
            buf += self._recv(probe=False)
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise _StartFailed(f"not an HTTP answer: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers, rest

    def _refused(self, status: int, headers: dict[str, str]) -> None:
        """A non-200 answer: read what etcd said (bounded) and raise it."""
        want = int(headers.get("content-length", "-1"))
        try:
            while not self._body.done and len(self._body.rest()) != want:
                self._body.feed(self._recv(probe=False))
        except EtcdUnavailable:
            pass  # a closed connection ends a body without a length
        text = self._body.rest().decode(errors="replace").strip()
        try:
            text = str(json.loads(text).get("message") or text)
        except (ValueError, AttributeError):
            pass
        if status >= 500:
            raise _StartFailed(f"HTTP {status}: {text}")
        raise EtcdError(f"etcd watch at {self.url}: HTTP {status}: {text}")

    def _keepalive(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(self._probe_after)))
            interval = max(1, int(self._probe_timeout / 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)

    def _recv(self, *, probe: bool) -> bytes:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                if not probe:
                    raise EtcdUnavailable(
                        f"etcd at {self.url} did not answer the watch within "
                        f"{self._probe_timeout:g}s"
                    ) from None
                if self._stopped():
                    raise _Stopped from None
                self._probe()
                continue
            except OSError as exc:
                raise EtcdUnavailable(
                    f"etcd watch stream from {self.url} broke: {self._client.describe(exc)}"
                ) from exc
            if not data:
                raise EtcdUnavailable(f"etcd watch stream from {self.url} was closed")
            return data

    def _next_line(self, *, probe: bool) -> bytes:
        while True:
            line = self._body.line()
            if line is not None:
                if line.strip():
                    return line
                continue
            if self._body.done:
                raise EtcdUnavailable(f"etcd watch stream from {self.url} ended")
            self._body.feed(self._recv(probe=probe))

    def _probe(self) -> None:
        """Ask the member something cheap that needs a working cluster behind it."""
        self._client.probes += 1
        try:
            if self._http is None or self._http.sock is None:
                self._http = self._client.open_http(self._index, self._probe_timeout)
            self._http.request(
                "POST", "/v3/kv/range", self._probe_body, {"Content-Type": "application/json"}
            )
            resp = self._http.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if self._http is not None:
                self._http.close()
                self._http = None
            why = self._client.describe(exc)
            raise EtcdUnavailable(
                f"etcd at {self.url} did not answer a liveness probe within "
                f"{self._probe_timeout:g}s ({why}): the watch is treated as dead"
            ) from exc
        if resp.status != 200:
            raise EtcdUnavailable(
                f"etcd at {self.url} failed a liveness probe: HTTP {resp.status}: "
                f"{payload[:200].decode(errors='replace')}"
            )

    # ---- messages ---------------------------------------------------------------------------

    def _message(self, line: bytes) -> WatchResponse | None:
        """The WatchResponse in one line (None for "created"); raises for errors/cancels."""
        try:
            msg = json.loads(line)
        except ValueError:
            raise EtcdUnavailable(
                f"etcd watch from {self.url}: garbled line {line[:80]!r}"
            ) from None
        if "error" in msg:
            err = msg["error"]
            text = err.get("message", err) if isinstance(err, dict) else err
            raise EtcdUnavailable(f"etcd watch at {self.url} failed: {text}")
        result = msg.get("result") or {}
        compact = int(result.get("compact_revision") or 0)
        if compact:
            raise EtcdCompacted(compact)
        if result.get("canceled"):
            why = result.get("cancel_reason") or "no reason given"
            raise EtcdUnavailable(f"etcd watch at {self.url} canceled: {why}")
        if result.get("created"):
            return None
        events = [event_from(e) for e in result.get("events") or []]
        if events:
            # Only the events' own revisions count: in etcd 3.4 a catch-up batch cut short
            # (more than 1000 revisions) or a slow watcher's retried batch carries a header
            # revision beyond the events it holds.
            return WatchResponse(events, max(e.mod_revision for e in events))
        # A progress notification: sent only to a watcher that has been sent everything up to
        # the header's revision, through the same channel as its events.
        return WatchResponse([], int((result.get("header") or {}).get("revision") or 0))


def watch(
    client: EtcdClient,
    prefix: str,
    start_revision: int,
    *,
    range_end: str,
    probe_after: float,
    probe_timeout: float,
    stopped: Callable[[], bool],
) -> Iterator[WatchResponse]:
    """Watch the keys from ``prefix`` up to ``range_end`` from ``start_revision`` on the
    client's current member, moving on to the next member if it does not take the watch; see
    :meth:`EtcdClient.watch`."""
    request = {
        "create_request": {
            "key": b64(prefix),
            "range_end": b64(range_end),
            "start_revision": start_revision,
            "progress_notify": True,
        }
    }
    problems: list[str] = []
    for _ in range(len(client.endpoints)):
        index = client.current
        stream = WatchStream(
            client,
            index,
            request,
            probe_key=prefix,
            probe_after=probe_after,
            probe_timeout=probe_timeout,
            stopped=stopped,
        )
        try:
            stream.start()
        except _StartFailed as exc:
            stream.close()
            problems.append(f"{stream.url}: {exc}")
            client.member_failed(index)
            continue
        except BaseException:
            stream.close()
            raise
        break
    else:
        raise EtcdUnavailable(f"etcd watch: no member took it: {'; '.join(problems)}")
    client.watches_opened += 1
    try:
        yield from stream.responses()
    except _Stopped:
        return
    except EtcdUnavailable:
        client.member_failed(index)
        raise
    finally:
        stream.close()


__all__ = ["WatchStream", "watch"]
