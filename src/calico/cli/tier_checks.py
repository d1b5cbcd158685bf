"""Checks on tiers that need the datastore, run over a whole command before anything is written.

Calico creates a policy only in a tier that exists, never deletes a built-in tier (``default``,
``kube-admin``, ``kube-baseline``) and never deletes a tier that still holds policies. The
datastore ``Client`` enforces each rule per resource; calicoctl checks the whole batch first (a
tier created by the same input counts, a policy deleted by the same input before its tier counts
as gone) so that a bad batch writes nothing, and orders the writes so that tiers are created
before the policies in them and deleted after them.
"""

from __future__ import annotations

from typing import Any

from calico.datastore.client import BUILT_IN_TIERS, POLICY_KINDS, Client

Resource = dict[str, Any]


def _tier_of(res: Resource) -> str:
    return str((res.get("spec") or {}).get("tier") or "default")


def _ident(res: Resource) -> tuple[str, str | None, str]:
    meta = res["metadata"]
    ns = meta.get("namespace") if res["kind"] in ("NetworkPolicy", "StagedNetworkPolicy") else None
    return res["kind"], ns, meta["name"]


def check_writes(client: Client, resources: list[Resource]) -> list[str]:
    """Policies naming a tier that neither exists nor is created by this batch."""
    wanted = {
        _tier_of(r)
        for r in resources
        if r.get("kind") in POLICY_KINDS and _tier_of(r) not in BUILT_IN_TIERS
    }
    if not wanted:
        return []
    known = {t["metadata"]["name"] for t in client.list("Tier")}
    known |= {r["metadata"]["name"] for r in resources if r.get("kind") == "Tier"}
    return [
        f"{r['kind']}({r['metadata']['name']}): spec.tier: tier {_tier_of(r)!r} does not exist"
        for r in resources
        if r.get("kind") in POLICY_KINDS and _tier_of(r) not in known | set(BUILT_IN_TIERS)
    ]


def check_deletes(client: Client, resources: list[Resource]) -> list[str]:
    """Tiers this batch would delete that are built in, or that still hold policies."""
    problems: list[str] = []
    deleted: set[tuple[str, str | None, str]] = set()
    for r in order_deletes(resources):
        if r.get("kind") in POLICY_KINDS:
            deleted.add(_ident(r))
        if r.get("kind") != "Tier":
            continue
        name = r["metadata"]["name"]
        if name in BUILT_IN_TIERS:
            problems.append(f"Tier({name}): Cannot delete {name} tier")
            continue
        held = [
            p
            for kind in POLICY_KINDS
            for p in client.list(kind)
            if _tier_of(p) == name and _ident(p) not in deleted
        ]
        if held:
            names = ", ".join(_describe(p) for p in held[:5])
            problems.append(
                f"Tier({name}): Cannot delete a non-empty tier: it holds {len(held)} "
                f"polic{'y' if len(held) == 1 else 'ies'} ({names})"
            )
    return problems


def _describe(res: Resource) -> str:
    kind, ns, name = _ident(res)
    return f"{kind}({ns}/{name})" if ns else f"{kind}({name})"


def order_writes(resources: list[Resource]) -> list[Resource]:
    """Tiers first (stable otherwise): a policy's tier exists by the time it is written."""
    return sorted(resources, key=lambda r: r.get("kind") != "Tier")


def order_deletes(resources: list[Resource]) -> list[Resource]:
    """Tiers last: their policies are gone by the time they are deleted."""
    return sorted(resources, key=lambda r: r.get("kind") == "Tier")
