"""Golden nft text: single rules, endpoint chain shapes, and the whole table for the policy case
table plus host endpoints (golden/table.nft; ``UPDATE_GOLDEN=1`` rewrites it). The same golden is
checked by ``nft -c`` in tests/integration/agent/test_agent_nft.py."""

from __future__ import annotations

import os
from pathlib import Path

from calico.dataplane import endpoint_render, nft_render
from calico.dpapi import messages as m
from calico.dpapi import policy_plan
from tests.unit.dataplane import dp_fixtures

GOLDEN = Path(__file__).with_name("golden") / "table.nft"


def strip(rules: list[str] | tuple[str, ...]) -> list[str]:
    return [r.rsplit(' comment "', 1)[0] for r in rules]


def test_render_rule_forms() -> None:
    rule = m.Rule(
        action="allow", protocol="tcp", src_nets=("10.0.0.0/8",), dst_ports=("80", "1000-2000")
    )
    assert strip(nft_render.rules_chain((rule,))) == [
        "meta nfproto ipv4 meta l4proto tcp ip saddr { 10.0.0.0/8 } th dport { 80, 1000-2000 } "
        "counter meta mark set meta mark | 0x10000 return"
    ]
    neutral = m.Rule(action="deny", not_protocol="udp")
    assert strip(nft_render.rules_chain((neutral,))) == ["meta l4proto != udp counter drop"]
    icmp = m.Rule(action="log", protocol="icmp", not_icmp_type=8, not_icmp_code=0)
    assert strip(nft_render.rules_chain((icmp,))) == [
        "meta nfproto ipv4 meta l4proto icmp icmp type . icmp code != { 8 . 0 } counter "
        'log prefix "calico-packet: " level info'
    ]
    named = m.Rule(
        action="pass",
        protocol="tcp",
        dst_ports=("443",),
        dst_named_port_ipset_ids=("n-x",),
        not_src_ipset_ids=("s-y",),
    )
    assert strip(nft_render.render_rule(named, 6, "A")) == [
        "meta l4proto tcp ip6 saddr != @cali60s-y th dport { 443 } counter A",
        "meta l4proto tcp ip6 saddr != @cali60s-y ip6 daddr . meta l4proto . th dport @cali60n-x"
        " counter A",
    ]
    v6only = m.Rule(action="allow", dst_nets=("fd00::/64",))
    assert nft_render.render_rule(v6only, 4, "A") == []


def _plan(
    tiers: tuple[m.TierInfo, ...],
    profiles: tuple[str, ...] | None,
    *,
    inbound: bool = True,
    kind: str = policy_plan.NORMAL,
) -> policy_plan.ChainPlan:
    return policy_plan.chain_plan(tiers, profiles, inbound=inbound, kind=kind)


def test_endpoint_chain_shapes() -> None:
    pids = (m.PolicyID("ns", "p1"), m.PolicyID(None, "g2"))
    tiers = (m.TierInfo("default", pids, ()),)
    chain = _plan(tiers, ("kns.ns",))
    tier_name = endpoint_render.tier_chain_name(chain.steps[0], inbound=True)
    assert tier_name.startswith("cali-ti-default-")
    assert strip(endpoint_render.endpoint_chain(chain)) == [
        "ct state established,related accept",
        "ct state invalid counter drop",
        "meta mark set meta mark & 0xfffcffff",
        f"jump {tier_name}",
        "meta mark & 0x10000 == 0x10000 return",
        "jump cali-pri-kns.ns",
        "meta mark & 0x10000 == 0x10000 return",
        "counter drop",
    ]
    assert strip(endpoint_render.tier_chains(chain)[tier_name]) == [
        "meta mark set meta mark & 0xfffdffff",
        "jump cali-pi-ns/p1",
        "meta mark & 0x10000 == 0x10000 return",
        "meta mark & 0x20000 == 0 jump cali-pi-g2",
        "meta mark & 0x10000 == 0x10000 return",
        "meta mark & 0x20000 == 0 counter drop",
    ]
    # Egress has no policies in this tier: the tier is skipped, straight to the profiles.
    egress = endpoint_render.endpoint_chain(_plan(tiers, ("kns.ns",), inbound=False))
    assert not any("cali-to-" in rule for rule in egress)
    assert "jump cali-pro-kns.ns" in strip(egress)
    # A Pass tier has no default drop; forward chains: no profiles, no drop without policy.
    passing = _plan((m.TierInfo("t", pids, (), "Pass"),), None, kind=policy_plan.FORWARD)
    assert not any("drop" in rule for rule in endpoint_render.tier_chains(passing).values())
    fwd = strip(endpoint_render.endpoint_chain(_plan((), None, kind=policy_plan.FORWARD)))
    assert not any("drop" in r and "invalid" not in r for r in fwd)
    untracked = _plan((m.TierInfo("default", pids[:1], ()),), None, kind=policy_plan.UNTRACKED)
    assert (
        "meta mark & 0x10000 == 0x10000 meta mark set meta mark | 0x40000 notrack accept"
        in strip(endpoint_render.endpoint_chain(untracked))
    )
    # preDNAT and doNotTrack chains never apply the tier's default drop.
    assert not any("drop" in r for r in next(iter(endpoint_render.tier_chains(untracked).values())))


def test_long_names_are_hashed() -> None:
    name = nft_render.policy_chain(m.PolicyID("ns", "x" * 300), True)
    assert name.startswith("cali-pi-_")
    assert len(name) < 64


def test_full_table_golden() -> None:
    runner = dp_fixtures.RecordingRunner()
    dp = dp_fixtures.dataplane(runner)
    for msg in dp_fixtures.messages():
        dp.on_update(msg)
    dp.complete_deferred_work()
    text = dp.table.render()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
