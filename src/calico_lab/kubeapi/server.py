"""FakeKube: a small Kubernetes API server: the lab's stand-in, the tests' and benchmarks' fake.

Listens on 127.0.0.1 unless given another host (the lab: its core namespace's address). Serves the
REST paths of Pods, Namespaces, ServiceAccounts, Nodes, Events (core/v1), Leases
(coordination.k8s.io/v1), NetworkPolicies (networking.k8s.io/v1), CustomResourceDefinitions
(apiextensions.k8s.io/v1) and Calico's custom resources (crd.projectcalico.org/v1, while their CRD
exists; 404 otherwise, as the real server): get, list (with ``limit``/``continue`` pages), create,
update (PUT, with resourceVersion conflicts), merge/strategic patch (a ``metadata.resourceVersion``
in it is a precondition), delete (``preconditions.resourceVersion``), the pods' ``binding``
subresource (POST a Binding, as kube-scheduler does: sets ``spec.nodeName``; 409 when already
bound), and watch (``?watch=true``) with ``resourceVersion``, ``timeoutSeconds``,
``allowWatchBookmarks`` (BOOKMARK events every ``bookmark_interval`` seconds and on
:meth:`send_bookmarks`) and 410 Gone (an ERROR event) for a resourceVersion older than the last
:meth:`compact`. Test hooks: :meth:`drop_watches` cuts every watch connection mid-stream,
:meth:`silence_watches` leaves every open watch connected but silent (no events, no bookmarks, no
end), :meth:`stop` / :meth:`start` take the server away and back on the same port. Plain HTTP, or
HTTPS with a throwaway CA (``tls=True``); optional bearer token; :attr:`FakeKube.forbidden` answers
chosen (verb, resource) pairs 403 as RBAC would. A list with ``resourceVersionMatch=Exact`` is
served when nothing of that resource changed since (410 otherwise; no history is kept).

Drive it in-process (``fake.create("pods", obj)``) or over HTTP with any client.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from calico_lab.kubeapi import tls
from calico_lab.kubeapi.store import (
    GROUP_VERSIONS,
    RESOURCES,
    ApiError,
    Obj,
    Store,
    WatchEvent,
    resource_id,
)

GROUP_PATHS = {("api", "v1"): "", ("apis", "networking.k8s.io/v1"): "networking.k8s.io"}


SUBRESOURCES = {("pods", "binding")}


def _parse_path(path: str) -> tuple[str, str | None, str | None, str | None]:
    """(plural, namespace, name, subresource) for a resource path, else ApiError 404."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis" and f"{parts[1]}/{parts[2]}" in GROUP_VERSIONS:
        group, rest = parts[1], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")
    ns: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    sub = rest[2] if len(rest) == 3 else None
    rid = resource_id(group, rest[0]) if rest else ""
    if (
        not rest
        or len(rest) > 3
        or (sub is not None and (rest[0], sub) not in SUBRESOURCES)
        or rid not in RESOURCES
        or RESOURCES[rid].group != group
    ):
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")
    if ns is not None and not RESOURCES[rid].namespaced:
        raise ApiError(404, "NotFound", f"{rest[0]} is not namespaced")
    return rid, ns, rest[1] if len(rest) >= 2 else None, sub


def _verb(method: str, name: str | None, query: dict[str, str]) -> str:
    if method == "GET":
        return "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]


def _watch_start(store: Store, plural: str, ns: str | None, rv_text: str) -> tuple[list[Obj], int]:
    """(the events a new watch sends first, the resourceVersion it follows from; -1 when it
    ends at once). From "" or "0": every object as ADDED, then what follows the list's version;
    from a version older than the last compaction: one ERROR event (410 Gone). Called holding
    ``store.cond``."""
    if rv_text in ("", "0"):
        items, rv = store.list_items(plural, ns)
        return [{"type": "ADDED", "object": o} for o in items], rv
    rv = int(rv_text)
    if rv < store.compacted_rv:
        status = ApiError(
            410, "Expired", f"too old resource version: {rv} ({store.compacted_rv})"
        ).status()
        return [{"type": "ERROR", "object": status}], -1
    return [], rv


def _events_since(store: Store, plural: str, ns: str | None, rv: int) -> list[WatchEvent]:
    """The events after ``rv`` of ``plural`` (in namespace ``ns``, or all). Holding store.cond."""
    return [
        e
        for e in store.events_since(plural, rv)
        if ns is None or e.obj["metadata"].get("namespace") == ns
    ]


def _bookmark(kind: str, api_version: str, rv: int) -> Obj:
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(rv)},
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- plumbing ----------------------------------------------------------------------------

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(400, "BadRequest", "request body is not JSON") from None

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        try:
            # Read the body first: an error answer must not leave it unread (keep-alive).
            body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
            if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            plural, ns, name, sub = _parse_path(url.path)
            fake.requests.append((method, url.path, query.get("watch", "")))
            if plural in fake.store.not_served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            verb = _verb(method, name, query)
            if (verb, plural) in fake.forbidden or ("*", plural) in fake.forbidden:
                rt = RESOURCES[plural]
                raise ApiError(403, "Forbidden", f'{rt.plural}{"." + rt.group if rt.group else ""}'
                               f' is forbidden: User "lab" cannot {verb} resource "{rt.plural}" '
                               f'in API group "{rt.group}"')  # fmt: skip
            if sub == "binding":
                if method != "POST" or name is None or ns is None:
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a Binding must be a JSON object")
                return self._send(201, fake.bind(ns, name, body))
            if method == "GET" and query.get("watch") in ("true", "1"):
                return self._watch(plural, ns, query)
            code, body = fake.handle(
                method,
                plural,
                ns,
                name,
                query,
                body,
                self.headers.get("Content-Type", ""),
            )
            self._send(code, body)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- watch -------------------------------------------------------------------------------

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, plural: str, ns: str | None, query: dict[str, str]) -> None:
        fake, store, rt = self.server.fake, self.server.fake.store, RESOURCES[plural]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 0) or None
        started = time.monotonic()
        with store.cond:
            generation, epoch = store.generation, fake.epoch
            pending, rv = _watch_start(store, plural, ns, query.get("resourceVersion", ""))
        fake.watches_opened += 1
        silence = fake.silence_seq
        last_bookmark = time.monotonic()
        seen_bookmark = fake.bookmark_seq
        try:
            for ev in pending:
                self._chunk(ev)
            while rv >= 0:
                with store.cond:
                    events = _events_since(store, plural, ns, rv)
                    if not events and store.generation == generation and fake.epoch == epoch:
                        store.cond.wait(0.05)
                        events = _events_since(store, plural, ns, rv)
                    dropped = store.generation != generation or fake.epoch != epoch
                    silenced = fake.silence_seq != silence
                    current_rv, force_bookmark = store.rv, fake.bookmark_seq
                if silenced:
                    self._hang(epoch)
                    return
                if dropped:
                    self._abort()
                    return
                for e in events:
                    self._chunk({"type": e.type, "object": e.obj})
                    rv = e.rv
                now = time.monotonic()
                if bookmarks and (
                    force_bookmark != seen_bookmark or now - last_bookmark >= fake.bookmark_interval
                ):
                    seen_bookmark = force_bookmark
                    rv = max(rv, current_rv)
                    self._chunk(_bookmark(rt.kind, rt.api_version, rv))
                    fake.bookmarks_sent += 1
                    last_bookmark = now
                if timeout and now - started >= timeout:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _hang(self, epoch: int) -> None:
        """Send nothing more, end nothing, ignore timeoutSeconds: the connection stays open and
        silent (a wedged server or proxy) until the fake stops."""
        fake = self.server.fake
        while fake.epoch == epoch:
            time.sleep(0.05)
        self._abort()

    def _abort(self) -> None:
        """Cut the connection mid-stream (no terminating chunk): the client sees a broken read."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeKube, port: int) -> None:
        self.fake = fake
        super().__init__((fake.host, port), _Handler)


class FakeKube:
    def __init__(
        self,
        *,
        tls_dir: Path | None = None,
        token: str | None = None,
        bookmark_interval: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = Store()
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.bookmark_seq = 0
        self.silence_seq = 0
        self.tls_files = tls.make_test_ca(tls_dir) if tls_dir is not None else None
        self.requests: list[tuple[str, str, str]] = []
        self.watches_opened = 0
        self.bookmarks_sent = 0
        # Bumped by stop(): a watch opened before it is cut even when it only gets to run after
        # the next start() (a stopping flag, reset by start(), lost that race on a loaded machine).
        self.epoch = 0
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pages: dict[str, tuple[list[Obj], int]] = {}
        self.host = host
        # (verb, resource) answered 403 Forbidden, as RBAC would ("*": every verb)
        self.forbidden: set[tuple[str, str]] = set()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_files else 'http'}://{self.host}:{self.port}"

    def start(self) -> FakeKube:
        self._server = _Server(self, self.port)
        if self.tls_files:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_files.cert, self.tls_files.key)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="fakekube",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (same port on the next start); open watches are cut."""
        with self.store.cond:
            self.epoch += 1
            self.store.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls_files:
            cluster["certificate-authority"] = str(self.tls_files.ca)
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }
        path.write_text(json.dumps(config, indent=1))
        return path

    # ---- test hooks --------------------------------------------------------------------------

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream."""
        with self.store.cond:
            self.store.generation += 1
            self.store.cond.notify_all()

    def silence_watches(self) -> None:
        """Every watch open now goes silent without closing (no events, no bookmarks, no end,
        whatever its timeoutSeconds); watches opened later are served normally."""
        with self.store.cond:
            self.silence_seq += 1
            self.store.cond.notify_all()

    def send_bookmarks(self) -> None:
        with self.store.cond:
            self.bookmark_seq += 1
            self.store.cond.notify_all()

    def compact(self) -> int:
        return self.store.compact()

    def watch_count(self, plural: str) -> int:
        return sum(1 for m, p, w in self.requests if m == "GET" and w and p.endswith("/" + plural))

    def list_count(self, plural: str) -> int:
        return sum(
            1 for m, p, w in self.requests if m == "GET" and not w and p.endswith("/" + plural)
        )

    # ---- in-process API (same semantics as HTTP) ---------------------------------------------

    def create(self, plural: str, obj: Obj) -> Obj:
        return self.store.create(plural, obj)

    def update(self, plural: str, obj: Obj) -> Obj:
        return self.store.update(plural, obj)

    def patch(self, plural: str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        return self.store.patch(plural, namespace, name, patch)

    def delete(self, plural: str, name: str, namespace: str | None = None) -> Obj:
        return self.store.delete(plural, namespace, name)

    def get(self, plural: str, name: str, namespace: str | None = None) -> Obj:
        return self.store.get(plural, namespace or "", name)

    def bind(self, namespace: str, name: str, binding: Obj) -> Obj:
        """POST pods/NAME/binding: a Status (201) once ``spec.nodeName`` is set."""
        self.store.bind(namespace, name, binding)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    def bindings(self) -> list[str]:
        """Paths of every binding POSTed over HTTP so far."""
        return [p for m, p, _ in self.requests if m == "POST" and p.endswith("/binding")]

    def list(self, plural: str, namespace: str | None = None) -> list[Obj]:
        return self.store.list_items(plural, namespace)[0]

    # ---- HTTP verbs --------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        plural: str,
        ns: str | None,
        name: str | None,
        query: dict[str, str],
        body: Any,
        content_type: str,
    ) -> tuple[int, Any]:
        rt = RESOURCES[plural]
        if method == "GET" and name:
            return 200, self.store.get(plural, ns or "", name)
        if method == "GET":
            return 200, self._list_page(plural, ns, query)
        if method == "POST" and not name and query.get("dryRun"):
            return 201, body  # checked (served, permitted), not stored
        if method == "POST" and not name:
            return 201, self.store.create(plural, body, ns)
        if method == "PUT" and name:
            if body.get("metadata", {}).get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match")
            body.setdefault("metadata", {})["name"] = name
            return 200, self.store.update(plural, body, ns)
        if method == "PATCH" and name:
            if "json-patch" in content_type or "apply-patch" in content_type:
                raise ApiError(415, "UnsupportedMediaType", f"{content_type} is not supported")
            return 200, self.store.patch(plural, ns, name, body)
        if method == "DELETE" and name:
            pre = (body or {}).get("preconditions") or {}
            self.store.delete(plural, ns, name, pre.get("resourceVersion"))
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Success",
                "details": {"name": name, "kind": rt.plural},
            }
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _list_page(self, plural: str, ns: str | None, query: dict[str, str]) -> Obj:
        rt = RESOURCES[plural]
        token = query.get("continue")
        if token:
            if token not in self._pages:
                raise ApiError(410, "Expired", "the provided continue parameter is too old")
            items, rv = self._pages.pop(token)
        else:
            items, rv = self.store.list_items(plural, ns)
            want = int(query.get("resourceVersion") or 0)
            if query.get("resourceVersionMatch") == "Exact" and want and want != rv:
                if want > rv:
                    raise ApiError(504, "Timeout", f"Too large resource version: {want}, "
                                   f"current: {rv}")  # fmt: skip
                if self.store.events_since(plural, want) or want < self.store.compacted_rv:
                    raise ApiError(410, "Expired", f"too old resource version: {want}")
                rv = want  # nothing of this resource changed since: the list is the same
        limit = int(query.get("limit") or 0)
        meta: Obj = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            rest = items[limit:]
            items = items[:limit]
            next_token = f"{plural}-{rv}-{len(self._pages)}-{time.monotonic_ns()}"
            self._pages[next_token] = (rest, rv)
            meta["continue"] = next_token
        return {
            "kind": rt.kind + "List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }
