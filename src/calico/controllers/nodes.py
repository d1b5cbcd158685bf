"""The node controller (``ENABLED_CONTROLLERS`` includes ``node``): a deleted Kubernetes Node takes
its Calico Node, IPAM blocks and affinities with it, as Calico's kube-controllers do in etcd mode.

A Calico Node belongs to Kubernetes Node K when its ``spec.orchRefs`` has ``{orchestrator: k8s,
nodeName: K}`` (calico-node writes it from ``CALICO_K8S_NODE_REF``); Calico Nodes without such a
reference are never touched. A ``("Node", "", K)`` key whose object the (synced) Node informer no
longer has, for each Calico Node C of K:

1. **wait while pods live there**: the pods the API server still has bound to K (listed, not
   cached, with ``fieldSelector=spec.nodeName=K``) and not finished may still hold addresses (a
   Node object can be deleted while its kubelet runs on, and registers it again); the key is
   looked at again every :data:`PENDING_RETRY` seconds until they are gone (the pod garbage
   collector deletes pods of a deleted node within about a minute);
2. **release the addresses no live pod holds**: every allocation in any block whose attributes
   name node C and a pod (``namespace``/``pod``), or a tunnel (``type``), is released, also those
   no WorkloadEndpoint lists any more (leaked: a CNI DEL that never ran); an allocation of C with
   neither is from an unknown source and is left (its block then keeps it, without affinity);
3. **the rest, as ``calicoctl delete node``** (:func:`calico.ipam.node_cleanup.delete_node`): its
   WorkloadEndpoints' and tunnel addresses, its WorkloadEndpoints, its IPAM host (empty affine
   blocks deleted, blocks still in use lose their affinity), its BGPPeers and per-node
   configurations, and the Calico Node last.

Every step tolerates what is already gone, so a failure part-way is finished by the retry. Deletions
that happened while the controller was down are found by the sweep key :data:`SWEEP` (queued at
every resync): every Calico Node whose Kubernetes Node is missing gets its key queued.

**Kubernetes datastore** (``kdd``): the Calico Node *is* the Kubernetes Node, so it is gone
already and only IPAM state is left under host K. When no Calico Node refers to K and IPAM still
holds affinities of host K or pod/tunnel addresses attributed to it, the same wait (1) applies,
then :func:`calico.ipam.node_cleanup.release_host`: step 2, its affinities dropped and its empty
blocks deleted (blocks still in use keep their addresses and lose their affinity). The sweep also
queues every host holding an affinity whose Kubernetes Node is missing. In etcd mode a host
without a Calico Node is never touched.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from calico.controllers.calico_cache import Key
from calico.controllers.reconciler import Outcome
from calico.datastore.client import Client, NotFound
from calico.ipam import keys, node_cleanup
from calico.ipam.client import IPAMClient

logger = logging.getLogger(__name__)

Resource = dict[str, Any]
SWEEP: Key = ("Node", "", "")  # "find Calico Nodes whose Kubernetes Node is gone"
PENDING_RETRY = 10.0
FINISHED = ("Succeeded", "Failed")


class Store(Protocol):
    synced: bool

    def get(self, key: tuple[str, str]) -> Resource | None: ...

    def store_keys(self) -> list[tuple[str, str]]: ...


class Queue(Protocol):
    def add(self, key: Key, added_at: float | None = None) -> None: ...

    def add_after(self, key: Key, delay: float, added_at: float | None = None) -> None: ...


def k8s_node_name(node: Resource) -> str | None:
    """The Kubernetes Node a Calico Node stands for (its ``k8s`` orchRef), else None."""
    for ref in (node.get("spec") or {}).get("orchRefs") or []:
        if ref.get("orchestrator") == "k8s" and ref.get("nodeName"):
            return str(ref["nodeName"])
    return None


def live_pods(pods: list[Resource], node: str) -> list[str]:
    """``ns/name`` of the pods bound to ``node`` that have not finished."""
    return sorted(
        f"{(p.get('metadata') or {}).get('namespace')}/{(p.get('metadata') or {}).get('name')}"
        for p in pods
        if (p.get("spec") or {}).get("nodeName") == node
        and (p.get("status") or {}).get("phase") not in FINISHED
    )


def affinity_hosts(client: Client) -> set[str]:
    """The hosts that hold at least one block affinity."""
    kvs, _ = client.backend.get_prefix(keys.HOST_PREFIX)
    return {parsed[0] for kv in kvs if (parsed := keys.parse_affinity_key(kv.key))}


class NodeController:
    def __init__(
        self,
        client: Client,
        nodes: Store,
        queue: Queue,
        *,
        list_pods: Callable[[str], list[Resource]],
        pending_retry: float = PENDING_RETRY,
        kdd: bool = False,
    ) -> None:
        self.client = client
        self.kdd = kdd  # Kubernetes datastore: a deleted Node leaves only its IPAM host
        self.nodes = nodes
        self.queue = queue
        self.list_pods = list_pods
        self.pending_retry = pending_retry

    def reconcile(self, key: Key) -> Outcome | None:
        if not self.nodes.synced:
            return None
        out = Outcome()
        if key == SWEEP:
            self.sweep()
            return out
        name = key[2]
        if self.nodes.get(("", name)) is not None:
            return out  # the Kubernetes Node exists: nothing to do
        mine = [n for n in self.client.list("Node") if k8s_node_name(n) == name]
        if not mine:
            if self.kdd and self._host_left(name) and self._pods_gone(key, name, f"host {name}"):
                self._clean_host(name, out)
            return out
        calico = ", ".join(n["metadata"]["name"] for n in mine)
        if self._pods_gone(key, name, f"Calico Node(s) {calico}"):
            for node in mine:
                self._clean(node["metadata"]["name"], name, out)
        return out

    def _pods_gone(self, key: Key, name: str, what: str) -> bool:
        """No unfinished pod is bound to Kubernetes Node ``name``; else look again later."""
        live = live_pods(self.list_pods(name), name)
        if live:
            logger.info(
                "Node %s was deleted; %d pod(s) still bound to it (%s): cleaning up after "
                "%s when they are gone",
                name, len(live), ", ".join(live[:5]), what,
            )  # fmt: skip
            self.queue.add_after(key, self.pending_retry)
        return not live

    def _host_left(self, host: str) -> bool:
        """IPAM still holds an affinity of ``host`` or a pod/tunnel address attributed to it."""
        if host in affinity_hosts(self.client):
            return True
        ipam = IPAMClient(self.client.backend, client=self.client)
        return bool(node_cleanup.host_allocations(ipam, host)[0])

    def _clean_host(self, host: str, out: Outcome) -> None:
        done = node_cleanup.release_host(self.client, host)
        _warn_unknown(f"IPAM host {host}", done.unknown)
        out.writes["delete"] += len(done.blocks_deleted) + len(done.blocks_kept)  # affinities
        out.writes["update"] += len(done.released)
        logger.info(
            "Kubernetes Node %s deleted: released %d address(es) of host %s (%s), blocks deleted "
            "%s, kept without affinity %s",
            host, len(done.released), host,
            ", ".join(sorted(done.released, key=ipaddress.ip_address)) or "-",
            done.blocks_deleted or "-", done.blocks_kept or "-",
        )  # fmt: skip

    def _clean(self, calico_node: str, k8s_node: str, out: Outcome) -> None:
        ipam = IPAMClient(self.client.backend, client=self.client)
        leaked, unknown = node_cleanup.release_attributed(ipam, calico_node)
        _warn_unknown(f"Calico Node {calico_node}", unknown)
        try:
            done = node_cleanup.delete_node(self.client, calico_node)
        except NotFound:
            return  # gone already (another worker, calicoctl)
        out.writes["delete"] += 1 + len(done.endpoints) + len(done.blocks_deleted)
        logger.info(
            "Kubernetes Node %s deleted: removed Calico Node %s; released %d address(es) "
            "(%s), %d WorkloadEndpoint(s), blocks deleted %s, kept without affinity %s",
            k8s_node, calico_node, len(leaked) + len(done.released),
            ", ".join(sorted(set(leaked) | set(done.released), key=ipaddress.ip_address)) or "-",
            len(done.endpoints), done.blocks_deleted or "-", done.blocks_kept or "-",
        )  # fmt: skip

    def sweep(self) -> None:
        """Queue the key of every Kubernetes Node a Calico Node refers to and the API lacks (and,
        with the Kubernetes datastore, of every host holding an affinity that the API lacks)."""
        names = {k8s_node_name(node) for node in self.client.list("Node")}
        if self.kdd:
            names |= affinity_hosts(self.client)
        for name in sorted(n for n in names if n):
            if self.nodes.get(("", name)) is None:
                self.queue.add(("Node", "", name))


def _warn_unknown(what: str, unknown: list[str]) -> None:
    if unknown:
        logger.warning(
            "%s: leaving %d address(es) of unknown source allocated: %s",
            what, len(unknown), ", ".join(unknown[:10]),
        )  # fmt: skip


class Dispatch:
    """Node keys to the node controller, every other key to the policy reconciler."""

    def __init__(self, nodes: NodeController, other: Any) -> None:
        self.nodes = nodes
        self.other = other

    def reconcile_many(self, keys: Sequence[Key]) -> dict[Key, Outcome | Exception | None]:
        """Node keys one by one (each its own outcome or failure), the rest as one batch."""
        results: dict[Key, Outcome | Exception | None] = {}
        for key in keys:
            if key[0] == "Node":
                try:
                    results[key] = self.nodes.reconcile(key)
                except Exception as exc:  # this key is retried; the others go on
                    results[key] = exc
        others = [key for key in keys if key[0] != "Node"]
        if others:
            results.update(self.other.reconcile_many(others))
        return results


def pod_lister(client: Any, loop: asyncio.AbstractEventLoop) -> Callable[[str], list[Resource]]:
    """``list_pods(node)`` for worker threads: one LIST on the controller's asyncio loop."""
    from calico.controllers.informer import Pod

    async def pods(node: str) -> list[Resource]:
        out = []
        async for pod in client.list(Pod, namespace="*", fields={"spec.nodeName": node}):
            out.append(dict(pod))
        return out

    def list_pods(node: str) -> list[Resource]:
        return asyncio.run_coroutine_threadsafe(pods(node), loop).result(60)

    return list_pods
