"""KubeApi: a small Kubernetes API client for the Kubernetes datastore (standard library only).

Where the API server is and who we are, as Calico decides it (:func:`access`): a kubeconfig
(``KUBECONFIG`` / calicoctl.cfg ``kubeconfig``), else ``K8S_API_ENDPOINT`` with ``K8S_API_TOKEN``,
``K8S_CA_FILE``, ``K8S_CERT_FILE``, ``K8S_KEY_FILE``, ``K8S_INSECURE_SKIP_TLS_VERIFY``, else the
in-cluster service account (``KUBERNETES_SERVICE_HOST``/``_PORT`` and the token and CA under
``/var/run/secrets/kubernetes.io/serviceaccount``). The CNI plugin opens this client too, so no
YAML library: kubeconfigs are read by :mod:`calico.lib.kubeconfig`.

:meth:`KubeApi.request` is one JSON request on a kept-alive connection (not thread-safe: one
client per thread, like the etcd client); :meth:`KubeApi.watch` a watch stream on a connection of
its own. Answers that retrying will not fix become :class:`~calico.datastore.backend.Refused`
naming what is missing (401: the credentials; 403: the RBAC permission; 404 on a collection: the
resource type, for a Calico kind its CustomResourceDefinition); an unreachable server or a 5xx is
:class:`~calico.datastore.backend.Unavailable`.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.backend import Refused, StoreError, Unavailable
from calico.lib.kubeconfig import KubeconfigError, load_kubeconfig, ssl_context

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class Access:
    """An API server and credentials (the fields :func:`calico.lib.kubeconfig.load_kubeconfig`
    gives) and where they came from, for messages."""

    cfg: dict[str, Any] = field(hash=False)
    source: str

    @property
    def server(self) -> str:
        return str(self.cfg.get("server") or "")


def access(
    *, kubeconfig: str | None = None, endpoint: str | None = None,
    env: Mapping[str, str] | None = None, settings: Mapping[str, Any] | None = None,
) -> Access:  # fmt: skip
    """Calico's order: a kubeconfig, else an API endpoint (+ token / TLS files), else in-cluster.
    ``settings`` holds calicoctl.cfg's ``k8s*`` fields; the environment wins over it."""
    env = os.environ if env is None else env
    s = settings or {}
    kubeconfig = kubeconfig or env.get("KUBECONFIG") or s.get("kubeconfig")
    if kubeconfig:
        path = str(kubeconfig).split(os.pathsep)[0]
        try:
            return Access(load_kubeconfig(path), f"kubeconfig {path}")
        except KubeconfigError as exc:
            raise Refused(str(exc).replace("kubernetes.kubeconfig", "kubeconfig")) from None
    endpoint = endpoint or env.get("K8S_API_ENDPOINT") or s.get("k8sAPIEndpoint")
    if endpoint:
        return Access(
            {
                "server": endpoint,
                "token": env.get("K8S_API_TOKEN") or s.get("k8sAPIToken"),
                "ca_file": env.get("K8S_CA_FILE") or s.get("k8sCAFile"),
                "cert_file": env.get("K8S_CERT_FILE") or s.get("k8sCertFile"),
                "key_file": env.get("K8S_KEY_FILE") or s.get("k8sKeyFile"),
                "insecure": str(
                    env.get("K8S_INSECURE_SKIP_TLS_VERIFY")
                    or s.get("k8sInsecureSkipTLSVerify")
                    or ""
                ).lower()
                == "true",
            },
            "K8S_API_ENDPOINT",
        )
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if host and port and os.path.exists(f"{SA_DIR}/token"):
        server = f"https://{f'[{host}]' if ':' in host else host}:{port}"
        return Access(
            {"server": server, "token_file": f"{SA_DIR}/token", "ca_file": f"{SA_DIR}/ca.crt"},
            "in-cluster service account",
        )
    raise Refused(
        "kubernetes datastore: no API server configured (set KUBECONFIG or K8S_API_ENDPOINT, "
        "calicoctl.cfg spec.kubeconfig, or run in a pod with a service account)"
    )


class KubeApi:
    def __init__(self, acc: Access, *, timeout: float = 10.0) -> None:
        if not acc.server:
            raise Refused(f"{acc.source}: no API server address (cluster.server)")
        self.access = acc
        self.url = urllib.parse.urlsplit(acc.server)
        if self.url.scheme not in ("http", "https") or not self.url.hostname:
            raise Refused(f"{acc.source}: API server {acc.server!r} is not an http(s) URL")
        self.timeout = timeout
        try:
            self._ssl = ssl_context(acc.cfg) if self.url.scheme == "https" else None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise Refused(f"{acc.source}: TLS files: {exc}") from None
        self._conn: http.client.HTTPConnection | None = None

    def where(self) -> str:
        return f"kubernetes {self.access.server}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        host = self.url.hostname or ""
        if self._ssl is not None:
            return http.client.HTTPSConnection(host, self.url.port or 443, timeout=timeout,
                                               context=self._ssl)  # fmt: skip
        return http.client.HTTPConnection(host, self.url.port or 80, timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.access.cfg.get("token")
        if not token and self.access.cfg.get("token_file"):
            try:
                with open(self.access.cfg["token_file"]) as f:  # re-read: tokens rotate
                    token = f.read().strip()
            except OSError as exc:
                raise Refused(f"{self.access.source}: token file: {exc}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _full(self, path: str, query: Mapping[str, str] | None) -> str:
        full = f"{self.url.path.rstrip('/')}{path}"
        return f"{full}?{urllib.parse.urlencode(query)}" if query else full

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None,
        body: Any = None, content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """(status, decoded body) of one request; Unavailable when there is no answer."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = self._headers(content_type if data is not None else None)
        full = self._full(path, query)
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn or self._connect(self.timeout)
            self._conn = None
            try:
                conn.request(method, full, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1 and method == "GET":
                    continue  # a kept connection the server closed: once more, afresh
                if isinstance(exc, ssl.SSLError | ssl.CertificateError):
                    raise Refused(f"{self.where()}: TLS: {exc} ({self.access.source})") from None
                raise Unavailable(f"{self.where()}: {method} {path}: {exc}") from None
            if not resp.will_close:
                self._conn = conn
            else:
                conn.close()
            try:
                doc = json.loads(raw) if raw else {}
            except ValueError:
                doc = {"message": raw[:200].decode(errors="replace")}
            if resp.status >= 500:
                raise Unavailable(f"{self.where()}: {method} {path}: HTTP {resp.status}: "
                                  f"{doc.get('message', '')}")  # fmt: skip
            if resp.status in (401, 403):
                raise refusal(resp.status, doc, method=method, path=path, api=self)
            return resp.status, doc if isinstance(doc, dict) else {}
        raise Unavailable(f"{self.where()}: no answer")  # not reached

    def watch(
        self, path: str, query: Mapping[str, str], *, read_timeout: float
    ) -> Iterator[dict[str, Any]]:
        """The events of one watch request, each a decoded line; ends when the server ends it
        at ``timeoutSeconds``. A stream silent for ``read_timeout`` seconds, or ended sooner than
        asked (a cut connection reads as an end), raises Unavailable (the caller re-watches)."""
        started = time.monotonic()
        ends = float(query.get("timeoutSeconds") or 0)
        conn = self._connect(read_timeout)
        try:
            try:
                conn.request("GET", self._full(path, {**query, "watch": "true"}),
                             headers=self._headers(None))  # fmt: skip
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise Unavailable(f"{self.where()}: watch {path}: {exc}") from None
            if resp.status != 200:
                raw = resp.read()
                doc = json.loads(raw) if raw.startswith(b"{") else {"message": raw[:200].decode()}
                if resp.status in (401, 403):
                    raise refusal(resp.status, doc, method="WATCH", path=path, api=self)
                if resp.status == 404:
                    raise missing_type(path, self)
                raise Unavailable(f"{self.where()}: watch {path}: HTTP {resp.status}: "
                                  f"{doc.get('message', '')}")  # fmt: skip
            while True:
                try:
                    line = resp.readline()
                except TimeoutError:
                    raise Unavailable(f"{self.where()}: watch {path}: silent for "
                                      f"{read_timeout:.0f}s") from None  # fmt: skip
                except (OSError, http.client.HTTPException) as exc:
                    raise Unavailable(f"{self.where()}: watch {path}: {exc}") from None
                if not line:
                    if ends and time.monotonic() - started < ends - 0.5:
                        raise Unavailable(f"{self.where()}: watch {path}: the stream ended")
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def refusal(
    status: int, doc: Mapping[str, Any], *, method: str, path: str, api: KubeApi
) -> Refused:
    msg = str(doc.get("message") or "")
    if status == 401:
        return Refused(f"{api.where()}: unauthorized: the credentials of {api.access.source} "
                       f"were refused ({msg or 'HTTP 401'})")  # fmt: skip
    what = msg or f"{method} {path}"
    return Refused(f"{api.where()}: forbidden: {what} (RBAC: give this identity the role in "
                   f"manifests/kdd/rbac.yaml; from {api.access.source})")  # fmt: skip


def missing_type(path: str, api: KubeApi) -> Refused:
    """A collection the server does not serve: for a Calico kind, its CRD is not installed."""
    parts = [p for p in path.split("/") if p]
    plural = parts[-1] if parts else path
    if "/crd.projectcalico.org/" in path:
        return Refused(
            f"{api.where()}: the CustomResourceDefinition {plural}.crd.projectcalico.org is not "
            "installed (kubectl apply -f manifests/kdd/crds.yaml)"
        )
    return Refused(f"{api.where()}: the API server does not serve {path}")


def status_message(doc: Mapping[str, Any]) -> str:
    return str(doc.get("message") or doc.get("reason") or "")


def check(status: int, doc: Mapping[str, Any], *, what: str, api: KubeApi) -> None:
    """Raise a StoreError for an unexpected answer (after 404/409 were handled by the caller)."""
    if status >= 300:
        raise StoreError(f"{api.where()}: {what}: HTTP {status}: {status_message(doc)}")


__all__ = ["Access", "KubeApi", "access", "check", "missing_type", "refusal"]
