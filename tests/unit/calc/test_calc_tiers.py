"""Tiers in the calculation graph: what an endpoint's TierInfo says, and what a change re-sends."""

from __future__ import annotations

from typing import Any

from calico.calc.graph import CalcGraph
from calico.dpapi import messages as m
from tests import tier_world as tw
from tests.unit.calc import states


def _graph(*objs: dict[str, Any]) -> tuple[CalcGraph, list[m.Message]]:
    graph = CalcGraph(tw.NODE)
    graph.on_in_sync()
    msgs = states.feed(graph, states.kvs([*(tw.wep(w) for w in tw.WORKLOADS), *objs]))
    return graph, msgs


def _tiers(msgs: list[m.Message]) -> dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]]:
    """endpoint pod name -> ((tier, defaultAction, ingress policy names), ...) sent."""
    out = {}
    for msg in msgs:
        if isinstance(msg, m.WorkloadEndpointUpdate):
            pod = msg.endpoint.name.split("-k8s-")[1].split("-")[0]
            out[pod] = tuple(
                (t.name, t.default_action, tuple(p.name for p in t.ingress_policies))
                for t in msg.endpoint.tiers
            )
    return out


def _tier(name: str, order: float | None, action: str = "Deny") -> dict[str, Any]:
    spec: dict[str, Any] = {"defaultAction": action}
    if order is not None:
        spec["order"] = order
    return {"kind": "Tier", "metadata": {"name": name}, "spec": spec}


def _gnp(name: str, selector: str, tier: str = "default", order: float = 1) -> dict[str, Any]:
    return tw.Policy(name, tier, order, selector, [tw.Rule("Allow")], [], None).resource()


def test_tiers_in_order_with_their_default_actions() -> None:
    _, msgs = _graph(
        _tier("late", 5e6, "Pass"),
        _tier("early", 10),
        _gnp("p", "all()"),
        _gnp("early.p", "all()", "early"),
        _gnp("late.p", "app == 'a'", "late"),
    )
    sent = _tiers(msgs)
    assert sent["a"] == (
        ("early", "Deny", ("early.p",)),
        ("default", "Deny", ("p",)),  # absent from the datastore: order 1,000,000, Deny
        ("late", "Pass", ("late.p",)),
    )
    assert sent["b"] == (("early", "Deny", ("early.p",)), ("default", "Deny", ("p",)))


def test_a_tier_change_resends_only_endpoints_it_applies_to() -> None:
    graph, _ = _graph(_tier("t", 10), _gnp("t.only-a", "app == 'a'", "t"), _gnp("p", "all()"))
    msgs = states.feed(graph, states.kvs([_tier("t", 2e6, "Pass")]))
    assert set(_tiers(msgs)) == {"a"}
    assert _tiers(msgs)["a"] == (("default", "Deny", ("p",)), ("t", "Pass", ("t.only-a",)))
    # The same values written again: nothing to send.
    assert states.feed(graph, states.kvs([_tier("t", 2e6, "Pass")])) == []


def test_missing_tier_fails_closed_and_is_reported() -> None:
    graph, msgs = _graph(
        _gnp("ghost.p", "app == 'a'", "ghost"), _tier("t", 1), _gnp("t.p", "all()", "t")
    )
    assert _tiers(msgs)["a"] == (("t", "Deny", ("t.p",)), ("ghost", "Deny", ("ghost.p",)))
    assert graph.active_rules.missing_tiers == ["ghost"]
    # Deleting a Tier that still has policies (only a raw etcd write can): the same fallback.
    # t is now unordered too, so by name after ghost; b's TierInfo is unchanged: not re-sent.
    msgs = states.feed(graph, [(states.key_of(_tier("t", 1)), None)])
    assert _tiers(msgs) == {"a": (("ghost", "Deny", ("ghost.p",)), ("t", "Deny", ("t.p",)))}
    assert graph.active_rules.missing_tiers == ["ghost", "t"]


def test_built_in_tiers_count_as_present() -> None:
    _, msgs = _graph(
        _gnp("kube-baseline.b", "all()", "kube-baseline"),
        _gnp("kube-admin.a", "all()", "kube-admin"),
        _gnp("p", "all()"),
    )
    assert _tiers(msgs)["c"] == (
        ("kube-admin", "Pass", ("kube-admin.a",)),
        ("default", "Deny", ("p",)),
        ("kube-baseline", "Pass", ("kube-baseline.b",)),
    )


def test_host_endpoint_tiers_per_kind() -> None:
    """Host endpoints: normal, applyOnForward, preDNAT and doNotTrack policies each in their own
    tier lists; preDNAT and doNotTrack chains never apply a tier's default drop, normal and
    forward chains do (Calico's rule renderer)."""
    from calico.dataplane import nft_trace

    hep = {
        "kind": "HostEndpoint",
        "metadata": {"name": "h", "labels": {"role": "host"}},
        "spec": {"node": tw.NODE, "interfaceName": "eth0", "expectedIPs": ["10.99.0.11"]},
    }

    def gnp(name: str, tier: str, **flags: bool) -> dict[str, Any]:
        deny = {"action": "Deny", "source": {"nets": ["10.9.0.0/16"]}}
        spec = {"tier": tier, "selector": "role == 'host'", **flags, "ingress": [deny]}
        return {"kind": "GlobalNetworkPolicy", "metadata": {"name": f"{tier}.{name}"}, "spec": spec}

    _, msgs = _graph(
        _tier("a", 1), _tier("b", 2, "Pass"), hep,
        gnp("normal", "a"), gnp("fwd", "b", applyOnForward=True),
        gnp("dnat", "a", preDNAT=True, applyOnForward=True),
        gnp("raw", "b", doNotTrack=True, applyOnForward=True),
    )  # fmt: skip
    (upd,) = [x for x in msgs if isinstance(x, m.HostEndpointUpdate)]
    ep = upd.endpoint
    assert [(t.name, t.default_action) for t in ep.tiers] == [("a", "Deny"), ("b", "Pass")]
    assert [t.name for t in ep.forward_tiers] == ["b"]
    assert [t.name for t in ep.pre_dnat_tiers] == ["a"]
    assert [t.name for t in ep.untracked_tiers] == ["b"]
    chains = nft_trace.render(msgs).chains()

    def tier_chains(endpoint_chain: str) -> list[tuple[str, ...]]:
        return [
            chains[r.split()[1]] for r in chains[endpoint_chain] if r.startswith("jump cali-ti")
        ]

    drops = {
        stem: [any("drop" in r for r in tc) for tc in tier_chains(f"{stem}-eth0")]
        for stem in ("cali-fh", "cali-fhfw", "cali-fhdnat", "cali-fhraw")
    }
    # normal: tier a (Deny) drops at its end, tier b (Pass) does not; forward: b only (Pass);
    # preDNAT (tier a, Deny) and doNotTrack: never.
    assert drops == {"cali-fh": [True, False], "cali-fhfw": [False], "cali-fhdnat": [False],
                     "cali-fhraw": [False]}  # fmt: skip
