"""The BGP model: what this host's BIRD should do, computed from datastore resources. Pure.

Input is the datastore as plain resource dicts (Node, BGPPeer, BGPConfiguration, IPPool) plus this
host's IPAM block affinities; output is a frozen :class:`BirdModel` that the template renders.
``build`` is a function of current state only, so the same inputs always give the same config
(the renderer compares models and texts to decide whether BIRD needs ``configure``).

Peering rules (Calico confd's, as in v3.x):

* mesh (unless BGPConfiguration ``default`` has ``nodeToNodeMeshEnabled: false``): every other Node
  with ``spec.bgp.ipv4Address`` -> ``Mesh_<ip>``;
* BGPPeer with neither ``node`` nor ``nodeSelector`` -> ``Global_<peerIP>`` on every node;
* BGPPeer with ``node: <us>`` or a ``nodeSelector`` that matches us -> ``Node_<ip>``;
* a ``peerSelector`` (instead of ``peerIP``/``asNumber``) peers with every Node it selects, and the
  selected nodes peer back with the nodes the ``nodeSelector`` selects (both sides need config);
* a node with ``spec.bgp.routeReflectorClusterID`` is a route reflector: peers that are Calico nodes
  without the same cluster id (and in the same AS) are its ``rr client``\\s.

One session per peer address: the first rule that yields an address wins (mesh, global, node).

Encapsulation (docs/design/encapsulation.md): the agent, not BIRD, routes traffic it sends through
a tunnel. ``encap_pools`` lists the IPv4 pools with ``ipipMode`` or ``vxlanMode`` on (disabled
pools included: their addresses still in use keep their mode), with ``subnet``, this node's own
subnet (``spec.bgp.ipv4Address`` with its prefix length; no prefix: the address alone), so the
template can keep BIRD from programming those routes: all of them for ``Always``; for
``CrossSubnet`` those whose BGP next hop is outside ``subnet``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_AS = 64512
Resource = Mapping[str, Any]

PEER_TYPES = {"Mesh": "node-to-node mesh", "Global": "global", "Node": "node specific"}


class ModelError(ValueError):
    """The datastore does not describe a usable BGP config for this node (yet)."""


@dataclass(frozen=True, slots=True)
class Peer:
    kind: str  # "Mesh" | "Global" | "Node" (the protocol-name prefix)
    address: str
    as_number: int
    rr_client: bool = False
    port: int | None = None  # BGPPeer peerIP "10.0.0.1:1179", or the cluster's listenPort

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.address.replace('.', '_').replace(':', '_')}"


@dataclass(frozen=True, slots=True)
class BirdModel:
    node_name: str
    router_id: str
    local_as: int
    log_severity: str = "Info"
    rr_cluster_id: str = ""
    listen_port: int | None = None  # BGPConfiguration listenPort: ours and every Calico node's
    peers: tuple[Peer, ...] = ()
    pools: tuple[str, ...] = ()  # IPv4 pool CIDRs: routes inside them go to peers
    subnet: str = ""  # this node's IPv4 subnet (CrossSubnet's "same subnet")
    encap_pools: tuple[tuple[str, str], ...] = ()  # (IPv4 pool CIDR, "Always" | "CrossSubnet")
    blocks: tuple[str, ...] = ()  # this host's affine IPv4 blocks: blackholed and exported
    # IPv6 (Calico's bird6), rendered only when this node has spec.bgp.ipv6Address
    ipv6_address: str = ""
    peers6: tuple[Peer, ...] = ()
    pools6: tuple[str, ...] = ()
    blocks6: tuple[str, ...] = ()


def _spec(obj: Resource | None) -> Mapping[str, Any]:
    spec = (obj or {}).get("spec") or {}
    return spec if isinstance(spec, Mapping) else {}


def _labels(obj: Resource) -> Mapping[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, Mapping) else {}


def node_ipv4(node: Resource | None, version: int = 4) -> str:
    """The node's BGP IPv4 (or IPv6) address without its prefix length ('' when unset)."""
    field = "ipv4Address" if version == 4 else "ipv6Address"
    addr = str((_spec(node).get("bgp") or {}).get(field) or "")
    return addr.split("/", maxsplit=1)[0]


def node_as(node: Resource | None, global_as: int) -> int:
    as_num = (_spec(node).get("bgp") or {}).get("asNumber")
    return int(as_num) if as_num not in (None, "") else global_as


def _rr_cluster(node: Resource | None) -> str:
    return str((_spec(node).get("bgp") or {}).get("routeReflectorClusterID") or "")


def _matches(selector: str, labels: Mapping[str, str]) -> bool:
    from calico import selector as sel  # the selector package is only needed for selector peers

    try:
        return bool(sel.parse(selector).evaluate(dict(labels)))
    except Exception as exc:  # fail closed: the caller keeps the config it has
        raise ModelError(f"BGPPeer selector {selector!r}: {exc}") from exc


def _selected(selector: str, nodes: Mapping[str, Resource]) -> list[str]:
    return [name for name, node in sorted(nodes.items()) if _matches(selector, _labels(node))]


def _peer_of_node(
    kind: str,
    node: Resource,
    me: Resource,
    global_as: int,
    port: int | None = None,
    version: int = 4,
) -> Peer | None:
    ip = node_ipv4(node, version)
    if not ip:
        return None
    my_cluster, their_cluster = _rr_cluster(me), _rr_cluster(node)
    as_num = node_as(node, global_as)
    # BIRD: only an internal (same AS) neighbour can be a route-reflector client
    rr_client = (
        bool(my_cluster) and their_cluster != my_cluster and as_num == node_as(me, global_as)
    )
    return Peer(kind, ip, as_num, rr_client, port)


def _explicit_peers(
    name: str,
    me: Resource,
    nodes: Mapping[str, Resource],
    bgppeers: Iterable[Resource],
    global_as: int,
    listen_port: int | None,
    version: int,
) -> list[Peer]:
    out: list[Peer] = []
    for bp in sorted(bgppeers, key=lambda r: str((r.get("metadata") or {}).get("name", ""))):
        spec = _spec(bp)
        applies = _applies_to(spec, name, me)
        if spec.get("peerSelector"):
            for other in _selected_peers(spec, name, me, nodes, applies=applies):
                p = _peer_of_node("Node", nodes[other], me, global_as, listen_port, version)
                if p is not None:
                    out.append(p)
        elif applies and spec.get("peerIP"):
            p = _peer_of_ip(spec, global_as, version)
            if p is not None:
                out.append(p)
    return out


def _applies_to(spec: Resource, name: str, me: Resource) -> bool:
    """A BGPPeer's ``node`` / ``nodeSelector`` picks this node (neither: every node)."""
    on_node, node_sel = spec.get("node"), spec.get("nodeSelector")
    if on_node:
        return bool(on_node == name)
    if node_sel:
        return _matches(str(node_sel), _labels(me))
    return True


def _selected_peers(
    spec: Resource, name: str, me: Resource, nodes: Mapping[str, Resource], *, applies: bool
) -> list[str]:
    """The nodes a ``peerSelector`` BGPPeer gives this node a session with, in order: those
    it selects (when the peer applies here), then, the reverse direction, the nodeSelector's
    nodes when this node is itself selected as their peer."""
    peer_sel = str(spec["peerSelector"])
    on_node, node_sel = spec.get("node"), spec.get("nodeSelector")
    out: list[str] = []
    if applies:
        out.extend(other for other in _selected(peer_sel, nodes) if other != name)
    if _matches(peer_sel, _labels(me)):
        locals_ = [on_node] if on_node else _selected(str(node_sel or "all()"), nodes)
        out.extend(other for other in locals_ if other != name and other in nodes)
    return out


def _peer_of_ip(spec: Resource, global_as: int, version: int) -> Peer | None:
    """The session to a ``peerIP`` BGPPeer (None: the other family's session list has it)."""
    peer_ip, port = split_peer_ip(str(spec["peerIP"]))
    if ipaddress.ip_address(peer_ip).version != version:
        return None
    kind = "Global" if not spec.get("node") and not spec.get("nodeSelector") else "Node"
    as_num = spec.get("asNumber")
    return Peer(kind, peer_ip, int(as_num) if as_num else global_as, port=port)


def split_peer_ip(text: str) -> tuple[str, int | None]:
    """``10.0.0.1:1179`` / ``[fd00::1]:179`` / ``10.0.0.1`` -> (address, port or None)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host.rstrip("]"), int(port) if port else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, None


def build(
    name: str,
    *,
    nodes: Mapping[str, Resource],
    bgppeers: Iterable[Resource] = (),
    bgpconfig: Resource | None = None,
    pools: Iterable[Resource] = (),
    affinities: Mapping[str, Any] | None = None,
) -> BirdModel:
    """The model for node ``name``; ModelError when that node has no IPv4 BGP address yet.

    ``affinities`` maps this host's block CIDRs (``10.0.0.64/26``) to their affinity records
    (``{"state": "confirmed"}``); pending or deleted affinities are not exported.
    """
    me = nodes.get(name)
    if me is None:
        raise ModelError(f"Node {name!r} does not exist in the datastore")
    my_ip = node_ipv4(me)
    if not my_ip:
        raise ModelError(f"Node {name!r}: spec.bgp.ipv4Address is not set")
    cfg = _spec(bgpconfig)
    global_as = int(cfg.get("asNumber") or DEFAULT_AS)
    mesh = cfg.get("nodeToNodeMeshEnabled", True) is not False
    listen_port = int(cfg["listenPort"]) if cfg.get("listenPort") else None

    my_ip6 = node_ipv4(me, 6)
    peers4 = _peers(name, me, nodes, bgppeers, global_as, listen_port, mesh, my_ip, 4)
    peers6 = (
        _peers(name, me, nodes, bgppeers, global_as, listen_port, mesh, my_ip6, 6) if my_ip6 else ()
    )
    pool_cidrs = sorted(
        {
            str(ipaddress.ip_network(str(_spec(p).get("cidr")), strict=False))
            for p in pools
            if _spec(p).get("cidr") and not _spec(p).get("disableBGPExport")
        },
        key=_net_key,
    )
    blocks = sorted(
        (c for c, aff in (affinities or {}).items() if _affinity_live(aff)), key=_net_key
    )
    my_addr = str((_spec(me).get("bgp") or {}).get("ipv4Address") or "")
    try:
        subnet = str(ipaddress.ip_interface(my_addr).network)
    except ValueError as exc:
        raise ModelError(f"Node {name!r}: spec.bgp.ipv4Address {my_addr!r}: {exc}") from None
    return BirdModel(
        node_name=name,
        router_id=my_ip,
        local_as=node_as(me, global_as),
        log_severity=str(cfg.get("logSeverityScreen") or "Info"),
        rr_cluster_id=_rr_cluster(me),
        listen_port=listen_port,
        peers=peers4,
        pools=_family(pool_cidrs, 4),
        subnet=subnet,
        encap_pools=encap_pools(pools),
        blocks=_family(blocks, 4),
        ipv6_address=my_ip6,
        peers6=peers6,
        pools6=_family(pool_cidrs, 6) if my_ip6 else (),
        blocks6=_family(blocks, 6) if my_ip6 else (),
    )


def _peers(
    name: str,
    me: Resource,
    nodes: Mapping[str, Resource],
    bgppeers: Iterable[Resource],
    global_as: int,
    listen_port: int | None,
    mesh: bool,
    my_ip: str,
    version: int,
) -> tuple[Peer, ...]:
    candidates: list[Peer] = []
    if mesh:
        for other in sorted(nodes):
            if other != name:
                p = _peer_of_node("Mesh", nodes[other], me, global_as, listen_port, version)
                if p is not None:
                    candidates.append(p)
    candidates += _explicit_peers(name, me, nodes, bgppeers, global_as, listen_port, version)
    peers: dict[str, Peer] = {}
    for p in candidates:
        if p.address != my_ip and p.address not in peers:
            peers[p.address] = p
    return tuple(peers.values())


def encap_mode(pool: Resource) -> str:
    """The pool's encapsulation: "Always", "CrossSubnet" or "Never" (IPIP and VXLAN alike)."""
    spec = _spec(pool)
    modes = {str(spec.get("ipipMode") or "Never"), str(spec.get("vxlanMode") or "Never")}
    for mode in ("Always", "CrossSubnet"):
        if mode in modes:
            return mode
    return "Never"


def encap_pools(pools: Iterable[Resource]) -> tuple[tuple[str, str], ...]:
    """(CIDR, mode) of every IPv4 pool the agent encapsulates for, by address."""
    out = []
    for p in pools:
        mode, cidr = encap_mode(p), _spec(p).get("cidr")
        if mode == "Never" or not cidr:
            continue
        net = ipaddress.ip_network(str(cidr), strict=False)
        if net.version == 4:
            out.append((str(net), mode))
    return tuple(sorted(set(out), key=lambda e: _net_key(e[0])))


def _family(cidrs: Iterable[str], version: int) -> tuple[str, ...]:
    return tuple(c for c in cidrs if ipaddress.ip_network(c).version == version)


def _net_key(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address), net.prefixlen


def _affinity_live(aff: Any) -> bool:
    if not isinstance(aff, Mapping):
        return True  # an affinity with no record (old layout) counts as confirmed
    return not aff.get("deleted") and aff.get("state", "confirmed") == "confirmed"
