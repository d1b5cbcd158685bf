"""Staged policies never change a real verdict, and the staged walk decides as if they were
enforced: random tier worlds (``tests/tier_world.py``) plus random staged policies (new ones,
replacements of real ones, staged deletes), through the real graph and dataplane managers with
flow logs on, every packet between the three workloads run by the nft interpreter.

1. The compiled real state is the same with and without the staged policies (the endpoints'
   ``tiers``, every real policy and profile): adding staged policies changes nothing real.
2. The rendered chains give the same real verdict as the chains of the world without staged
   policies and without flow logs (the log twins and the staged walk never decide).
3. The staged walk's verdict (the mark bits it leaves) is the reference verdict of the world
   with the staged policies enforced (``tier_world.direction_verdict``).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc.graph import CalcGraph
from calico.dataplane import flowlog_render
from calico.dataplane import nft_render as r
from calico.dataplane.nft_trace import Interpreter, Packet
from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState
from tests import tier_world as tw
from tests.unit.calc import states
from tests.unit.dataplane import dp_fixtures

FLOW_LOGS = flowlog_render.FlowLogConfig(enabled=True, allowed=True)


@dataclasses.dataclass
class Staged:
    policy: tw.Policy  # its name is the policy it stages
    delete: bool = False

    def resource(self) -> dict[str, Any]:
        res = self.policy.resource()
        res["kind"] = "Staged" + res["kind"]
        if self.delete:
            tier = {"tier": self.policy.tier} if self.policy.tier != "default" else {}
            res["spec"] = {"stagedAction": "Delete", **tier}
        else:
            res["spec"]["stagedAction"] = "Set"
        return res


def random_staged(rnd: random.Random, world: tw.World) -> list[Staged]:
    out: list[Staged] = []
    taken: set[tuple[str, str]] = set()
    for i in range(rnd.randint(1, 3)):
        real = rnd.choice(world.policies)
        if (real.kind, real.name) in taken:
            continue
        choice = rnd.random()
        if choice < 0.25:
            out.append(Staged(real, delete=True))
        elif choice < 0.65:  # a new version of a real policy
            new = dataclasses.replace(
                real,
                ingress=[tw.random_rule(rnd) for _ in range(rnd.randint(0, 3))],
                egress=[tw.random_rule(rnd) for _ in range(rnd.randint(0, 2))],
                order=rnd.choice([None, 1, 5, 50]),
                selector=rnd.choice(list(tw.SELECTORS)),
            )
            out.append(Staged(new))
        else:  # a policy that does not exist yet
            tier = rnd.choice([*world.tiers, "default"])
            name = f"s{i}" if tier == "default" else f"{tier}.s{i}"
            kind = rnd.choice(["GlobalNetworkPolicy", "NetworkPolicy"])
            ingress = [tw.random_rule(rnd) for _ in range(rnd.randint(0, 3))]
            new = tw.Policy(name, tier, rnd.choice([None, 5]), rnd.choice(list(tw.SELECTORS)),
                            ingress, [], None, kind)  # fmt: skip
            out.append(Staged(new))
        taken.add((out[-1].policy.kind, out[-1].policy.name))
    return out


def enforced(world: tw.World, staged: list[Staged]) -> tw.World:
    """The world with the staged policies enforced (a Set replaces its namesake, a Delete
    removes it)."""
    names = {(s.policy.kind, s.policy.name) for s in staged}
    kept = [p for p in world.policies if (p.kind, p.name) not in names]
    added = [s.policy for s in staged if not s.delete]
    return dataclasses.replace(world, policies=kept + added)


def compiled(objs: list[dict[str, Any]]) -> tuple[DataplaneState, list[m.Message]]:
    graph = CalcGraph(tw.NODE)
    graph.on_in_sync()
    msgs = states.feed(graph, states.kvs([*objs, *(tw.wep(w) for w in tw.WORKLOADS)]))
    assert graph.full_recompute_differences() == []
    return DataplaneState().apply_all(msgs), msgs


def interpreter(msgs: list[m.Message], flow_logs: flowlog_render.FlowLogConfig) -> Interpreter:
    dp = dp_fixtures.dataplane(dp_fixtures.RecordingRunner())
    dp.set_config(dataclasses.replace(dp.config, flow_logs=flow_logs))
    for msg in msgs:
        dp.on_update(msg)
    dp.complete_deferred_work()
    return Interpreter(dp.table.chains(), dp.table.sets())


def real_only(state: DataplaneState) -> DataplaneState:
    """``state`` without anything staged."""
    out = copy.copy(state)
    out.policies = {k: v for k, v in state.policies.items() if not k.name.startswith("staged:")}
    out.workload_endpoints = {
        k: dataclasses.replace(ep, staged_tiers=None) for k, ep in state.workload_endpoints.items()
    }
    return out


def _check(world: tw.World, staged: list[Staged]) -> None:
    base_state, base_msgs = compiled(world.resources())
    state, msgs = compiled(world.resources() + [s.resource() for s in staged])
    assert real_only(state).policies == base_state.policies
    assert real_only(state).workload_endpoints == base_state.workload_endpoints
    assert state.profiles == base_state.profiles
    base = interpreter(base_msgs, flowlog_render.OFF)
    with_staged = interpreter(msgs, FLOW_LOGS)
    future = enforced(world, staged)
    bad = []
    for src in tw.WORKLOADS:
        for dst in tw.WORKLOADS:
            if src == dst:
                continue
            for port, proto in tw.PORTS:
                pkt = Packet(src.ip, dst.ip, proto.lower(), port)
                for chain, ep, peer, ingress in (
                    (f"cali-fw-{src.iface}", src, dst, False),
                    (f"cali-tw-{dst.iface}", dst, src, True),
                ):
                    want = base.run(chain, pkt).verdict
                    got = with_staged.run(chain, pkt)
                    if got.verdict != want:
                        bad.append(f"{chain} {proto}/{port}: real {want}, with staged {got}")
                    staged_ok = tw.direction_verdict(
                        future, ep.name, peer.name, port, proto, ingress=ingress
                    )
                    walked = "jump cali-sw" in " ".join(with_staged.chains[chain])
                    if walked:
                        bits = got.mark & r.MARK_STAGED
                        expect = r.MARK_STAGED_ALLOW if staged_ok else r.MARK_STAGED_DENY
                        if bits != expect:
                            bad.append(f"{chain} {proto}/{port}: staged bits {bits:#x}, want "
                                       f"{'allow' if staged_ok else 'deny'}")  # fmt: skip
                    elif (want != "drop") != staged_ok:
                        bad.append(f"{chain} {proto}/{port}: no staged walk, yet the staged "
                                   f"verdict differs")  # fmt: skip
    assert not bad, world.describe() + "\nstaged: " + repr(staged) + "\n" + "\n".join(bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_staged_policies_never_change_real_verdicts_and_walk_as_if_enforced(seed: int) -> None:
    rnd = random.Random(seed)
    world = tw.random_world(rnd, missing_tiers=False)
    _check(world, random_staged(rnd, world))


def test_staged_delete_of_the_only_policy_leaves_the_profile() -> None:
    deny = tw.Policy("p0", "default", None, "app == 'b'", [tw.Rule("Deny")], [], None)
    world = tw.World(tiers={}, policies=[deny])
    _check(world, [Staged(deny, delete=True)])


def test_staged_default_deny_denies_what_it_selects() -> None:
    allow = tw.Policy("p0", "default", None, "all()", [tw.Rule("Allow")], [], None)
    nothing = tw.Policy("s1", "default", 1, "app == 'b'", [], [], ["Ingress"])
    world = tw.World(tiers={}, policies=[allow])
    _check(world, [Staged(nothing)])
