"""Golden nft text: single rules, endpoint chain shapes, and the whole table for the policy case
table plus host endpoints (golden/table.nft; ``UPDATE_GOLDEN=1`` rewrites it). The same golden is
checked by ``nft -c`` in tests/integration/agent/test_agent_nft.py."""

from __future__ import annotations

import os
from pathlib import Path

from calico.dataplane import endpoint_manager, nft_render
from calico.dpapi import messages as m
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


def test_endpoint_chain_shapes() -> None:
    pids = (m.PolicyID("ns", "p1"), m.PolicyID(None, "g2"))
    chain = strip(endpoint_manager.endpoint_chain(pids, ("kns.ns",), inbound=True))
    assert chain == [
        "ct state established,related accept",
        "ct state invalid counter drop",
        "meta mark set meta mark & 0xfffcffff",
        "jump cali-pi-ns/p1",
        "meta mark & 0x10000 == 0x10000 return",
        "meta mark & 0x20000 == 0 jump cali-pi-g2",
        "meta mark & 0x10000 == 0x10000 return",
        "meta mark & 0x20000 == 0 counter drop",
        "jump cali-pri-kns.ns",
        "meta mark & 0x10000 == 0x10000 return",
        "counter drop",
    ]
    # No policies: straight to the profiles. Forward chains: no profiles, no drop without policy.
    assert "jump cali-pro-kns.ns" in strip(
        endpoint_manager.endpoint_chain((), ("kns.ns",), inbound=False)
    )
    fwd = strip(
        endpoint_manager.endpoint_chain((), None, inbound=True, kind=endpoint_manager.FORWARD)
    )
    assert not any("drop" in r and "invalid" not in r for r in fwd)
    untracked = strip(
        endpoint_manager.endpoint_chain(
            pids[:1], None, inbound=True, kind=endpoint_manager.UNTRACKED
        )
    )
    assert (
        "meta mark & 0x10000 == 0x10000 meta mark set meta mark | 0x40000 notrack accept"
        in untracked
    )


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
