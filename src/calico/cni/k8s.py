"""Fetch one pod (labels, service account, named container ports) from the Kubernetes API server.

Stdlib only: one HTTPS GET of ``/api/v1/namespaces/<ns>/pods/<name>`` with the credentials of a
kubeconfig (server, certificate-authority[-data], client-certificate/key[-data], token[-file],
insecure-skip-tls-verify). The kubeconfig is read with the standard library
(:mod:`calico.lib.kubeconfig`: the plugin must not import a YAML library).

In the CNI server (:func:`api_for` with ``keep``) the kubeconfig is read, and the TLS context
built, once per kubeconfig file version, and connections are kept alive between calls; a plain
plugin process makes one connection for its one call.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse
from typing import Any

from calico.lib.kubeconfig import KubeconfigError as K8sError
from calico.lib.kubeconfig import load_kubeconfig, read_simple_yaml
from calico.lib.kubeconfig import ssl_context as _ssl_context

__all__ = ["Api", "K8sError", "api_for", "get_pod", "load_kubeconfig", "pod_info",
           "read_simple_yaml"]  # fmt: skip


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
