"""Flow aggregation (per 5-tuple, verdict point and interval; bounded) and flow records (points
named through the dataplane's registry and plans, both ends through the graph)."""

from __future__ import annotations

import dataclasses

from calico.agent import flow_collect, flow_records
from calico.calc.graph import CalcGraph
from calico.dataplane import flowlog_render
from calico.dataplane import nft_render as r
from calico.dataplane.nflog import LogPacket
from calico.dpapi import flows
from tests import tier_world as tw
from tests.unit.calc import states
from tests.unit.dataplane import dp_fixtures

A, B = tw.BY_NAME["a"], tw.BY_NAME["b"]


def pkt(prefix: str, sport: int = 40000, *, mark: int = 0, stamp: float = 100.0) -> LogPacket:
    return LogPacket(prefix, mark, indev=3, outdev=7, family=4, src=A.ip, dst=B.ip, proto=6,
                     sport=sport, dport=80, length=60, timestamp=stamp)  # fmt: skip


def test_aggregation_per_flow_and_point() -> None:
    agg = flow_collect.Aggregator(max_flows=10, clock=lambda: 5.0)
    deny = "DI:0123456789ab"
    agg.add([pkt(deny, stamp=10.0), pkt(deny, stamp=12.0), pkt(deny, sport=40001)])
    agg.add([pkt("DIS:aaaaaaaaaaaa"), pkt("calico-packet: "), pkt("AE:bbbbbbbbbbbb")])
    batch = agg.drain()
    assert batch.packets == 5  # ours: real and staged
    assert batch.foreign == 1
    first = batch.flows[((flows.INGRESS, 6, A.ip, 40000, B.ip, 80), "0123456789ab")]
    assert (first.first, first.last, first.packets, first.bytes) == (10.0, 12.0, 2, 120)
    assert first.action == flows.DENY
    assert first.ifindex == 7  # ingress: the interface it left by (the workload's)
    egress = batch.flows[((flows.EGRESS, 6, A.ip, 40000, B.ip, 80), "bbbbbbbbbbbb")]
    assert egress.ifindex == 3
    assert batch.staged == {(flows.INGRESS, 6, A.ip, 40000, B.ip, 80): "aaaaaaaaaaaa"}
    assert len(batch.flows) == 3
    assert agg.drain().flows == {}  # drained: the next interval starts empty


def test_aggregation_is_bounded() -> None:
    agg = flow_collect.Aggregator(max_flows=100)
    agg.add([pkt("DI:0123456789ab", sport=p) for p in range(1000)])
    agg.add([pkt("DI:0123456789ab", sport=5)])  # a known flow still counts
    batch = agg.drain()
    assert len(batch.flows) == 100
    assert batch.overflow == 900
    assert batch.flows[((flows.INGRESS, 6, A.ip, 5, B.ip, 80), "0123456789ab")].packets == 2


def _dataplane(objs: list[dict[str, object]]) -> tuple[CalcGraph, object]:
    graph = CalcGraph(tw.NODE)
    graph.on_in_sync()
    msgs = states.feed(graph, states.kvs([*objs, *(tw.wep(w) for w in tw.WORKLOADS)]))
    dp = dp_fixtures.dataplane(dp_fixtures.RecordingRunner())
    dp.set_config(dataclasses.replace(dp.config, flow_logs=flowlog_render.FlowLogConfig(True)))
    for msg in msgs:
        dp.on_update(msg)
    return graph, dp


def test_records_name_points_tiers_ends_and_staged_verdicts() -> None:
    deny = tw.Policy("p0", "default", 1, "app == 'b'", [tw.Rule("Deny", protocol="TCP")], [], None)
    world = tw.World(tiers={}, policies=[deny])
    staged = deny.resource()
    staged["kind"] = "StagedGlobalNetworkPolicy"
    staged["spec"] = {"stagedAction": "Delete"}
    graph, dp = _dataplane([*world.resources(), staged])
    point = flows.VerdictPoint(flows.DENY, flows.INGRESS, flows.BY_RULE, policy="p0", rule=0)
    assert dp.points.lookup(point.ident()) == point  # type: ignore[attr-defined]
    staged_point = flows.VerdictPoint(flows.ALLOW, flows.INGRESS, flows.BY_PROFILE, staged=True,
                                      profile="kns.default", rule=0)  # fmt: skip
    assert dp.points.lookup(staged_point.ident()) == staged_point  # type: ignore[attr-defined]
    batch = flow_collect.Batch()
    key = (flows.INGRESS, 6, A.ip, 40000, B.ip, 80)
    batch.flows[(key, point.ident())] = flow_collect.FlowAcc(
        1.0, 2.0, flows.DENY, packets=3, bytes=180, mark=r.MARK_STAGED_ALLOW, ifindex=9
    )
    batch.staged[key] = staged_point.ident()
    ctx = flow_records.Context(
        host="node1",
        points=dp.points,  # type: ignore[attr-defined]
        endpoints=dp.endpoints,  # type: ignore[attr-defined]
        describe=graph.describe_addresses,
        iface_name={9: B.iface}.get,
    )
    (rec,) = flow_records.records(batch, ctx)
    assert rec["policy"] == {"by": "rule", "tier": "default", "policy": "p0", "rule": 0}
    assert rec["staged"] == {
        "action": "allow",
        "point": {"by": "profile", "tier": None, "profile": "kns.default", "rule": 0},
        "policies": ["staged:p0"],
    }
    assert rec["reporter"] == "dst"
    assert (rec["action"], rec["proto"], rec["packets"]) == ("deny", "tcp", 3)
    assert (rec["source_name"], rec["source_type"]) == ("a", "wep")
    assert rec["source_namespace"] == "default"
    assert rec["dest_labels"]["app"] == "b"
    assert set(rec) == set(flows.RECORD_FIELDS)
    # An address nobody holds, an unknown point, an interface that is not ours.
    batch.flows = {((flows.EGRESS, 17, "192.0.2.9", 1, B.ip, 53), "ffffffffffff"):
                   flow_collect.FlowAcc(1.0, 1.0, flows.ALLOW, packets=1)}  # fmt: skip
    (rec,) = flow_records.records(batch, ctx)
    assert rec["source_type"] == "net"
    assert rec["source_name"] is None
    assert rec["policy"] == {"by": "unknown", "id": "ffffffffffff"}
    assert rec["action"] == "allow"
    assert rec["staged"] is None
