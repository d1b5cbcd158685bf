"""Plain-text renderings of lab state for the terminal (``calico-lab status``)."""

from __future__ import annotations

from typing import Any


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _services(services: dict[str, Any]) -> str:
    """``felix:up bgp:up bird:up``; a restarted or stopped service says so."""
    out = []
    for name, svc in sorted(services.items()):
        word = "up" if svc.get("running") else "DOWN"
        if svc.get("restarts"):
            word += f"({svc['restarts']} restarts)"
        out.append(f"{name}:{word}")
    return " ".join(out) or "-"


def _tunnels(tunnels: dict[str, str]) -> str:
    """``vxlan 192.168.3.0 66:a1:..`` / ``ipip 192.168.3.1``; ``-`` when the node has none."""
    out = []
    if tunnels.get("ipip"):
        out.append(f"ipip {tunnels['ipip']}")
    if tunnels.get("vxlan"):
        out.append(f"vxlan {tunnels['vxlan']} {tunnels.get('vxlan_mac') or '(no MAC)'}")
    return "; ".join(out) or "-"


def _network(net: dict[str, Any]) -> str:
    nat = "on" if net.get("nat_outgoing") else "off"
    return (
        f"network: {net.get('subnets', 1)} subnet(s); IPIP {net.get('ipip')}, VXLAN "
        f"{net.get('vxlan')}, natOutgoing {nat}, backend {net.get('backend')}, pod MTU "
        f"{net.get('mtu')}"
    )


def _outside(out: dict[str, Any]) -> str:
    serving = "serving TCP/UDP 80" if out.get("serving") else "NOT SERVING"
    if not out.get("exists"):
        serving = "NAMESPACE MISSING"
    return f"outside: {out.get('ip')} ({out.get('netns')}) {serving}"


def _kubernetes(kube: dict[str, Any]) -> str:
    if kube.get("error"):
        return f"kubernetes: {kube['apiserver']} NOT ANSWERING ({kube['error']})"
    ready = kube.get("nodes_ready") or {}
    up = ", ".join(n for n, ok in sorted(ready.items()) if ok) or "none"
    return (
        f"kubernetes: {kube['apiserver']} (calico-lab kubectl ...); Calico {kube['calico']}; "
        f"nodes Ready: {up}"
    )


def _node_row(n: dict[str, Any]) -> list[str]:
    sessions = n["bgp"]
    up = sum(1 for s in sessions if "Established" in s["info"])
    peers = ", ".join(f"{s['name']}:{s['info'] or s['state']}" for s in sessions) or "-"
    return [
        n["name"],
        n["ip"],
        n.get("subnet", "-"),
        "running" if n["running"] else "STOPPED",
        _services(n.get("services") or {}),
        f"{up}/{len(sessions)}",
        _tunnels(n.get("tunnels") or {}),
        peers,
    ]


def _etcd(etcd: dict[str, Any]) -> str:
    members = etcd.get("members") or []
    tls = " (client mTLS)" if etcd.get("tls") else ""
    if len(members) <= 1:
        return f"etcd: {etcd['endpoint']}{tls} {'running' if etcd['running'] else 'NOT RUNNING'}"
    up = sum(1 for m in members if m["running"])
    each = ", ".join(f"{m['endpoint']} {'up' if m['running'] else 'DOWN'}" for m in members)
    return f"etcd: {up}/{len(members)} members{tls}: {each}"


def _typha(t: dict[str, Any]) -> str:
    tls = " (mTLS)" if t.get("tls") else ""
    if not t["running"]:
        return f"typha: {t['address']}{tls} NOT RUNNING"
    ready = "ready" if t["ready"] else "NOT READY"
    return f"typha: {t['address']}{tls} {ready}, {t['connections']} agent(s) connected"


def status_text(snap: dict[str, Any]) -> str:
    etcd = snap["etcd"]
    lines = [
        f"lab {snap['name']} ({snap['dir']})",
        _etcd(etcd),
    ]
    ds = snap.get("datastore") or {}
    if ds.get("type") == "kubernetes":
        lines.append(f"{ds['where']}: {'running' if ds['running'] else 'NOT RUNNING'}")
    if snap.get("typha"):
        lines.append(_typha(snap["typha"]))
    if "network" in snap:
        lines.append(_network(snap["network"]))
    if "outside" in snap:
        lines.append(_outside(snap["outside"]))
    if "kubernetes" in snap:
        lines.append(_kubernetes(snap["kubernetes"]))
    lines.append("")
    header = ["NODE", "IP", "SUBNET", "CALICO-NODE", "SERVICES", "BGP", "TUNNELS", "SESSIONS"]
    lines += _table(header, [_node_row(n) for n in snap["nodes"]])
    if snap.get("datastore_error"):
        lines.append(f"(tunnel addresses unknown: {snap['datastore_error']})")
    lines.append("")
    pod_rows = [
        [
            p["pod"],
            p["node"],
            p["ip"] or "-",
            "yes" if p["responder"] else "NO",
            ",".join(f"{k}={v}" for k, v in sorted(p["labels"].items())) or "-",
        ]
        for p in snap["pods"]
    ]
    if pod_rows:
        lines += _table(["POD", "NODE", "IP", "SERVING", "LABELS"], pod_rows)
    else:
        lines.append("no pods (calico-lab apply -f examples/pods.yaml)")
    return "\n".join(lines)
