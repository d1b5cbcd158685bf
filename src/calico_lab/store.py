"""LabStore: the lab's etcd, reached from the root namespace through a thread in the core namespace.

The lab's etcd (every member) listens on bridge addresses inside ``calab-<lab>-core`` only. Every
call here runs on one worker thread that entered that namespace
(:class:`calico.lib.netns.NetnsExecutor`), so the connection is made there; the caller's thread
stays where it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from calico.datastore.client import Client, NotFound, Resource
from calico.datastore.etcd import EtcdClient, TLSFiles
from calico.lib.netns import NetnsExecutor
from calico_lab.state import LabState

T = TypeVar("T")


class LabStore:
    def __init__(self, *, core_netns: str, endpoint: str, tls: TLSFiles | None = None) -> None:
        """``endpoint``: one URL or the comma-separated list of the lab's etcd members."""
        self._exec = NetnsExecutor(core_netns)
        self._etcd = self._exec.call(EtcdClient, endpoint, tls=tls, timeout=5)
        self.client = Client(self._etcd)

    @classmethod
    def of(cls, lab: LabState) -> LabStore:
        """A store on every member of ``lab``'s etcd, with the lab's own certificate (TLS)."""
        return cls(core_netns=lab.core, endpoint=lab.etcd_endpoint, tls=lab.etcd_tls("calico-lab"))

    @property
    def etcd(self) -> EtcdClient:
        """The raw etcd client (call it through :meth:`call`: it lives on the worker thread)."""
        return self._etcd

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
            self.call(self._etcd.revision)
        except Exception:
            return False
        return True

    def close(self) -> None:
        try:
            self.call(self._etcd.close)
        finally:
            self._exec.close()
