"""Fetch one pod (labels, service account, named container ports) from the Kubernetes API server.

Stdlib only: one HTTPS GET of ``/api/v1/namespaces/<ns>/pods/<name>`` with the credentials of a
kubeconfig (server, certificate-authority[-data], client-certificate/key[-data], token[-file],
insecure-skip-tls-verify). A kubeconfig is YAML; since the plugin must not import a YAML library,
it is read as JSON when it is JSON, else with :func:`read_simple_yaml`, which understands the block
mappings, block sequences and scalars kubeconfigs are made of (not flow style beyond ``[]``/``{}``,
anchors or multi-line strings).

In the CNI server (:func:`api_for` with ``keep``) the kubeconfig is read, and the TLS context
built, once per kubeconfig file version, and connections are kept alive between calls; a plain
plugin process makes one connection for its one call.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import threading
import urllib.parse
from typing import Any


class K8sError(Exception):
    pass


# ---- a YAML subset for kubeconfig files ----------------------------------------------------------


def _scalar(text: str) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return json.loads(t) if t[0] == '"' else t[1:-1].replace("''", "'")
    if t in ("", "~", "null"):
        return None
    if t in ("true", "false"):
        return t == "true"
    if t == "[]":
        return []
    if t == "{}":
        return {}
    try:
        return int(t)
    except ValueError:
        return t


def _strip_comment(line: str) -> str:
    if "#" not in line or line.lstrip().startswith(("'", '"')):
        return line.rstrip()
    cut = line.find(" #")
    return (line[:cut] if cut >= 0 else ("" if line.lstrip().startswith("#") else line)).rstrip()


def read_simple_yaml(text: str) -> Any:
    lines = []
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if line.strip() and line.strip() not in ("---", "..."):
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
    value, _ = _block(lines, 0, lines[0][0] if lines else 0)
    return value


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if i >= len(lines):
        return None, i
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        out_list: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            rest = lines[i][1][1:].strip()
            if not rest:
                item, i = _block(lines, i + 1, lines[i + 1][0] if i + 1 < len(lines) else 0)
            elif ":" in rest and not rest.startswith(("'", '"')) and _is_key(rest):
                # "- key: value" starts a mapping whose keys sit at indent + 2
                sub = [(indent + 2, rest), *lines[i + 1 :]]
                item, j = _block(sub, 0, indent + 2)
                i = i + j
            else:
                item, i = _scalar(rest), i + 1
            out_list.append(item)
        return out_list, i
    out: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        key, _, rest = lines[i][1].partition(":")
        key = str(_scalar(key))
        if rest.strip():
            out[key] = _scalar(rest)
            i += 1
        elif i + 1 < len(lines) and (lines[i + 1][0] > indent or lines[i + 1][1].startswith("-")):
            out[key], i = _block(lines, i + 1, lines[i + 1][0])
        else:
            out[key], i = None, i + 1
    return out, i


def _is_key(text: str) -> bool:
    key, _, rest = text.partition(":")
    return bool(key) and (not rest or rest.startswith(" "))


# ---- kubeconfig → connection ---------------------------------------------------------------------


def _named(items: list[dict[str, Any]] | None, name: str | None, field: str) -> dict[str, Any]:
    for item in items or []:
        if name is None or item.get("name") == name:
            return dict(item.get(field) or {})
    raise K8sError(f"kubeconfig: no {field} named {name!r}")


def load_kubeconfig(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise K8sError(f"kubernetes.kubeconfig {path}: {exc}") from exc
    doc = json.loads(text) if text.lstrip().startswith("{") else read_simple_yaml(text)
    if not isinstance(doc, dict):
        raise K8sError(f"kubernetes.kubeconfig {path}: not a kubeconfig")
    ctx_name = doc.get("current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context") if doc.get("contexts") else {}
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster")
    user = _named(doc.get("users"), ctx.get("user"), "user") if doc.get("users") else {}
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str | None) -> str | None:
        return None if not p else (p if os.path.isabs(p) else os.path.join(base, p))

    return {
        "server": cluster.get("server"),
        "ca_file": rel(cluster.get("certificate-authority")),
        "ca_data": cluster.get("certificate-authority-data"),
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "cert_file": rel(user.get("client-certificate")),
        "cert_data": user.get("client-certificate-data"),
        "key_file": rel(user.get("client-key")),
        "key_data": user.get("client-key-data"),
        "token": user.get("token"),
        "token_file": rel(user.get("tokenFile")),
    }


def _ssl_context(cfg: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        cafile=cfg.get("ca_file"),
        cadata=base64.b64decode(cfg["ca_data"]).decode() if cfg.get("ca_data") else None,
    )
    if cfg.get("insecure"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = cfg.get("cert_file"), cfg.get("key_file")
    if cfg.get("cert_data") and cfg.get("key_data"):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            with open(cert, "wb") as f:
                f.write(base64.b64decode(cfg["cert_data"]))
            with open(key, "wb") as f:
                f.write(base64.b64decode(cfg["key_data"]))
            ctx.load_cert_chain(cert, key)
    elif cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class Api:
    """One API server: its TLS context (built once) and idle kept-alive connections.

    A call borrows a connection (``http.client`` connections are not thread-safe) and gives it
    back when the server keeps it open; a kept connection the server closed meanwhile is
    replaced once, transparently."""

    def __init__(self, cfg: dict[str, Any], *, timeout: float = 10.0) -> None:
        server = cfg.get("server")
        if not server:
            raise K8sError("kubernetes: no API server (kubeconfig cluster.server or k8s_api_root)")
        self.cfg = cfg
        self.server = str(server)
        self.url = urllib.parse.urlsplit(self.server)
        self.timeout = timeout
        self.ssl = _ssl_context(cfg) if self.url.scheme == "https" else None
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    def _connect(self) -> http.client.HTTPConnection:
        host, timeout = self.url.hostname or "", self.timeout
        if self.ssl is not None:
            return http.client.HTTPSConnection(host, self.url.port or 443, timeout=timeout,
                                               context=self.ssl)  # fmt: skip
        return http.client.HTTPConnection(host, self.url.port or 80, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.cfg.get("token")
        if not token and self.cfg.get("token_file"):
            with open(self.cfg["token_file"]) as f:  # re-read: projected tokens rotate
                token = f.read().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def get(self, path: str) -> tuple[int, bytes]:
        """(HTTP status, body) of ``GET path``; K8sError when the server cannot be reached."""
        headers = self._headers()
        full = f"{self.url.path.rstrip('/')}{path}"
        for attempt in (1, 2):
            with self._lock:
                conn, reused = (self._idle.pop(), True) if self._idle else (None, False)
            conn = conn or self._connect()
            try:
                conn.request("GET", full, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # the server closed a kept connection: once more, afresh
                raise K8sError(f"kubernetes API {self.server}: {exc}") from exc
            if resp.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
            return resp.status, body
        raise K8sError(f"kubernetes API {self.server}: no answer")  # not reached

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        """The pod object; K8sError when it cannot be fetched."""
        status, body = self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if status != 200:
            raise K8sError(
                f"kubernetes API: GET pod {namespace}/{name}: HTTP {status}: "
                f"{body[:200].decode(errors='replace')}"
            )
        pod: dict[str, Any] = json.loads(body)
        return pod


_apis: dict[tuple[str, ...], tuple[tuple[int, ...], Api]] = {}
_apis_lock = threading.Lock()


def api_for(*, kubeconfig: str | None, api_root: str | None, token: str | None, keep: bool) -> Api:
    """The API server a call's config names. ``keep`` (the CNI server): one :class:`Api` per
    kubeconfig path (or API root and token), kept while the kubeconfig file is unchanged (same
    inode, size and mtime), so calls reuse its TLS context and connections."""

    def load() -> Api:
        if kubeconfig:
            return Api(load_kubeconfig(kubeconfig))
        return Api({"server": api_root, "token": token})

    if not keep:
        return load()
    key = ("kubeconfig", kubeconfig) if kubeconfig else ("root", str(api_root), str(token))
    version: tuple[int, ...] = ()
    if kubeconfig:
        try:
            st = os.stat(kubeconfig)
        except OSError as exc:
            raise K8sError(f"kubernetes.kubeconfig {kubeconfig}: {exc}") from exc
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _apis_lock:
        known = _apis.get(key)
    if known is not None and known[0] == version:
        return known[1]
    api = load()
    with _apis_lock:
        old = _apis.get(key)
        _apis[key] = (version, api)
    if old is not None:
        old[1].close()  # the kubeconfig changed: its connections go with it
    return api


def get_pod(
    cfg: dict[str, Any], namespace: str, name: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The pod object over a connection of its own; K8sError when it cannot be fetched."""
    api = Api(cfg, timeout=timeout)
    try:
        return api.get_pod(namespace, name)
    finally:
        api.close()


def pod_info(pod: dict[str, Any]) -> tuple[dict[str, str], str, list[dict[str, Any]]]:
    """(labels, serviceAccountName, named ports [{name, protocol, port}]) of a pod object."""
    labels = dict((pod.get("metadata") or {}).get("labels") or {})
    spec = pod.get("spec") or {}
    sa = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    ports = []
    for container in spec.get("containers") or []:
        for p in container.get("ports") or []:
            if p.get("name") and p.get("containerPort"):
                ports.append(
                    {
                        "name": p["name"],
                        "protocol": p.get("protocol") or "TCP",
                        "port": int(p["containerPort"]),
                    }
                )
    return labels, sa, ports
