"""The policy case table (tests/unit/calc/policy_cases.py) against the calculation graph's output:
the dpapi state the graph produces, evaluated by a model of the dataplane, gives each verdict."""

from __future__ import annotations

import pytest

from calico.calc.graph import CalcGraph
from calico.dpapi.state import DataplaneState
from tests.unit.calc import dpmodel, policy_cases, states


@pytest.mark.parametrize("case", policy_cases.CASES, ids=lambda c: c.name)
def test_calc_policy_case(case: policy_cases.Case) -> None:
    graph = CalcGraph("node1")
    graph.on_in_sync()
    state = DataplaneState().apply_all(
        states.feed(graph, states.kvs(policy_cases.base_resources() + case.resources))
    )
    got = {
        (s, d, p, port): dpmodel.allowed(
            state, policy_cases.ip_of(s), policy_cases.ip_of(d), p, port
        )
        for s, d, p, port, _ in case.expect
    }
    want = {(s, d, p, port): ok for s, d, p, port, ok in case.expect}
    assert got == want


def test_calc_policy_cases_incremental_equals_full() -> None:
    """Apply every case in turn on one graph (add, then remove): the state always equals a fresh
    graph's state for the same snapshot."""
    graph = CalcGraph("node1")
    graph.on_in_sync()
    base = dict(states.kvs(policy_cases.base_resources()))
    inc = DataplaneState().apply_all(states.feed(graph, base.items()))
    for case in policy_cases.CASES:
        added = dict(states.kvs(case.resources))
        inc.apply_all(states.feed(graph, added.items()))
        assert inc == states.full_state({**base, **added}), case.name
        inc.apply_all(states.feed(graph, [(k, None) for k in added]))
        assert inc == states.full_state(base), case.name
