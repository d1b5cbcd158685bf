"""State sequences in -> dpapi messages out (Felix's calc FV style), for the transitions a
random oracle test can miss."""

from __future__ import annotations

import json
from typing import Any

from calico.calc.graph import CalcGraph, CalcStats
from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState
from tests.unit.calc import states
from tests.unit.calc.test_calc_resync_oracle import netset, policy, profile, wep


def run(
    *batches: list[tuple[dict[str, Any], bool]],
) -> tuple[CalcGraph, DataplaneState, list[list[m.Message]]]:
    graph = CalcGraph("node1")
    graph.on_in_sync()
    state = DataplaneState()
    snapshot: dict[str, dict[str, Any]] = {}
    outs = []
    for batch in batches:
        for obj, delete in batch:
            key = states.key_of(obj)
            if delete:
                snapshot.pop(key, None)
            else:
                snapshot[key] = obj
            graph.on_update(key, None if delete else obj)
        out = graph.flush()
        outs.append(out)
        state.apply_all(out)
        assert state == states.full_state(snapshot)
    return graph, state, outs


def tiers(state: DataplaneState, ep: str = "wep:default/wep0") -> tuple[str, ...]:
    return tuple(str(p) for t in state.workload_endpoints[ep].tiers for p in t.ingress_policies)


def test_order_change_resorts_endpoint_policies() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    p0 = policy(0, "default", "a", 1, "b", "Allow", False)
    p1 = policy(1, "default", "a", 2, "b", "Deny", False)
    p1_first = policy(1, "default", "a", 0, "b", "Deny", False)
    _, state, _ = run([(w, False), (p0, False), (p1, False)])
    assert tiers(state) == ("default/pol0", "default/pol1")
    _, state, outs = run([(w, False), (p0, False), (p1, False)], [(p1_first, False)])
    assert tiers(state) == ("default/pol1", "default/pol0")
    assert any(isinstance(x, m.WorkloadEndpointUpdate) for x in outs[1])


def test_unordered_policies_sort_last_then_by_name() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    _, state, _ = run(
        [
            (w, False),
            (policy(2, "default", "a", None, "b", "Allow", False), False),
            (policy(1, "default", "a", None, "b", "Allow", False), False),
            (policy(3, "default", "a", 5, "b", "Allow", False), False),
        ]
    )
    assert tiers(state) == ("default/pol3", "default/pol1", "default/pol2")


def test_namespace_labels_flow_through_profile_into_ipsets() -> None:
    local = wep(0, "a", "default", "node1", 1, False)
    remote = wep(1, "b", "other", "node2", 2, False)
    pol = policy(
        0, "default", "a", None, "b", "Allow", True
    )  # egress to namespaceSelector team=='x'
    _g, state, _ = run(
        [(local, False), (remote, False), (pol, False), (profile("other", "y"), False)]
    )
    ns_sets = [s for s, (kind, members) in state.ipsets.items() if kind == "net" and not members]
    assert ns_sets  # nothing labelled team=x yet
    _, state, _ = run(
        [(local, False), (remote, False), (pol, False), (profile("other", "y"), False)],
        [(profile("other", "x"), False)],
    )
    assert any("10.0.0.2/32" in members for _, (kind, members) in state.ipsets.items())


def test_endpoint_moving_away_is_removed_and_policy_deactivated() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    p = policy(0, "default", "a", None, "b", "Allow", False)
    _, state, outs = run(
        [(w, False), (p, False)], [(wep(0, "a", "default", "node2", 1, False), False)]
    )
    assert not state.workload_endpoints
    assert not state.policies
    kinds_ = [type(x) for x in outs[1]]
    assert kinds_.index(m.WorkloadEndpointRemove) < kinds_.index(m.ActivePolicyRemove)


def test_invalid_policy_withdraws_previous_version() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    p = policy(0, "default", "a", None, "b", "Allow", False)
    bad = {**p, "spec": {**p["spec"], "selector": "app == "}}
    g, state, _ = run([(w, False), (p, False)], [(bad, False)])
    assert not state.policies
    assert tiers(state) == ()
    assert any("selector" in reason for reason in g.invalid.values())


def test_missing_profile_is_sent_empty_fail_closed() -> None:
    _, state, _ = run([(wep(0, "a", "default", "node1", 1, False), False)])
    assert state.profiles["kns.default"] == m.Profile()
    _, state, _ = run(
        [(wep(0, "a", "default", "node1", 1, False), False)], [(profile("default", None), False)]
    )
    assert state.profiles["kns.default"].inbound_rules


def test_member_add_and_remove_within_one_flush_cancel() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    p = policy(0, "default", "a", None, "b", "Allow", False)
    peer = wep(1, "b", "default", "node2", 2, False)
    graph, _, _ = run([(w, False), (p, False)])
    key = states.key_of(peer)
    graph.on_update(key, peer)
    graph.on_update(key, None)
    assert graph.flush() == []


def test_overlapping_netset_and_endpoint_members_are_counted() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    p = policy(0, None, "a", None, "b", "Allow", False)
    n0 = netset(0, "b", "10.0.0.1/32")
    n1 = netset(1, "b", "10.0.0.1/32")
    _, state, _ = run([(w, False), (p, False), (n0, False), (n1, False)], [(n0, True)])
    assert any("10.0.0.1/32" in members for _, (_, members) in state.ipsets.items())


def test_in_sync_sent_once_at_the_end_of_a_flush() -> None:
    graph = CalcGraph("node1")
    for key, value in states.kvs([profile("default", None)]):
        graph.on_update(key, value)
    graph.on_in_sync()
    out = graph.flush()
    assert isinstance(out[-1], m.InSync)
    assert not any(isinstance(x, m.InSync) for x in graph.flush())


def test_host_endpoint_policy_kinds_land_in_their_tiers() -> None:
    from tests.unit.dataplane import dp_fixtures

    graph = CalcGraph("node1")
    graph.on_in_sync()
    state = DataplaneState().apply_all(
        states.feed(graph, states.kvs([dp_fixtures.HEP, *dp_fixtures.HOST_POLICIES]))
    )
    hep = state.host_endpoints["hep:node1-eth0"]

    def names(tiers: tuple[m.TierInfo, ...], ingress: bool = True) -> list[str]:
        return [
            str(p) for t in tiers for p in (t.ingress_policies if ingress else t.egress_policies)
        ]

    assert names(hep.tiers) == ["host-normal", "host-fwd"]  # order 10 first, then unordered
    assert names(hep.tiers, ingress=False) == ["host-normal"]
    assert names(hep.forward_tiers) == ["host-fwd"]
    assert names(hep.pre_dnat_tiers) == ["host-prednat"]
    assert names(hep.untracked_tiers) == ["host-untracked"]
    assert names(hep.untracked_tiers, ingress=False) == ["host-untracked"]
    assert hep.expected_ipv4_addrs == ("10.99.0.11/32",)
    # A HostEndpoint on another node is not ours; NetworkPolicies never select host endpoints.
    other = json.loads(json.dumps(dp_fixtures.HEP).replace('"node1"', '"node2"'))
    state.apply_all(states.feed(graph, states.kvs([other])))
    assert not state.host_endpoints


def test_full_recompute_check_finds_divergence() -> None:
    w = wep(0, "a", "default", "node1", 1, False)
    p = policy(0, "default", "a", None, "b", "Allow", False)
    felix = {
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": {"logSeverityScreen": "Debug"},
    }
    graph, _, _ = run([(w, False), (p, False), (felix, False)], [(felix, True)])
    assert graph.full_recompute_differences() == []
    pid = next(iter(graph.sequencer._sent_policies))
    graph.sequencer._sent_policies[pid] = m.Policy()  # simulate an incremental bug
    diffs = graph.full_recompute_differences()
    assert len(diffs) == 1
    assert diffs[0].startswith("policies: 1 differ")


def test_stats_count_what_the_graph_holds() -> None:
    w = wep(0, "a", "default", "node1", 1, True)
    remote = wep(1, "b", "default", "node2", 2, False)
    p = policy(0, "default", "a", None, "b", "Allow", False)
    bad = {**policy(1, "default", "a", None, "b", "Allow", False), "spec": {"selector": "a =="}}
    graph, _, _ = run([(w, False), (remote, False), (p, False), (profile("default", "x"), False)])
    graph.on_update(states.key_of(bad), bad)
    graph.flush()
    stats = graph.stats()
    # one local endpoint; its policy and profile; the policy's rule needs a selector set and a
    # named-port set; the bad policy is counted as invalid.
    assert stats == CalcStats(
        local_endpoints=1,
        active_policies=1,
        active_profiles=1,
        active_ipsets=2,
        invalid_resources=1,
    )
