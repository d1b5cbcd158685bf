"""LabStore: the lab's datastore, reached from the root namespace through a thread in the core
namespace.

The lab's etcd (every member) and, in a Kubernetes-datastore lab, its API server (or the relay to
the user's) listen on addresses inside ``calab-<lab>-core`` only. Every call here runs on one
worker thread that entered that namespace (:class:`calico.lib.netns.NetnsExecutor`), so the
connection is made there; the caller's thread stays where it is. :meth:`LabStore.kube` is a raw
Kubernetes API request (a Kubernetes-datastore lab writes its Namespaces, Pods and Nodes so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from calico.datastore.backend import Backend
from calico.datastore.client import Client, NotFound, Resource
from calico.datastore.etcd import EtcdClient, TLSFiles
from calico.lib.netns import NetnsExecutor
from calico_lab.state import LabState

T = TypeVar("T")


class LabStore:
    def __init__(
        self, *, core_netns: str, endpoint: str = "", tls: TLSFiles | None = None,
        kubeconfig: str | None = None,
    ) -> None:  # fmt: skip
        """``endpoint``: one URL or the comma-separated list of the lab's etcd members;
        ``kubeconfig``: the Kubernetes datastore instead."""
        self._exec = NetnsExecutor(core_netns)
        self.backend: Backend = self._exec.call(self._open, endpoint, tls, kubeconfig)
        self.client = Client(self.backend)

    @staticmethod
    def _open(endpoint: str, tls: TLSFiles | None, kubeconfig: str | None) -> Backend:
        if kubeconfig:
            from calico.datastore.kube import KubeBackend
            from calico.datastore.kube_api import access

            return KubeBackend(access(kubeconfig=kubeconfig), timeout=10)
        return EtcdClient(endpoint, tls=tls, timeout=5)

    @classmethod
    def of(cls, lab: LabState) -> LabStore:
        """A store on every member of ``lab``'s etcd, with the lab's own certificate (TLS); in a
        Kubernetes-datastore lab, on its API server."""
        if lab.kdd:
            from calico_lab import kdd_server

            return cls(core_netns=lab.core, kubeconfig=kdd_server.kubeconfig(lab))
        return cls(core_netns=lab.core, endpoint=lab.etcd_endpoint, tls=lab.etcd_tls("calico-lab"))

    @property
    def etcd(self) -> EtcdClient:
        """The raw etcd client of an etcd lab (call it through :meth:`call`: it lives on the
        worker thread)."""
        assert isinstance(self.backend, EtcdClient), "not an etcd-datastore lab"
        return self.backend

    def kube(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        """One Kubernetes API request (a Kubernetes-datastore lab only): (status, body)."""
        from calico.datastore.kube import KubeBackend

        assert isinstance(self.backend, KubeBackend), "not a Kubernetes-datastore lab"
        api = self.backend.api
        return self.call(lambda: api.request(method, path, body=body, content_type=content_type))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._exec.call(fn, *args, **kwargs)

    def apply(self, obj: Resource) -> Resource:
        return self.call(self.client.apply, obj)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Resource:
        return self.call(self.client.get, kind, name, namespace)

    def find(self, kind: str, name: str, namespace: str | None = None) -> Resource | None:
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None) -> list[Resource]:
        return self.call(self.client.list, kind, namespace)

    def update(self, obj: Resource) -> Resource:
        return self.call(self.client.update, obj)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it did not exist."""
        try:
            self.call(self.client.delete, kind, name, namespace)
        except NotFound:
            return False
        return True

    def ready(self) -> bool:
        try:
            if isinstance(self.backend, EtcdClient):
                self.call(self.backend.revision)
            else:
                self.kube("GET", "/readyz")
        except Exception:
            return False
        return True

    def close(self) -> None:
        try:
            self.call(self.backend.close)
        finally:
            self._exec.close()
