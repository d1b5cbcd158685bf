"""An interval's aggregated flows -> flow records: the verdict points named, both ends named.

For each flow (``flow_collect.Batch``):

* the real verdict point, from its prefix id through the dataplane's registry
  (``flowlog_render.Points``); a policy rule's tier from the reporting endpoint's plan;
* the reporting endpoint's chain, from the interface the packet crossed (``EndpointManager
  .chain_by_iface``): when that chain has a staged plan, the staged verdict is the mark bits the
  staged walk left on the packet, its deciding point the staged message logged for the same
  5-tuple, and ``policies`` the staged policies in play there (each staged policy the plan holds,
  and ``staged:<name>`` of each policy the staged view removes: a staged Set replaces it or a
  staged Delete deletes it);
* source and destination: the endpoint or network set holding the address (``CalcGraph
  .describe_addresses``), else ``net``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from calico.agent import flow_collect
from calico.calc import address_owners
from calico.dataplane import endpoint_manager, flowlog_render, nflog
from calico.dataplane import nft_render as r
from calico.dpapi import flows
from calico.dpapi import messages as m
from calico.dpapi import policy_plan as plan

HEP_STEMS = ("cali-fh-", "cali-th-")
Describe = Callable[[Iterable[str]], dict[str, address_owners.AddressOwner]]


@dataclass(frozen=True, slots=True)
class Context:
    host: str
    points: flowlog_render.Points
    endpoints: endpoint_manager.EndpointManager
    describe: Describe
    iface_name: Callable[[int], str | None]
    include_hep: bool = False


def _tier_of(chain: plan.ChainPlan | None, policy: str | None) -> str | None:
    if chain is None or policy is None:
        return None
    for step in chain.steps:
        if any(str(pid) == policy for pid in step.policies):
            return step.tier
    return None


def _point(ctx: Context, ident: str | None, chain: plan.ChainPlan | None) -> dict[str, Any] | None:
    point = ctx.points.lookup(ident) if ident else None
    if point is None:
        return {"by": "unknown", "id": ident} if ident else None
    return flows.point_json(point, tier=_tier_of(chain, point.policy))


def _in_play(real: plan.ChainPlan | None, staged: plan.ChainPlan) -> list[str]:
    staged_ids = {pid for step in staged.steps for pid in step.policies}
    out = {str(pid) for pid in staged_ids if pid.name.startswith(flows.STAGED_PREFIX)}
    for step in real.steps if real else ():
        for pid in step.policies:
            if pid not in staged_ids:
                out.add(str(m.PolicyID(pid.namespace, flows.STAGED_PREFIX + pid.name)))
    return sorted(out)


def _staged(
    ctx: Context, chain: str | None, acc: flow_collect.FlowAcc, staged_ident: str | None
) -> dict[str, Any] | None:
    staged = ctx.endpoints.staged_plans.get(chain) if chain else None
    if staged is None:
        return None
    real = ctx.endpoints.plans.get(chain) if chain else None
    action = None
    if acc.mark & r.MARK_STAGED_DENY:
        action = flows.DENY
    elif acc.mark & r.MARK_STAGED_ALLOW:
        action = flows.ALLOW
    return {
        "action": action,
        "point": _point(ctx, staged_ident, staged),
        "policies": _in_play(real, staged),
    }


def _end(prefix: str, ip: str, port: int | None, owner: address_owners.AddressOwner | None
         ) -> dict[str, Any]:  # fmt: skip
    return {
        f"{prefix}_ip": ip,
        f"{prefix}_port": port,
        f"{prefix}_type": owner.type if owner else "net",
        f"{prefix}_namespace": owner.namespace if owner else None,
        f"{prefix}_name": owner.name if owner else None,
        f"{prefix}_labels": dict(owner.labels) if owner else {},
    }


def records(batch: flow_collect.Batch, ctx: Context) -> Iterator[dict[str, Any]]:
    """The flow records of ``batch``, oldest first, one at a time (a flood's interval may hold
    tens of thousands: they are written as they are made, never all held at once); flows of host
    endpoints only when ``include_hep``."""
    addrs = {ip for (key, _), _acc in batch.flows.items() for ip in (key[2], key[4])}
    owners = ctx.describe(addrs) if addrs else {}
    names: dict[int, str | None] = {}
    for (key, ident), acc in sorted(batch.flows.items(), key=lambda kv: kv[1].first):
        direction, proto, src, sport, dst, dport = key
        inbound = direction == flows.INGRESS
        if acc.ifindex not in names:
            names[acc.ifindex] = ctx.iface_name(acc.ifindex) if acc.ifindex else None
        iface = names[acc.ifindex]
        chain = ctx.endpoints.chain_by_iface.get((iface, inbound)) if iface else None
        if chain is not None and chain.startswith(HEP_STEMS) and not ctx.include_hep:
            continue
        ports = proto in (6, 17, 132)
        rec: dict[str, Any] = {
            "start_time": round(acc.first, 3),
            "end_time": round(acc.last, 3),
            "host": ctx.host,
            "reporter": "dst" if inbound else "src",
            "action": acc.action,
            "policy": _point(ctx, ident, ctx.endpoints.plans.get(chain) if chain else None),
            "staged": _staged(ctx, chain, acc, batch.staged.get(key)),
            "proto": _proto(proto),
            **_end("source", src, sport if ports else None, owners.get(src)),
            **_end("dest", dst, dport if ports else None, owners.get(dst)),
            "packets": acc.packets,
            "bytes": acc.bytes,
        }
        yield rec


def _proto(number: int) -> str | int:
    return nflog.PROTO_NAMES.get(number, number)
