"""Tiered evaluation, verdict by verdict, against a reference written from Calico's rules.

Random worlds (``tests/tier_world.py``: tiers with and without order, Deny and Pass defaults,
missing Tier resources, policies of both kinds in several tiers with Allow/Deny/Pass/Log rules)
go through the real calculation graph and the real dataplane managers; every packet between the
three workloads (3 ports/protocols) is then decided three ways and compared with the reference:

1. the plan walk (``policy_plan.evaluate``) over what the graph sent (the compiled structure);
2. the rendered nft chains, run by ``calico.dataplane.nft_trace`` (the ruleset itself);
3. the reference (``tier_world.verdict``), which never looks at the product's code.

The same worlds, applied to a real agent and probed with real packets, are in
``tests/integration/agent/test_agent_tiers.py``.
"""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc.graph import CalcGraph
from calico.dataplane import endpoint_render
from calico.dataplane.nft_trace import Interpreter, Packet
from calico.dpapi import messages as m
from calico.dpapi import policy_plan
from calico.dpapi.state import DataplaneState
from tests import tier_world as tw
from tests.unit.calc import states
from tests.unit.dataplane import dp_fixtures


def _graph(world: tw.World) -> tuple[CalcGraph, DataplaneState, list[m.Message]]:
    graph = CalcGraph(tw.NODE)
    graph.on_in_sync()
    objs = [*world.resources(), *(tw.wep(w) for w in tw.WORKLOADS)]
    msgs = states.feed(graph, states.kvs(objs))
    return graph, DataplaneState().apply_all(msgs), msgs


def _rule_matches(state: DataplaneState, rule: m.Rule, peer_ip: str, port: int, proto: str) -> bool:
    """A dpapi rule of the shapes tier_world makes, against one packet's peer, port, protocol."""
    if rule.protocol is not None and rule.protocol != proto.lower():
        return False
    if rule.dst_ports and str(port) not in rule.dst_ports:
        return False
    for set_id in rule.src_ipset_ids + rule.dst_ipset_ids:
        members = state.ipsets[set_id][1]
        if not any(ipaddress.ip_address(peer_ip) in ipaddress.ip_network(x) for x in members):
            return False
    return True


def _plan_verdict(state: DataplaneState, ep: m.WorkloadEndpoint, peer_ip: str, port: int,
                  proto: str, *, inbound: bool) -> bool:  # fmt: skip
    chain = policy_plan.chain_plan(ep.tiers, ep.profile_ids, inbound=inbound)

    def matches(rule: m.Rule) -> bool:
        return _rule_matches(state, rule, peer_ip, port, proto)

    def policy_hit(pid: m.PolicyID) -> policy_plan.RuleHit:
        pol = state.policies[pid]
        return policy_plan.first_hit(pol.inbound_rules if inbound else pol.outbound_rules, matches)

    def profile_hit(name: str) -> policy_plan.RuleHit:
        prof = state.profiles[name]
        rules = prof.inbound_rules if inbound else prof.outbound_rules
        return policy_plan.first_hit(rules, matches)

    return policy_plan.evaluate(chain, policy_hit, profile_hit).action == policy_plan.ALLOW


def _endpoint(state: DataplaneState, w: tw.Workload) -> m.WorkloadEndpoint:
    return state.workload_endpoints[f"wep:{tw.NAMESPACE}/{tw.NODE}-k8s-{w.name}-eth0"]


def _check(world: tw.World) -> None:
    graph, state, msgs = _graph(world)
    dp = dp_fixtures.dataplane(dp_fixtures.RecordingRunner())
    for msg in msgs:
        dp.on_update(msg)
    dp.complete_deferred_work()
    interp = Interpreter(dp.table.chains(), dp.table.sets())
    assert graph.full_recompute_differences() == []
    bad = []
    for src in tw.WORKLOADS:
        for dst in tw.WORKLOADS:
            if src == dst:
                continue
            for port, proto in tw.PORTS:
                want = tw.verdict(world, src.name, dst.name, port, proto)
                plan = _plan_verdict(
                    state, _endpoint(state, src), dst.ip, port, proto, inbound=False
                ) and _plan_verdict(state, _endpoint(state, dst), src.ip, port, proto, inbound=True)
                pkt = Packet(src.ip, dst.ip, proto.lower(), port)
                out = interp.run(f"cali-fw-{src.iface}", pkt).verdict != "drop"
                into = interp.run(f"cali-tw-{dst.iface}", pkt).verdict != "drop"
                if not want == plan == (out and into):
                    bad.append(
                        f"{src.name}->{dst.name} {proto}/{port}: reference {want}, plan {plan}, "
                        f"nft {out and into} (egress {out}, ingress {into})"
                    )
    assert not bad, world.describe() + "\n" + "\n".join(bad)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_tiered_verdicts_match_the_reference(seed: int) -> None:
    _check(tw.random_world(random.Random(seed)))


def test_pass_hands_to_the_next_tier_and_default_action_applies() -> None:
    """The cases by hand: Pass, each defaultAction, a skipped tier, Log going on."""
    deny_b = tw.Rule("Deny", peer="app == 'b'")
    world = tw.World(
        tiers={"platform": (100.0, "Deny"), "security": (50.0, "Pass")},
        policies=[
            tw.Policy("security.log", "security", 1, "all()", [tw.Rule("Log")], [], None),
            tw.Policy(
                "platform.gate",
                "platform",
                1,
                "app == 'a'",
                [deny_b, tw.Rule("Pass", peer="app == 'c'")],
                [],
                None,
            ),
            tw.Policy(
                "app", "default", 1, "app == 'a'", [tw.Rule("Allow", peer="team == 'y'")], [], None
            ),
        ],
    )
    # b -> a: denied in platform. c -> a: passed to default, allowed there.
    assert not tw.verdict(world, "b", "a", 80, "TCP")
    assert tw.verdict(world, "c", "a", 80, "TCP")
    # a -> b: no policy selects b for ingress in any tier: profile (allow).
    assert tw.verdict(world, "a", "b", 80, "TCP")
    _check(world)
    # platform's default Deny: c's rule removed -> c -> a hits the end of platform.
    world.policies[1].ingress = [deny_b]
    assert not tw.verdict(world, "c", "a", 80, "TCP")
    _check(world)
    world.tiers["platform"] = (100.0, "Pass")  # now it goes on to default, which allows c
    assert tw.verdict(world, "c", "a", 80, "TCP")
    _check(world)


def test_packet_cost_does_not_grow_with_tiers_that_do_not_apply() -> None:
    """Rules a packet to ``b`` traverses, with 0 and with 20 tiers of policies selecting only
    ``a``: the same (those tiers are not in b's chain at all)."""

    def cost(n_tiers: int) -> int:
        tiers: dict[str, tuple[float | None, str]] = {
            f"t{i}": (float(i), "Deny") for i in range(n_tiers)
        }
        pols = [
            tw.Policy(f"t{i}.only-a", f"t{i}", 1, "app == 'a'", [tw.Rule("Allow")], [], None)
            for i in range(n_tiers)
        ]
        pols.append(tw.Policy("allow-b", "default", 1, "app == 'b'", [tw.Rule("Allow")], [], None))
        _, _, msgs = _graph(tw.World(tiers, pols))
        dp = dp_fixtures.dataplane(dp_fixtures.RecordingRunner())
        for msg in msgs:
            dp.on_update(msg)
        dp.complete_deferred_work()
        a, b = tw.BY_NAME["a"], tw.BY_NAME["b"]
        res = Interpreter(dp.table.chains(), dp.table.sets()).run(
            f"cali-tw-{b.iface}", Packet(a.ip, b.ip, "tcp", 80)
        )
        assert res.verdict == "return"
        assert res.mark & 0x10000
        return res.rules

    assert cost(0) == cost(20)


def test_a_change_in_one_tier_leaves_the_other_tiers_chains_alone() -> None:
    world = tw.World(
        {"t1": (1.0, "Deny"), "t2": (2.0, "Deny")},
        [
            tw.Policy("t1.p", "t1", 1, "all()", [tw.Rule("Pass")], [], None),
            tw.Policy("t2.p", "t2", 1, "all()", [tw.Rule("Allow")], [], None),
        ],
    )
    graph, _, msgs = _graph(world)
    runner = dp_fixtures.RecordingRunner()
    dp = dp_fixtures.dataplane(runner)
    for msg in msgs:
        dp.on_update(msg)
    dp.on_update(m.InSync())
    assert dp.apply()
    before = dp.table.chains()
    extra = tw.Policy("t2.q", "t2", 0, "all()", [tw.Rule("Deny", peer="app == 'c'")], [], None)
    for msg in states.feed(graph, states.kvs([extra.resource()])):
        dp.on_update(msg)
    assert dp.apply()
    script = runner.scripts[-1]
    t1_chains = [n for n in before if n.startswith(("cali-ti-t1-", "cali-to-t1-"))]
    assert t1_chains
    assert all(n in dp.table.chains() for n in t1_chains)
    touched = [
        line
        for line in script.splitlines()
        for n in t1_chains
        if line.split(" inet calico ")[-1].split(" ")[0] == n  # add/flush/delete of the chain
    ]
    assert not touched  # t1's tier chains: not rewritten (endpoint chains still jump to them)
    assert "add chain inet calico cali-ti-t2-" in script  # t2's: a new one
    assert endpoint_render.CLEAR_PASS in dp.table.chains()[t1_chains[0]]
