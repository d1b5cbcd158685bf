"""Checks on IPPools that need the datastore, run before a command writes anything.

Calico refuses an IPPool whose CIDR overlaps another pool's, and refuses to change an existing
pool's ``cidr`` or ``blockSize`` (IPAM blocks already carved from it would no longer fit). These
need the pools already stored, so they cannot live in :mod:`calico.model.validation`; calicoctl
runs them over the whole batch, together with the pools in the datastore, and writes nothing if
any fails.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.datastore.client import Client

Resource = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check(client: Client, resources: list[Resource], *, replacing: bool) -> list[str]:
    """Problems with the batch's IPPools (empty when fine). ``replacing``: apply/replace, where a
    pool of the same name is replaced rather than reported as existing."""
    batch = [r for r in resources if r.get("kind") == "IPPool"]
    if not batch:
        return []
    stored = {p["metadata"]["name"]: p for p in client.list("IPPool")}
    problems: list[str] = []
    if replacing:
        problems += _immutable_fields(batch, stored)
    pools: dict[str, Network] = {
        name: ipaddress.ip_network(p["spec"]["cidr"], strict=False)
        for name, p in stored.items()
        if (p.get("spec") or {}).get("cidr")
    }
    for pool in batch:
        if replacing or pool["metadata"]["name"] not in stored:
            pools[pool["metadata"]["name"]] = ipaddress.ip_network(pool["spec"]["cidr"])
    for pool in batch:
        name = pool["metadata"]["name"]
        net = pools.get(name)
        for other, other_net in pools.items():
            if net is None or other == name or net.version != other_net.version:
                continue
            if net.overlaps(other_net):
                problems.append(
                    f"IPPool({name}): spec.cidr: {net} overlaps IPPool({other}) ({other_net})"
                )
    return problems


def _immutable_fields(batch: list[Resource], stored: dict[str, Resource]) -> list[str]:
    problems = []
    for pool in batch:
        name = pool["metadata"]["name"]
        old = (stored.get(name) or {}).get("spec") or {}
        for key in ("cidr", "blockSize"):
            new = pool["spec"].get(key)
            if old.get(key) is not None and _norm(key, old[key]) != _norm(key, new):
                problems.append(
                    f"IPPool({name}): spec.{key}: cannot be changed from {old[key]!r} to {new!r}"
                )
    return problems


def _norm(key: str, value: Any) -> str:
    if key == "cidr":
        try:
            return str(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            pass
    return str(value)
