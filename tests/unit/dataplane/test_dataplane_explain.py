"""explain against the reference evaluator, and what it says about each policy it looked at.

Random tiered worlds (``tests/tier_world.py``) go through the real calculation graph and the real
dataplane managers; every packet between the three workloads is explained (egress at the source,
ingress at the destination) from the dataplane's programmed state, and compared with the
reference written from Calico's rules (``tier_world.direction_decision``): the verdict *and* what
decided it (tier, policy, rule index; a tier's default; the profile). Every explanation must also
agree with the rendered chains (``ruleset.agrees``), which explain checks on each call.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc.graph import CalcGraph
from calico.dataplane import explain, loop, nft_trace
from calico.dpapi import messages as m
from calico.dpapi import policy_plan
from tests import tier_world as tw
from tests.unit.calc import states
from tests.unit.dataplane import dp_fixtures


def programmed(world: tw.World, extra: list[dict[str, Any]] | None = None) -> tuple[
    loop.InternalDataplane, explain.Programmed
]:  # fmt: skip
    graph = CalcGraph(tw.NODE)
    graph.on_in_sync()
    objs = [*world.resources(), *(tw.wep(w) for w in tw.WORKLOADS), *(extra or [])]
    dp = dp_fixtures.dataplane(dp_fixtures.RecordingRunner())
    for msg in states.feed(graph, states.kvs(objs)):
        dp.on_update(msg)
    dp.complete_deferred_work()
    prog = explain.Programmed(
        plans=dp.endpoints.plans,
        policies=dp.policies.policies,
        profiles=dp.policies.profiles,
        chains=dp.table.chains(),
        sets=dp.table.sets(),
        describe=graph.describe_ipset,
    )
    return dp, prog


def ask(
    dp: loop.InternalDataplane, prog: explain.Programmed, src: str, dst: str, port: int,
    proto: str, *, at: str, direction: str,
) -> dict[str, Any]:  # fmt: skip
    ep = dp.endpoints.endpoint(f"{tw.NAMESPACE}/{tw.NODE}-k8s-{at}-eth0")
    assert ep is not None
    pkt = nft_trace.Packet(tw.BY_NAME[src].ip, tw.BY_NAME[dst].ip, proto.lower(), port)
    return explain.explain(ep, direction, pkt, prog)


def decision(answer: dict[str, Any]) -> tuple[bool, tuple[object, ...]]:
    v = answer["verdict"]
    allowed = v["action"] == policy_plan.ALLOW
    if v["by"] == policy_plan.BY_RULE:
        return allowed, ("rule", v["tier"], v["policy"], v["rule"])
    if v["by"] == policy_plan.BY_TIER_DEFAULT:
        return allowed, ("tier-default", v["tier"])
    if v["by"] == policy_plan.BY_PROFILE:
        return allowed, ("profile", v["profile"], v["rule"])
    return allowed, (v["by"],)


def check(world: tw.World) -> int:
    dp, prog = programmed(world)
    bad, n = [], 0
    for src in tw.WORKLOADS:
        for dst in tw.WORKLOADS:
            if src == dst:
                continue
            for port, proto in tw.PORTS:
                for at, peer, direction in ((src, dst, "egress"), (dst, src, "ingress")):
                    want = tw.direction_decision(
                        world, at.name, peer.name, port, proto, ingress=direction == "ingress"
                    )
                    got = ask(dp, prog, src.name, dst.name, port, proto, at=at.name,
                              direction=direction)  # fmt: skip
                    n += 1
                    if decision(got) != want or not got["agrees"]:
                        bad.append(f"{src.name}->{dst.name} {proto}/{port} {direction} at "
                                   f"{at.name}: reference {want}, explain {decision(got)}, "
                                   f"ruleset {[s['ruleset'] for s in got['stages']]}")  # fmt: skip
    assert not bad, world.describe() + "\n" + "\n".join(bad)
    return n


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_explain_decides_as_the_reference_and_agrees_with_the_ruleset(seed: int) -> None:
    check(tw.random_world(random.Random(seed)))


def _world() -> tw.World:
    """security (order 50, Pass default) logs; platform (100, Deny) denies b, passes c, and has a
    port rule; default allows team y by selector."""
    return tw.World(
        tiers={"platform": (100.0, "Deny"), "security": (50.0, "Pass")},
        policies=[
            tw.Policy("security.log", "security", 1, "all()", [tw.Rule("Log")], [], None),
            tw.Policy(
                "platform.gate",
                "platform",
                1,
                "app == 'a'",
                [
                    tw.Rule("Allow", peer="app == 'b'", protocol="TCP", port=8080),
                    tw.Rule("Deny", peer="app == 'b'"),
                    tw.Rule("Pass", peer="app == 'c'"),
                ],
                [],
                None,
            ),
            tw.Policy(
                "app", "default", 1, "app == 'a'", [tw.Rule("Allow", peer="team == 'y'")], [], None
            ),
        ],
    )


def test_why_each_policy_did_not_decide() -> None:
    world = _world()
    assert check(world) == 36
    dp, prog = programmed(world)
    # b -> a TCP/80: platform.gate rule 0 misses on the port, rule 1 denies.
    got = ask(dp, prog, "b", "a", 80, "TCP", at="a", direction="ingress")
    assert got["verdict"]["action"] == "deny"
    assert (got["verdict"]["policy"], got["verdict"]["rule"]) == ("platform.gate", 1)
    assert got["verdict"]["rule_text"] == 'Deny, source {selector app == "b"}'
    stage = got["stages"][0]
    assert stage["chain"] == "cali-tw-calia0000000001"
    security, platform = stage["tiers"]
    assert security["tier"] == "security"
    log_rule = security["policies"][0]["rules"][0]
    assert log_rule["why"] == "matched: logged, evaluation goes on"
    assert security["outcome"] == "end of tier: defaultAction Pass, next tier"
    rules = platform["policies"][0]["rules"]
    assert rules[0]["why"] == "destination port 80 is not in 8080"
    assert rules[1]["matched"]
    assert rules[1]["why"] == "matched"
    assert len(rules) == 2  # rule 2 was not looked at
    assert platform["outcome"] == "deny by policy platform.gate rule 1"
    assert stage["ruleset"]["agrees"]
    assert stage["ruleset"]["decided_by"] == {
        "chain": "cali-pi-platform.gate",
        "rule": 1,
    }
    # c -> a: platform's Pass; default's app policy allows team y by selector.
    got = ask(dp, prog, "c", "a", 80, "TCP", at="a", direction="ingress")
    platform, default = got["stages"][0]["tiers"][1:]
    assert platform["policies"][0]["rules"][0]["why"] == (
        'source 10.65.0.4 is not selected by app == "b"'
    )
    assert platform["outcome"] == "pass: next tier"
    assert default["policies"][0]["outcome"] == "rule 0 Allow: decides"
    assert got["verdict"]["action"] == "allow"
    # a -> b: nothing selects b in any tier but security (log only): the profile decides.
    got = ask(dp, prog, "a", "b", 80, "TCP", at="b", direction="ingress")
    assert got["verdict"] == {
        "action": "allow",
        "by": "profile",
        "profile": "kns.default",
        "rule": 0,
        "rule_text": "Allow",
    }
    assert got["stages"][0]["profiles"][0]["outcome"] == "rule 0 Allow: decides"


def test_end_of_tier_and_skipped_policies() -> None:
    world = tw.World(
        tiers={"platform": (100.0, "Deny")},
        policies=[
            tw.Policy(
                "platform.first",
                "platform",
                1,
                "all()",
                [tw.Rule("Pass", peer="app == 'c'"), tw.Rule("Allow", port=53, protocol="UDP")],
                [],
                None,
            ),
            tw.Policy(
                "platform.second",
                "platform",
                2,
                "all()",
                [tw.Rule("Allow", peer="app == 'a'")],
                [],
                None,
            ),
        ],
    )
    check(world)
    dp, prog = programmed(world)
    got = ask(dp, prog, "b", "a", 80, "TCP", at="a", direction="ingress")
    tier = got["stages"][0]["tiers"][0]
    assert [p["outcome"] for p in tier["policies"]] == [
        "no rule matched: next policy",
        "no rule matched: next policy",
    ]
    assert tier["policies"][0]["rules"][1]["why"] == "protocol udp: packet is tcp"
    assert tier["outcome"] == "end of tier: defaultAction Deny, deny"
    assert got["verdict"] == {"action": "deny", "by": "tier-default", "tier": "platform"}
    assert got["stages"][0]["ruleset"]["decided_by"]["chain"].startswith("cali-ti-platform-")
    got = ask(dp, prog, "c", "a", 80, "TCP", at="a", direction="ingress")
    tier = got["stages"][0]["tiers"][0]
    assert tier["skipped"] == ["platform.second"]
    assert tier["outcome"] == "pass: next tier"


def test_counters_of_the_deciding_rule() -> None:
    seen: list[tuple[str, int]] = []

    def counters(chain: str, rule: int) -> tuple[int, int]:
        seen.append((chain, rule))
        return 7, 420

    dp, prog = programmed(_world())
    prog = explain.Programmed(**{**prog.__dict__, "counters": counters})
    got = ask(dp, prog, "b", "a", 80, "TCP", at="a", direction="ingress")
    assert (got["verdict"]["packets"], got["verdict"]["bytes"]) == (7, 420)
    assert seen == [("cali-pi-platform.gate", 1)]


def _hep_world() -> list[dict[str, Any]]:
    hep = dict(dp_fixtures.HEP)
    gnp = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "host-in"},
        "spec": {"selector": "role == 'host'", "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP",
                              "destination": {"ports": [443]}}]},
    }  # fmt: skip
    untracked = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "raw-deny"},
        "spec": {"selector": "role == 'host'", "doNotTrack": True, "applyOnForward": True,
                 "types": ["Ingress"], "ingress": [{"action": "Deny",
                                                    "source": {"nets": ["192.0.2.0/24"]}}]},
    }  # fmt: skip
    return [hep, gnp, untracked]


def test_host_endpoint_stages_failsafe_and_do_not_track() -> None:
    dp, prog = programmed(tw.World({}, []), _hep_world())
    hep = dp.endpoints.endpoint("node1-eth0", host=True)
    assert isinstance(hep, m.HostEndpoint)

    def at_host(src: str, port: int) -> dict[str, Any]:
        pkt = nft_trace.Packet(src, "10.99.0.11", "tcp", port)
        return explain.explain(hep, "ingress", pkt, prog)

    got = at_host("10.99.0.12", 443)
    assert [s["chain"] for s in got["stages"]] == ["cali-fhraw-eth0", "cali-fhdnat-eth0",
                                                   "cali-fh-eth0"]  # fmt: skip
    assert got["verdict"]["policy"] == "host-in"
    assert got["agrees"]
    got = at_host("10.99.0.12", 80)
    assert got["verdict"] == {"action": "deny", "by": "tier-default", "tier": "default"}
    got = at_host("10.99.0.12", 22)  # failsafe (dp_fixtures' config: tcp:22)
    assert got["verdict"]["by"] == "failsafe", got
    assert got["agrees"], got
    got = at_host("192.0.2.9", 443)  # doNotTrack deny: ends the walk at the raw stage
    assert [s["chain"] for s in got["stages"]] == ["cali-fhraw-eth0"]
    assert got["verdict"]["policy"] == "raw-deny"
    assert got["agrees"]


def test_icmp_and_named_ports_agree_with_the_ruleset() -> None:
    extra = [{
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "icmp"},
        "spec": {"selector": "app == 'c'", "ingress": [
            {"action": "Deny", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
            {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 13}},
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}},
        ]},
    }]  # fmt: skip
    dp, prog = programmed(tw.World({}, []), extra)
    ep = dp.endpoints.endpoint(f"{tw.NAMESPACE}/{tw.NODE}-k8s-c-eth0")
    assert ep is not None

    def verdict(pkt: nft_trace.Packet) -> dict[str, Any]:
        got = explain.explain(ep, "ingress", pkt, prog)
        assert got["agrees"], got
        return dict(got["verdict"])

    a, c = tw.BY_NAME["a"].ip, tw.BY_NAME["c"].ip
    assert verdict(nft_trace.Packet(a, c, "icmp", 0, icmp_type=8, icmp_code=0))["rule"] == 0
    assert verdict(nft_trace.Packet(a, c, "icmp", 0, icmp_type=0, icmp_code=0))["rule"] == 1
    v = verdict(nft_trace.Packet(a, c, "icmp", 0, icmp_type=13, icmp_code=0))
    assert v["by"] == "tier-default"
    v = verdict(nft_trace.Packet(a, c, "tcp", 80))  # no endpoint has a port named http
    assert v["by"] == "tier-default"
