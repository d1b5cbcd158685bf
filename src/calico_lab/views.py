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


def status_text(snap: dict[str, Any]) -> str:
    etcd = snap["etcd"]
    lines = [
        f"lab {snap['name']} ({snap['dir']})",
        f"etcd: {etcd['endpoint']} {'running' if etcd['running'] else 'NOT RUNNING'}",
        "",
    ]
    node_rows = []
    for n in snap["nodes"]:
        sessions = n["bgp"]
        up = sum(1 for s in sessions if "Established" in s["info"])
        peers = ", ".join(f"{s['name']}:{s['info'] or s['state']}" for s in sessions) or "-"
        node_rows.append(
            [
                n["name"],
                n["ip"],
                "running" if n["running"] else "STOPPED",
                _services(n.get("services") or {}),
                f"{up}/{len(sessions)}",
                peers,
            ]
        )
    lines += _table(["NODE", "IP", "CALICO-NODE", "SERVICES", "BGP", "SESSIONS"], node_rows)
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
