"""Incremental == full recompute: random sequences of datastore changes fed to one long-lived
graph produce, after every flush, the same dataplane state as a fresh graph fed the snapshot.
Also checks the ordering contract (DataplaneState raises on a violation)."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
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
    i: int,
    ns: str | None,
    app: str,
    order: int | None,
    peer: str,
    action: str,
    egress: bool,
    tier: str = "default",
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
    meta: dict[str, Any] = {"name": f"pol{i}" if tier == "default" else f"{tier}.pol{i}"}
    if tier != "default":
        spec["tier"] = tier
    if ns:
        meta["namespace"] = ns
    return {
        "kind": "NetworkPolicy" if ns else "GlobalNetworkPolicy",
        "metadata": meta,
        "spec": spec,
    }


def staged(base: dict[str, Any], action: str) -> dict[str, Any]:
    """A staged version of ``policy(...)``: same name (it stages that policy), Set or Delete."""
    out = {**base, "kind": "Staged" + base["kind"], "spec": dict(base["spec"])}
    if action == "Delete":
        tier_ = base["spec"].get("tier")
        out["spec"] = {"stagedAction": "Delete", **({"tier": tier_} if tier_ else {})}
    else:
        out["spec"]["stagedAction"] = "Set"
    return out


def tier(name: str, order: float | None, action: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"defaultAction": action}
    if order is not None:
        spec["order"] = order
    return {"kind": "Tier", "metadata": {"name": name}, "spec": spec}


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


def ippool(i: int, cidr: str, vxlan: str, ipip: str, nat: bool, disabled: bool) -> dict[str, Any]:
    spec = {"cidr": cidr, "vxlanMode": vxlan, "ipipMode": ipip, "natOutgoing": nat}
    return {
        "kind": "IPPool",
        "metadata": {"name": f"pool{i}"},
        "spec": {**spec, "disabled": disabled},
    }


def node(name: str, subnet: int | None, vxlan: bool, mac: bool) -> dict[str, Any]:
    n = int(name[-1])
    spec: dict[str, Any] = {"bgp": {"ipv4Address": f"10.99.{subnet}.{n}/24"} if subnet else {}}
    if vxlan:
        spec["ipv4VXLANTunnelAddr"] = f"10.0.9.{n}"
    if mac:
        spec["vxlanTunnelMACAddr"] = f"66:ca:00:00:00:0{n}"
    return {"kind": "Node", "metadata": {"name": name}, "spec": spec}


def block(cidr: str, host: str | None) -> dict[str, Any]:
    return {"kind": "IPAMBlock", "cidr": cidr, "affinity": f"host:{host}" if host else None}


NODES = ["node1", "node2", "node3"]
NETWORK = st.one_of(
    st.builds(
        ippool,
        st.integers(0, 1),
        st.sampled_from(["10.0.0.0/24", "10.0.0.0/16", "10.0.0.0/29", "fd00::/64"]),
        st.sampled_from(["Always", "CrossSubnet", "Always", "Never"]),
        st.sampled_from(["Never", "Never", "Always", "CrossSubnet"]),  # both on: invalid
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        node, st.sampled_from(NODES), st.sampled_from([None, 1, 2]), st.booleans(), st.booleans()
    ),
    st.builds(
        block,
        st.sampled_from(["10.0.0.0/30", "10.0.0.4/30", "10.0.0.0/29", "10.0.9.0/30"]),
        st.sampled_from([None, *NODES]),
    ),
)

POLICY = st.builds(
    policy,
    st.integers(0, 3),
    st.sampled_from([None, *NAMESPACES]),
    st.sampled_from(APPS),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(APPS),
    st.sampled_from(["Allow", "Deny", "Pass"]),
    st.booleans(),
    st.sampled_from(["default", "default", "t1", "t2"]),
)
RESOURCE = st.one_of(
    st.builds(
        wep,
        st.integers(0, 3),
        st.sampled_from(APPS),
        st.sampled_from(NAMESPACES),
        st.sampled_from(NODES),
        st.integers(1, 4),
        st.booleans(),
    ),
    POLICY,
    st.builds(staged, POLICY, st.sampled_from(["Set", "Set", "Delete"])),
    st.builds(
        tier,
        st.sampled_from(["t1", "t2", "default"]),  # default: valid only with its fixed values
        st.sampled_from([None, 0, 5, 1e6, 2e6]),
        st.sampled_from(["Deny", "Pass"]),
    ),
    st.builds(profile, st.sampled_from(NAMESPACES), st.sampled_from([None, "x", "y"])),
    st.builds(
        netset,
        st.integers(0, 1),
        st.sampled_from(APPS),
        st.sampled_from(["10.1.0.0/16", "10.0.0.1/32", "10.1.2.0/24"]),
    ),
    NETWORK,
)
STEP = st.tuples(RESOURCE, st.booleans())  # (resource, delete it instead)


@settings(max_examples=300, deadline=None)
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


NETWORK_STEP = st.tuples(
    st.one_of(
        NETWORK,
        NETWORK,
        st.builds(
            wep,
            st.integers(0, 3),
            st.just("a"),
            st.just("default"),
            st.sampled_from(NODES),
            st.integers(1, 4),
            st.just(False),
        ),
    ),
    st.integers(0, 5).map(lambda n: n == 0),  # deletes rarer: state builds up
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(NETWORK_STEP, min_size=1, max_size=6), max_size=12))
def test_calc_network_incremental_equals_full_recompute(
    batches: list[list[tuple[dict[str, Any], bool]]],
) -> None:
    """The same oracle over pools, nodes, blocks and workload addresses (the route resolver),
    starting from a cluster that has routes, then changing it at random."""
    graph = CalcGraph("node1")
    graph.on_in_sync()
    state = DataplaneState()
    snapshot: dict[str, dict[str, Any]] = {}
    base = [
        ippool(0, "10.0.0.0/24", "CrossSubnet", "Never", True, False),
        node("node1", 1, True, True),
        node("node2", 2, True, True),
        node("node3", 1, True, True),
        block("10.0.0.0/30", "node2"),
        block("10.0.0.4/30", "node3"),
    ]
    for batch in [[(obj, False) for obj in base], *batches]:
        for obj, delete in batch:
            key = states.key_of(obj)
            snapshot.pop(key, None) if delete else snapshot.__setitem__(key, obj)
            graph.on_update(key, None if delete else obj)
        state.apply_all(graph.flush())
        assert state == states.full_state(snapshot)
        assert graph.full_recompute_differences() == []
    event(f"routes at the end: {min(len(state.routes), 3)}")
