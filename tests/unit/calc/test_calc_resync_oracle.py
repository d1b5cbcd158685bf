"""Incremental == full recompute: random sequences of datastore changes fed to one long-lived
graph produce, after every flush, the same dataplane state as a fresh graph fed the snapshot.
Also checks the ordering contract (DataplaneState raises on a violation)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc.graph import CalcGraph
from calico.dpapi.state import DataplaneState
from tests.unit.calc import states

APPS = ["a", "b", "c"]
NAMESPACES = ["default", "other"]


def wep(i: int, app: str, ns: str, node: str, ip_last: int, named: bool) -> dict[str, Any]:
    return {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": f"wep{i}", "namespace": ns, "labels": {"app": app}},
        "spec": {
            "node": node,
            "interfaceName": f"cali{i:011d}",
            "ipNetworks": [f"10.0.0.{ip_last}/32"],
            "profiles": [f"kns.{ns}"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80 + i}] if named else [],
        },
    }


def policy(
    i: int, ns: str | None, app: str, order: int | None, peer: str, action: str, egress: bool
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "action": action,
        "protocol": "TCP",
        "source": {"selector": f"app == '{peer}'"},
        "destination": {"ports": ["http", 443]},
    }
    spec: dict[str, Any] = {"selector": f"app == '{app}'", "ingress": [rule]}
    if order is not None:
        spec["order"] = order
    if egress:
        spec["egress"] = [{"action": "Allow", "destination": {"namespaceSelector": "team == 'x'"}}]
    meta: dict[str, Any] = {"name": f"pol{i}"}
    if ns:
        meta["namespace"] = ns
    return {
        "kind": "NetworkPolicy" if ns else "GlobalNetworkPolicy",
        "metadata": meta,
        "spec": spec,
    }


def profile(ns: str, team: str | None) -> dict[str, Any]:
    return {
        "kind": "Profile",
        "metadata": {"name": f"kns.{ns}"},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {"pcns.team": team} if team else {},
        },
    }


def netset(i: int, app: str, net: str) -> dict[str, Any]:
    return {
        "kind": "GlobalNetworkSet",
        "metadata": {"name": f"ns{i}", "labels": {"app": app}},
        "spec": {"nets": [net]},
    }


RESOURCE = st.one_of(
    st.builds(
        wep,
        st.integers(0, 3),
        st.sampled_from(APPS),
        st.sampled_from(NAMESPACES),
        st.sampled_from(["node1", "node2"]),
        st.integers(1, 4),
        st.booleans(),
    ),
    st.builds(
        policy,
        st.integers(0, 3),
        st.sampled_from([None, *NAMESPACES]),
        st.sampled_from(APPS),
        st.sampled_from([None, 1, 2]),
        st.sampled_from(APPS),
        st.sampled_from(["Allow", "Deny", "Pass"]),
        st.booleans(),
    ),
    st.builds(profile, st.sampled_from(NAMESPACES), st.sampled_from([None, "x", "y"])),
    st.builds(
        netset,
        st.integers(0, 1),
        st.sampled_from(APPS),
        st.sampled_from(["10.1.0.0/16", "10.0.0.1/32", "10.1.2.0/24"]),
    ),
)
STEP = st.tuples(RESOURCE, st.booleans())  # (resource, delete it instead)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(STEP, min_size=1, max_size=4), max_size=8))
def test_calc_incremental_equals_full_recompute(
    batches: list[list[tuple[dict[str, Any], bool]]],
) -> None:
    graph = CalcGraph("node1")
    graph.on_in_sync()
    state = DataplaneState()
    snapshot: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for obj, delete in batch:
            key = states.key_of(obj)
            if delete:
                snapshot.pop(key, None)
                graph.on_update(key, None)
            else:
                snapshot[key] = obj
                graph.on_update(key, obj)
        state.apply_all(graph.flush())
        assert state == states.full_state(snapshot)
        assert graph.full_recompute_differences() == []
