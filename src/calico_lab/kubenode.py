"""The lab's kubelet side toward Nodes: ``calico-lab up --kubeconfig`` registers its nodes.

As a kubelet does, for every lab node the sync daemon (:mod:`calico_lab.kube`)

- registers a ``Node`` named like the lab node: labels ``kubernetes.io/hostname``/``os``/``arch``
  plus :data:`LAB_LABEL` (which lab owns it), ``status.addresses`` InternalIP (the node's lab
  address) and Hostname, a ``Ready`` condition (``KubeletReady``) and ``nodeInfo``; a Node of that
  name that another lab or a real kubelet registered is an error naming it (nothing is taken over);
- keeps a ``Lease`` ``kube-node-lease/<node>`` (holder the node, 40 s, owned by the Node so the
  garbage collector removes it with the Node) renewed every ``interval`` seconds (kubelet: 10 s),
  and the Ready condition's ``lastHeartbeatTime`` every ``status_every`` seconds (kubelet reports
  status at least every 5 minutes when a Lease carries the heartbeat; the lab, every minute). A
  cluster without ``kube-node-lease`` gets status heartbeats only, as before Leases existed;
- a Node deleted while the lab runs is not registered again (a kubelet only registers at start);
  its Lease is then left to the garbage collector.

The heartbeats run in their own thread with their own client, so a long sync pass never delays
them past the node controller's grace period (``--node-monitor-grace-period``, 40 s by default).
``calico-lab down`` removes the Nodes and Leases this lab registered (:func:`unregister`), after
the daemon has stopped; the API server's pod garbage collector then deletes the pods that were
bound to them, as for any removed node.
"""

from __future__ import annotations

import datetime
import logging
import platform
import threading
from collections.abc import Callable, Iterable
from typing import Any

from calico import __version__
from calico_lab.state import LabError

logger = logging.getLogger("calico_lab.kubenode")

LAB_LABEL = "calico-lab.projectcalico.org/lab"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10.0
STATUS_SECONDS = 60.0
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def now(micro: bool = False) -> str:
    """An API timestamp: RFC 3339 seconds (``Time``) or microseconds (``MicroTime``, Leases)."""
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def ready_condition(at: str, since: str | None = None) -> dict[str, str]:
    return {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "calico-lab is posting ready status",
        "lastHeartbeatTime": at,
        "lastTransitionTime": since or at,
    }


def node_status(ip: str, name: str, at: str, since: str | None = None) -> dict[str, Any]:
    return {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": [ready_condition(at, since)],
        "capacity": {"pods": "110"},
        "allocatable": {"pods": "110"},
        "nodeInfo": {
            "kubeletVersion": f"v{__version__}-calico-lab",
            "kubeProxyVersion": f"v{__version__}-calico-lab",
            "operatingSystem": "linux",
            "architecture": ARCH,
            "containerRuntimeVersion": "calico-lab://netns",
            "kernelVersion": platform.release(),
            "osImage": "calico-lab",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def node_object(lab: str, name: str, ip: str, at: str) -> dict[str, Any]:
    """The Node a kubelet would register for lab node ``name`` at ``ip``."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": ARCH,
                LAB_LABEL: lab,
            },
        },
        "spec": {},
        "status": node_status(ip, name, at),
    }


def lease_object(name: str, node_uid: str, at: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
            ],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": at},
    }


def _code(exc: Exception) -> int:
    status = getattr(exc, "status", None)
    return int(getattr(status, "code", 0) or 0)


def _gone_object(exc: Exception, name: str) -> bool:
    """A 404 about the object itself (``details.name``, or the message naming it), not about a
    path the server does not serve."""
    status = getattr(exc, "status", None)
    details = getattr(status, "details", None)
    named = bool(getattr(details, "name", None)) or f'"{name}" not found' in str(
        getattr(status, "message", "")
    )
    return _code(exc) == 404 and named


class NodeAgent:
    """Registers a lab's nodes and keeps their heartbeats (one thread, one client)."""

    def __init__(
        self,
        kubeconfig: str,
        lab: str,
        nodes: Iterable[tuple[str, str]],
        *,
        interval: float = HEARTBEAT_SECONDS,
        status_every: float = STATUS_SECONDS,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.lab = lab
        self.nodes = dict(nodes)  # name -> InternalIP
        self.interval = interval
        self.status_every = status_every
        self.uids: dict[str, str] = {}  # registered Nodes (name -> uid)
        self.ready_since: dict[str, str] = {}
        self.leases = True  # False when the cluster has no kube-node-lease
        self.status_subresource = True
        self.client = self._new_client()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _new_client(self) -> Any:
        from lightkube import Client, KubeConfig

        return Client(KubeConfig.from_file(self.kubeconfig), field_manager="calico-lab")

    # ---- registration ------------------------------------------------------------------------

    def register(self) -> None:
        """Create (or adopt this lab's own) Node per lab node; LabError naming what failed."""
        for name, ip in self.nodes.items():
            try:
                self._register(name, ip)
            except LabError:
                raise
            except Exception as exc:
                raise LabError(f"registering Node {name}: {_describe(exc)}") from None
        self.renew_all(status=False)

    def _register(self, name: str, ip: str) -> None:
        from lightkube import ApiError
        from lightkube.codecs import from_dict
        from lightkube.resources.core_v1 import Node

        at = now()
        try:
            created = self.client.create(from_dict(node_object(self.lab, name, ip, at)))
            uid = created.metadata.uid
            logger.info("registered Node %s (InternalIP %s)", name, ip)
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            existing = self.client.get(Node, name)
            owner = (existing.metadata.labels or {}).get(LAB_LABEL)
            if owner != self.lab:
                who = f"lab {owner!r}" if owner else "something other than a calico-lab"
                raise LabError(
                    f"Node {name} already exists in the API server, registered by {who}; "
                    "delete it or give this lab's nodes other names"
                ) from None
            uid = existing.metadata.uid
            self._patch(Node, name, {"metadata": {"labels": node_object(self.lab, name, ip, at)
                                                  ["metadata"]["labels"]}})  # fmt: skip
            logger.info("Node %s was this lab's already; adopted", name)
        self.uids[name] = str(uid)
        self.ready_since[name] = at
        self._post_status(name)  # the API server may drop status given at creation

    # ---- heartbeats --------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        elapsed = 0.0
        while not self._stop.wait(self.interval):
            elapsed += self.interval
            status = elapsed >= self.status_every
            if status:
                elapsed = 0.0
            self.renew_all(status=status)

    def renew_all(self, *, status: bool) -> None:
        for name in list(self.uids):
            try:
                if status or not self.leases:
                    self._post_status(name)
                if self.leases:
                    self._renew_lease(name)
            except Exception as exc:
                if _gone_object(exc, name):
                    logger.warning("Node %s was deleted; not registering it again", name)
                    self.uids.pop(name, None)
                else:
                    logger.error("heartbeat of Node %s: %s", name, _describe(exc))

    def _post_status(self, name: str) -> None:
        from lightkube.resources.core_v1 import Node

        body = {"status": node_status(self.nodes[name], name, now(), self.ready_since[name])}
        if self.status_subresource:
            try:
                self._patch(Node.Status, name, body)
                return
            except Exception as exc:
                if _code(exc) != 404 or _gone_object(exc, name):
                    raise
            # No nodes/status (minimal API servers): patch the object itself from now on.
            self.status_subresource = False
            self.client = self._new_client()
        self._patch(Node, name, body)

    def _renew_lease(self, name: str) -> None:
        from lightkube.codecs import from_dict
        from lightkube.resources.coordination_v1 import Lease

        at = now(micro=True)
        try:
            self._patch(Lease, name, {"spec": {"holderIdentity": name, "renewTime": at}},
                        namespace=LEASE_NAMESPACE)  # fmt: skip
            return
        except Exception as exc:
            if _code(exc) != 404:
                raise
        from lightkube.resources.core_v1 import Node

        self.client.get(Node, name)  # a Lease gone with its Node is not made again
        try:
            self.client.create(from_dict(lease_object(name, self.uids[name], at)))
        except Exception as exc:
            if _code(exc) != 404:
                raise
            logger.warning("no namespace %s here: heartbeats by node status only", LEASE_NAMESPACE)
            self.leases = False

    def _patch(
        self, res: Any, name: str, body: dict[str, Any], namespace: str | None = None
    ) -> None:
        from lightkube.types import PatchType

        self.client.patch(res, name, body, namespace=namespace, patch_type=PatchType.MERGE)


def unregister(
    kubeconfig: str, lab: str, names: Iterable[str], step: Callable[[str], None]
) -> None:
    """Delete this lab's Nodes (only those labelled as this lab's) and their Leases."""
    import httpx2
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.resources.coordination_v1 import Lease
    from lightkube.resources.core_v1 import Node

    try:
        client = Client(KubeConfig.from_file(kubeconfig), timeout=httpx2.Timeout(10.0))
    except Exception as exc:
        step(f"not removing the lab's Nodes: {kubeconfig}: {_describe(exc)}")
        return
    for name in names:
        try:
            meta = client.get(Node, name).metadata
            if meta is None or (meta.labels or {}).get(LAB_LABEL) != lab:
                step(f"leaving Node {name}: not registered by this lab")
                continue
            step(f"removing Node {name} and its Lease")
            client.delete(Node, name)
            client.delete(Lease, name, namespace=LEASE_NAMESPACE)
        except ApiError as exc:
            if exc.status.code != 404:
                step(f"removing Node {name}: {_describe(exc)}")
        except Exception as exc:  # API server away: nothing more to do from here
            step(f"removing Node {name}: {_describe(exc)}")
            return


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    message = getattr(status, "message", None)
    code = getattr(status, "code", None)
    if message:
        return f"{code} {message}" if code else str(message)
    return f"{type(exc).__name__}: {exc}"
