"""Flow-log prefixes (round trip, length, foreign text), the verdict-point registry, and where
the renderers put log twins (never with a verdict; only with flow logs on)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from calico.dataplane import endpoint_render, flowlog_render, nft_render, nft_trace, policy_manager
from calico.dpapi import flows
from calico.dpapi import messages as m
from calico.dpapi import policy_plan as plan
from tests.unit.dataplane import dp_fixtures

POINTS = st.builds(
    flows.VerdictPoint,
    action=st.sampled_from([flows.ALLOW, flows.DENY]),
    direction=st.sampled_from([flows.INGRESS, flows.EGRESS]),
    by=st.sampled_from([flows.BY_RULE, flows.BY_TIER_DEFAULT, flows.BY_PROFILE, flows.BY_TIER]),
    staged=st.booleans(),
    tier=st.none() | st.text(min_size=1, max_size=63),
    policy=st.none() | st.text(min_size=1, max_size=300),
    profile=st.none() | st.text(max_size=300),
    rule=st.none() | st.integers(0, 10_000),
)


@given(POINTS)
def test_prefix_round_trip(point: flows.VerdictPoint) -> None:
    text = point.prefix()
    assert len(text) <= 16  # nft allows 127; NFLOG carries it in every message
    assert text.isascii()
    assert '"' not in text
    parsed = flows.parse_prefix(text)
    assert parsed == flows.Prefix(point.action, point.direction, point.staged, point.ident())


@given(POINTS, POINTS)
def test_distinct_points_get_distinct_ids(a: flows.VerdictPoint, b: flows.VerdictPoint) -> None:
    assert (a == b) == (a.ident() == b.ident())


@given(st.text(max_size=40))
def test_foreign_prefixes_are_not_ours(text: str) -> None:
    parsed = flows.parse_prefix(text)
    if parsed is not None:  # only our exact shape parses
        assert text[:2] in ("AI", "AE", "DI", "DE")
        assert len(text.partition(":")[2]) == 12
    assert flows.parse_prefix("calico-packet: ") is None
    assert flows.parse_prefix("DI:0123456789aB") is None  # upper-case hex is not ours


def test_points_registry_counts_owners() -> None:
    reg = flowlog_render.Points()
    p = flows.VerdictPoint(flows.DENY, flows.INGRESS, flows.BY_TIER_DEFAULT, tier="t")
    reg.set("chain-a", (p,))
    reg.set("chain-b", (p,))
    reg.drop("chain-a")
    assert reg.lookup(p.ident()) == p  # chain-b still logs it
    reg.set("chain-b", ())
    assert reg.lookup(p.ident()) is None
    assert len(reg) == 0


def _chains(flow_logs: flowlog_render.FlowLogConfig) -> dict[str, tuple[str, ...]]:
    return nft_trace.render(dp_fixtures.messages(), flow_logs=flow_logs).chains()


def test_twins_only_with_flow_logs_and_never_with_a_verdict() -> None:
    off = _chains(flowlog_render.OFF)
    assert not any("log group" in rule for rules in off.values() for rule in rules)
    on = _chains(flowlog_render.FlowLogConfig(enabled=True, allowed=True))
    twins = [rule for rules in on.values() for rule in rules if "log group" in rule]
    assert twins
    verdicts = (" accept", " drop", " return", " jump ", " goto ", "meta mark set")
    for rule in twins:
        body = rule.split(' comment "')[0]
        assert not any(v in body for v in verdicts), rule
        assert 'limit name "cali-flowlog"' in body
    # Without the twins, every chain is what it was with flow logs off.
    stripped = {name: tuple(r for r in rules if "log group" not in r) for name, rules in on.items()}
    assert stripped == off
    denied_only = _chains(flowlog_render.FlowLogConfig(enabled=True))
    assert not any('prefix "A' in r for rules in denied_only.values() for r in rules)


def test_allow_twins_log_new_connections_only() -> None:
    on = _chains(flowlog_render.FlowLogConfig(enabled=True, allowed=True))
    allow_twins = [r for rules in on.values() for r in rules if 'prefix "A' in r]
    assert allow_twins
    assert all(r.startswith("ct state new ") or " ct state new " in r for r in allow_twins)


def test_endpoint_chain_of_a_staged_endpoint() -> None:
    pid = m.PolicyID(None, "p")
    tiers = (m.TierInfo("default", (pid,), ()),)
    chain = plan.chain_plan(tiers, ("kns.a",), inbound=True)
    cfg = flowlog_render.FlowLogConfig(enabled=True)
    rules, points = endpoint_render.render_endpoint_chain(chain, flow_logs=cfg, staged_walk="W")
    body = [r.split(' comment "')[0] for r in rules]
    assert body.index("jump W") < body.index(nft_render.CLEAR_VERDICT)
    assert {p.by for p in points} == {flows.BY_TIER, flows.BY_PROFILE, flows.BY_NO_PROFILE}
    staged = endpoint_render.staged_walk(chain, flow_logs=cfg)
    walk = staged[endpoint_render.staged_walk_name(chain)][0]
    assert not any(v in r.split(' comment "')[0] for r in walk for v in (" accept", " drop"))
    assert any("jump cali-spri-kns.a" in r for r in walk)
    assert policy_manager.shadow_chain(pid, True) == "cali-spi-p"


def test_config_knobs() -> None:
    cfg = flowlog_render.FlowLogConfig(enabled=True, rate=50, burst=10)
    assert cfg.limit_decl() == "rate 50/second burst 10 packets"
    assert not dataclasses.replace(cfg, enabled=False).log_denied
    assert not cfg.log_allowed
