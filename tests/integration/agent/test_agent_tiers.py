"""Tiered evaluation with real packets: random tier worlds (``tests/tier_world.py``) applied to
one real agent, and every probe between three workloads (TCP 80, TCP 8080, UDP 53) compared
with the reference evaluator. The same worlds are checked verdict by verdict, by the hundred,
against the compiled plan and the rendered chains in ``tests/unit/calc/test_tier_evaluation.py``;
this is the sample that drives the real nft ruleset in the kernel."""

from __future__ import annotations

import random

import pytest

from tests import tier_world as tw
from tests.integration.agent.harness import Matrix, Node

pytestmark = [pytest.mark.netns, pytest.mark.etcd]

SEEDS = range(8)


def _clear(node: Node, world: tw.World) -> None:
    for pol in world.policies:
        node.delete(pol.kind, pol.name, tw.NAMESPACE if pol.kind == "NetworkPolicy" else None)
    for name in world.tiers:
        if name not in tw.BUILT_IN:
            node.delete("Tier", name)


def test_random_tier_worlds_with_real_packets(node: Node) -> None:
    for w in tw.WORKLOADS:
        node.add_workload(w.name, w.ip, w.labels)
    node.start_agent()
    node.wait_ready()
    failures = []
    for seed in SEEDS:
        world = tw.random_world(random.Random(seed), missing_tiers=False)
        for obj in world.resources():
            node.apply(obj)
        mx = Matrix(node)
        for src in tw.WORKLOADS:
            for dst in tw.WORKLOADS:
                if src != dst:
                    for port, proto in tw.PORTS:
                        ok = tw.verdict(world, src.name, dst.name, port, proto)
                        mx.expect(src.name, dst.name, proto.lower(), port, ok=ok)
        try:
            mx.check(timeout=10)
        except AssertionError as exc:
            failures.append(f"seed {seed}:\n{world.describe()}\n{str(exc).split('--- agent')[0]}")
        _clear(node, world)
    assert not failures, "\n".join(failures) + "\n--- agent log ---\n" + node.log_tail()
    # The agent checks incremental == full recompute every 0.5 s and exits on a mismatch.
    assert node.agent is not None
    assert node.agent.poll() is None, node.log_tail()
