"""``calico-lab status``: a snapshot of a lab as plain data (rendered by :mod:`calico_lab.views`).

Per node: its subnet and address, calico-node's own report (``health.json``), BGP sessions from
``birdc`` and the tunnel addresses calico-node stored in its Node resource
(``spec.bgp.ipv4IPIPTunnelAddr``, ``spec.ipv4VXLANTunnelAddr``, ``spec.vxlanTunnelMACAddr``); then
the network options the lab was made with, the outside host and the pods. Reading never changes
anything; a datastore that does not answer leaves the tunnel columns empty and says so.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from calico.lib import netns
from calico_lab import daemons, etcd, network, nodes, state
from calico_lab.state import LabState
from calico_lab.store import LabStore


def tunnel_addresses(node: dict[str, Any]) -> dict[str, str]:
    """The tunnel fields of one Node resource ("" where unset)."""
    spec = node.get("spec") or {}
    return {
        "ipip": str((spec.get("bgp") or {}).get("ipv4IPIPTunnelAddr") or ""),
        "vxlan": str(spec.get("ipv4VXLANTunnelAddr") or ""),
        "vxlan_mac": str(spec.get("vxlanTunnelMACAddr") or ""),
    }


def _node_resources(lab: LabState) -> tuple[dict[str, dict[str, Any]], str]:
    """Node resources by name, and "" or why they could not be read."""
    if not netns.exists(lab.core) or not any(etcd.running(lab)):
        return {}, "etcd is not running"
    try:
        store = LabStore.of(lab)
    except Exception as exc:
        return {}, f"etcd did not answer ({exc})"
    try:
        found = store.list("nodes")
    except Exception as exc:
        return {}, f"listing Node resources failed ({exc})"
    finally:
        store.close()
    return {str((n.get("metadata") or {}).get("name")): n for n in found}, ""


def _padded(lab: LabState) -> list[bool]:
    """Whether each member runs (a member never started: not running)."""
    return (etcd.running(lab) + [False] * lab.etcd.members)[: lab.etcd.members]


def _datastore(lab: LabState) -> dict[str, Any]:
    """Calico's datastore: etcd, or (``--datastore kubernetes``) which API server, running."""
    if not lab.kdd:
        return {"type": "etcdv3"}
    from calico_lab import kdd

    pid = int(lab.kdd.get("relay_pid" if lab.kdd["apiserver"] == "external" else "pid") or 0)
    return {"type": "kubernetes", "apiserver": lab.kdd["apiserver"], "where": kdd.describe(lab),
            "running": daemons.alive(pid)}  # fmt: skip


def _typha(lab: LabState) -> dict[str, Any] | None:
    """``--typha``: where it listens, whether it runs, is ready and how many agents it serves."""
    if not lab.typha:
        return None
    from calico_lab import typha

    running = daemons.alive(lab.typha_pid)
    code, detail = typha.readiness(lab) if running else (0, {})
    return {
        "address": typha.address(),
        "running": running,
        "ready": code == 200,
        "connections": detail.get("connections", 0),
        "tls": lab.etcd.tls,
    }


def snapshot(name: str) -> dict[str, Any]:
    """Nodes (process, subnet, BGP sessions, tunnel addresses), etcd, outside, pods."""
    lab = state.require(name)
    with ThreadPoolExecutor(max_workers=max(1, len(lab.nodes))) as pool:
        sessions = list(pool.map(lambda n: nodes.bgp_sessions(lab, n), lab.nodes))
    resources, datastore_error = _node_resources(lab)
    snap = {
        "name": lab.name,
        "dir": lab.dir,
        "ready": lab.ready,
        "network": {**asdict(lab.network), "mtu": lab.network.mtu},
        "etcd": {
            "endpoint": lab.etcd_endpoint,
            "running": any(etcd.running(lab)),
            "members": [
                {"endpoint": url, "running": up}
                for url, up in zip(lab.etcd.endpoints(), _padded(lab), strict=True)
            ],
            "tls": lab.etcd.tls,
        },
        "datastore": _datastore(lab),
        "datastore_error": datastore_error,
        "typha": _typha(lab),
        "nodes": [
            {
                "name": n.name,
                "ip": n.ip,
                "subnet": network.subnet_cidr(n.subnet),
                "netns": n.netns,
                "running": daemons.alive(n.pid),
                "services": nodes.services(lab, n),
                "bgp": s,
                "tunnels": tunnel_addresses(resources.get(n.name, {})),
            }
            for n, s in zip(lab.nodes, sessions, strict=True)
        ],
        "outside": {
            "ip": network.OUTSIDE_IP,
            "netns": lab.outside,
            "exists": netns.exists(lab.outside),
            "serving": daemons.alive(lab.outside_pid),
        },
        "pods": [
            {
                "pod": p.key,
                "node": p.node,
                "ip": p.ip,
                "netns": p.netns,
                "responder": daemons.alive(p.responder_pid),
                "labels": p.labels,
            }
            for p in sorted(lab.pods.values(), key=lambda p: p.key)
        ],
    }
    if lab.kubernetes:  # nodes and pods as the API server sees them
        from calico_lab import k8s_cluster

        k8s_cluster.amend_status(lab, snap)
    return snap
