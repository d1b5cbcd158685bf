"""Remove a Calico node and what it leaves behind, in Calico's order: ``calicoctl delete node
NAME`` and the kube-controllers' node controller (:mod:`calico.controllers.nodes`) both run this.

1. the addresses of its WorkloadEndpoints (``spec.node`` = NAME) and its tunnel addresses
   (``spec.bgp.ipv4IPIPTunnelAddr``, ``spec.ipv4VXLANTunnelAddr``) are released (their handles
   with them), then the WorkloadEndpoints deleted;
2. its IPAM host is removed (:func:`calico.ipam.hosts.remove_host`): empty affine blocks are
   deleted, blocks still in use lose their affinity;
3. BGPPeers with ``spec.node`` = NAME, FelixConfiguration and BGPConfiguration ``node.NAME``;
4. the Node itself, last (compared against the resourceVersion given, if any).

Every step tolerates what is already gone, so a run that failed half-way (etcd unavailable) is
finished by running it again; the Node disappears only when everything else has. Stop the
node's calico-node first (it would register the node again).

:func:`release_host` is the IPAM part alone, by host name, for when there is no Node resource to
delete (the Kubernetes datastore, where the Calico Node went with its Kubernetes Node): the pod
and tunnel addresses attributed to the host (:func:`release_attributed`), then step 2.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.client import Client, NotFound
from calico.ipam import hosts
from calico.ipam.client import IPAMClient

Resource = dict[str, Any]
TUNNEL_FIELDS = (("bgp", "ipv4IPIPTunnelAddr"), ("", "ipv4VXLANTunnelAddr"))


@dataclass(slots=True)
class NodeCleanup:
    released: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    blocks_deleted: list[str] = field(default_factory=list)
    blocks_kept: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # attributed to the host, source unknown: kept


def host_allocations(ipam: IPAMClient, host: str) -> tuple[list[str], list[str]]:
    """(pod and tunnel addresses attributed to ``host``, addresses of unknown source): an
    allocation whose attributes name the host and a pod (``namespace``/``pod``) or a tunnel
    (``type``) is the first kind, one naming the host and neither the second."""
    release: list[str] = []
    unknown: list[str] = []
    for block in ipam.blocks():
        for ip, attr in block.allocated():
            secondary = attr.get("secondary") or {}
            if secondary.get("node") != host:
                continue
            pod = secondary.get("namespace") and secondary.get("pod")
            (release if pod or secondary.get("type") else unknown).append(ip)
    return release, unknown


def release_attributed(ipam: IPAMClient, host: str) -> tuple[list[str], list[str]]:
    """Release the pod and tunnel addresses attributed to ``host`` (also those no
    WorkloadEndpoint lists: leaked); (those released, those of unknown source left)."""
    release, unknown = host_allocations(ipam, host)
    missing = set(ipam.release_ips(release))
    return [ip for ip in release if ip not in missing], unknown


def release_host(client: Client, host: str) -> NodeCleanup:
    """The IPAM part of a node's removal by host name, without a Node resource: its attributed
    pod and tunnel addresses released, its affinities dropped, its empty affine blocks deleted
    (blocks still in use lose their affinity)."""
    done = NodeCleanup()
    ipam = IPAMClient(client.backend, client=client)
    done.released, done.unknown = release_attributed(ipam, host)
    _remove_host(client, host, done)
    return done


def _remove_host(client: Client, host: str, done: NodeCleanup) -> None:
    released = hosts.remove_host(client.backend, host)
    done.blocks_deleted, done.blocks_kept = released.deleted_blocks, released.kept_blocks


def _tunnel_ips(node: Resource | None) -> list[str]:
    spec = (node or {}).get("spec") or {}
    out = []
    for section, name in TUNNEL_FIELDS:
        value = (spec.get(section) or {}).get(name) if section else spec.get(name)
        if value:
            out.append(str(ipaddress.ip_interface(value).ip))
    return out


def delete_node(client: Client, name: str, *, resource_version: str = "") -> NodeCleanup:
    """Delete Node ``name`` and clean up after it (see the module docstring); NotFound when
    there is no such Node and nothing of it was left to clean."""
    ipam = IPAMClient(client.backend, client=client)
    done = NodeCleanup()
    try:
        node: Resource | None = client.get("Node", name)
    except NotFound:
        node = None
    weps = [w for w in client.list("WorkloadEndpoint") if (w.get("spec") or {}).get("node") == name]
    ips = [
        str(ipaddress.ip_interface(n).ip)
        for w in weps
        for n in (w.get("spec") or {}).get("ipNetworks") or []
    ]
    ips += _tunnel_ips(node)
    missing = set(ipam.release_ips(ips))
    done.released = [ip for ip in ips if ip not in missing]
    for w in weps:
        meta = w["metadata"]
        try:
            client.delete("WorkloadEndpoint", meta["name"], meta.get("namespace"))
        except NotFound:
            continue
        done.endpoints.append(f"{meta.get('namespace')}/{meta['name']}")
    _remove_host(client, name, done)
    for peer in client.list("BGPPeer"):
        if (peer.get("spec") or {}).get("node") == name:
            _delete_quietly(client, "BGPPeer", peer["metadata"]["name"], done)
    for kind in ("FelixConfiguration", "BGPConfiguration"):
        _delete_quietly(client, kind, f"node.{name}", done)
    if node is None:
        if done.released or done.endpoints or done.blocks_deleted or done.blocks_kept:
            return done  # the Node was gone already; what it left is cleaned up now
        raise NotFound(f"resource does not exist: Node({name})")
    client.delete("Node", name, resource_version=resource_version)
    return done


def _delete_quietly(client: Client, kind: str, name: str, done: NodeCleanup) -> None:
    try:
        client.delete(kind, name)
    except NotFound:
        return
    done.other.append(f"{kind}({name})")
