"""Flow records for people: filters, one-line descriptions, the table, and a staged policy's
impact (pure; ``calicoctl flows`` and ``calicoctl policy impact`` do the I/O).

A record is one line of the agent's ``flows.log`` (fields: ``calico.dpapi.flows.RECORD_FIELDS``).
The impact of a staged policy is computed from the records alone: those whose staged verdict is
known and differs from the real one, on an endpoint where that staged policy was in play
(``staged.policies``), split into allowed -> denied and denied -> allowed, each grouped by
(source, destination, protocol, port).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from calico.dpapi import flows

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Filter:
    node: str | None = None
    action: str | None = None  # "allow" | "deny"
    since: float | None = None  # seconds before now
    now: float = 0.0

    def keep(self, rec: Record) -> bool:
        if self.node is not None and rec.get("host") != self.node:
            return False
        if self.action is not None and rec.get("action") != self.action:
            return False
        if self.since is not None:
            now = self.now or time.time()
            if float(rec.get("end_time") or 0) < now - self.since:
                return False
        return True


def select(records: Iterable[Record], flt: Filter) -> Iterator[Record]:
    return (r for r in records if flt.keep(r))


# ---- words ----------------------------------------------------------------------------------


def endpoint(rec: Record, side: str) -> str:
    """``ns/name`` of a workload, ``name`` of a host endpoint or global set, else the address."""
    name, ns = rec.get(f"{side}_name"), rec.get(f"{side}_namespace")
    if name:
        return f"{ns}/{name}" if ns else str(name)
    return str(rec.get(f"{side}_ip"))


def port(rec: Record) -> str:
    p = rec.get("dest_port")
    return f"{rec.get('proto')}/{p}" if p is not None else str(rec.get("proto"))


def point(p: dict[str, Any] | None) -> str:
    """What decided, in words."""
    if not p:
        return "-"
    by, tier = p.get("by"), p.get("tier")
    if by == flows.BY_RULE:
        where = f"{tier}/" if tier else ""
        return f"{where}{p.get('policy')} rule {p.get('rule')}"
    if by == flows.BY_TIER_DEFAULT:
        return f"{tier}: end of tier (default deny)"
    if by == flows.BY_PROFILE:
        rule = f" rule {p['rule']}" if p.get("rule") is not None else ""
        return f"profile {p.get('profile')}{rule}"
    if by == flows.BY_NO_PROFILE:
        return "no policy or profile allowed (end of chain)"
    if by == flows.BY_TIER:
        return f"{tier}: a policy allowed"
    return f"unknown point {p.get('id')}"


def staged_text(rec: Record) -> str:
    staged = rec.get("staged")
    if not staged:
        return "-"
    action = staged.get("action") or "?"
    return f"{action} ({point(staged.get('point'))})" if staged.get("point") else action


COLUMNS = ("TIME", "NODE", "REPORTER", "ACTION", "SOURCE", "DEST", "PORT", "POLICY", "STAGED",
           "PACKETS")  # fmt: skip


def row(rec: Record) -> list[str]:
    stamp = time.strftime("%H:%M:%S", time.localtime(float(rec.get("end_time") or 0)))
    return [
        stamp,
        str(rec.get("host")),
        str(rec.get("reporter")),
        str(rec.get("action")),
        endpoint(rec, "source"),
        endpoint(rec, "dest"),
        port(rec),
        point(rec.get("policy")),
        staged_text(rec),
        str(rec.get("packets")),
    ]


def table(rows: list[list[str]], *, header: bool = True) -> str:
    body = ([list(COLUMNS)] if header else []) + rows
    if not body:
        return ""
    widths = [max(len(r[i]) for r in body) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )


# ---- impact ---------------------------------------------------------------------------------


def impact(records: Iterable[Record], staged_id: str) -> dict[str, Any]:
    """The flows whose verdict ``staged_id`` (``[ns/]staged:<name>``) would change."""
    groups: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {
        "allowed_to_denied": {},
        "denied_to_allowed": {},
    }
    seen: dict[str, set[tuple[Any, ...]]] = {k: set() for k in groups}
    unchanged: set[tuple[Any, ...]] = set()
    for rec in records:
        staged = rec.get("staged") or {}
        if staged_id not in (staged.get("policies") or ()) or not staged.get("action"):
            continue
        if staged["action"] == rec.get("action"):
            unchanged.add(flows.flow_key(rec))
            continue
        which = "allowed_to_denied" if rec.get("action") == flows.ALLOW else "denied_to_allowed"
        key = (endpoint(rec, "source"), endpoint(rec, "dest"), port(rec))
        entry = groups[which].setdefault(
            key,
            {"source": key[0], "dest": key[1], "port": key[2], "flows": 0, "packets": 0,
             "staged_point": point(staged.get("point")), "keys": set()},
        )  # fmt: skip
        entry["keys"].add(flows.flow_key(rec))
        entry["packets"] += int(rec.get("packets") or 0)
        seen[which].add(flows.flow_key(rec))
    out: dict[str, Any] = {"policy": staged_id, "unchanged_flows": len(unchanged)}
    for which, by_key in groups.items():
        entries = []
        for entry in by_key.values():
            entry["flows"] = len(entry.pop("keys"))
            entries.append(entry)
        entries.sort(key=lambda e: (-e["flows"], e["source"], e["dest"], e["port"]))
        out[which] = {
            "flows": len(seen[which]),
            "packets": sum(e["packets"] for e in entries),
            "endpoints": entries,
        }
    return out


def impact_text(report: dict[str, Any], what: str, since: str | None) -> str:
    window = f" in the last {since}" if since else ""
    lines = [f"{what}: impact on the flows observed{window}"]
    for which, title in (("allowed_to_denied", "allowed -> denied"),
                         ("denied_to_allowed", "denied -> allowed")):  # fmt: skip
        part = report[which]
        lines.append(f"  {title}: {part['flows']} flows, {part['packets']} packets")
        for e in part["endpoints"]:
            lines.append(
                f"    {e['source']} -> {e['dest']} {e['port']}: {e['flows']} flows, "
                f"{e['packets']} packets (staged: {e['staged_point']})"
            )
    lines.append(f"  unchanged: {report['unchanged_flows']} flows")
    return "\n".join(lines)
