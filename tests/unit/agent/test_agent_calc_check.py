"""The live full-recompute check off the agent's loop (calico.agent.calc_check)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from calico.agent import calc_check
from calico.calc.graph import CalcGraph
from calico.dpapi import messages as m
from tests.unit.calc import states


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wep(i: int, node: str = "node1") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node}-k8s-p{i}-eth0",
            "namespace": "default",
            "labels": {"app": f"a{i % 3}", "projectcalico.org/namespace": "default"},
        },
        "spec": {
            "node": node,
            "orchestrator": "k8s",
            "pod": f"p{i}",
            "endpoint": "eth0",
            "interfaceName": f"cali{i:011d}",
            "ipNetworks": [f"10.0.{i // 256}.{i % 256}/32"],
            "profiles": ["kns.default"],
        },
    }


def policy(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"np{i}", "namespace": "default"},
        "spec": {
            "selector": f"app == 'a{i % 3}'",
            "ingress": [{"action": "Allow", "source": {"selector": f"app == 'a{(i + 1) % 3}'"}}],
        },
    }


def graph_with(n: int = 100) -> CalcGraph:
    graph = CalcGraph("node1")
    graph.on_in_sync()
    objs = [policy(i) for i in range(5)] + [wep(i, "node1" if i < 5 else "node2") for i in range(n)]
    states.feed(graph, states.kvs(objs))
    return graph


def running(checker: calc_check.CalcChecker) -> bool:
    """Read afresh each time: a turn of the checker changes it between two reads."""
    return checker.running


def started(graph: CalcGraph) -> tuple[calc_check.CalcChecker, Clock]:
    clock = Clock()
    checker = calc_check.CalcChecker(5.0, clock=clock)
    clock.now += 5.0
    checker.turn(graph, interval=5.0, in_sync=True)
    assert running(checker)
    return checker, clock


def finish(checker: calc_check.CalcChecker, graph: CalcGraph) -> None:
    assert checker.wait(60)
    checker.turn(graph, interval=5.0, in_sync=True)


def test_agreeing_check_runs_and_the_next_is_due_an_interval_later() -> None:
    graph = graph_with()
    checker, clock = started(graph)
    finish(checker, graph)
    assert checker.checks == 1
    assert checker.last_ms > 0  # measured in the child
    assert not running(checker)
    clock.now += 4.9
    checker.turn(graph, interval=5.0, in_sync=True)
    assert not running(checker)
    clock.now += 0.2
    checker.turn(graph, interval=5.0, in_sync=True)
    assert running(checker)
    finish(checker, graph)
    assert checker.checks == 2


def test_divergence_is_raised_on_the_loop() -> None:
    graph = graph_with()
    pid = next(iter(graph.sequencer._sent_policies))
    graph.sequencer._sent_policies[pid] = m.Policy()  # an incremental bug
    checker, _ = started(graph)
    with pytest.raises(calc_check.CalcDiverged, match="policies: 1 differ"):
        finish(checker, graph)
    assert not running(checker)


def test_a_recompute_that_fails_is_a_divergence() -> None:
    graph = graph_with()
    graph.resources[states.key_of(wep(0))] = b"{not deflated"
    checker, _ = started(graph)
    with pytest.raises(calc_check.CalcDiverged, match="the full recompute failed: "):
        finish(checker, graph)


def test_the_loop_is_not_held_while_the_child_computes() -> None:
    graph = graph_with(3000)
    checker, _ = started(graph)
    start = time.monotonic()
    checker.turn(graph, interval=5.0, in_sync=True)  # the check is still running: no wait
    assert time.monotonic() - start < 0.05
    assert running(checker)
    finish(checker, graph)
    assert checker.checks == 1


def test_updates_after_the_fork_do_not_disturb_the_check() -> None:
    graph = graph_with()
    checker, _ = started(graph)  # the child has the graph as of now
    states.feed(graph, states.kvs([wep(i) for i in range(100, 200)] + [policy(7)]))
    states.feed(graph, [(states.key_of(wep(3)), None)])
    pid = next(iter(graph.sequencer._sent_policies))
    graph.sequencer._sent_policies[pid] = m.Policy()  # a bug after the fork: not this check's
    finish(checker, graph)
    assert checker.checks == 1


def test_no_check_when_off_or_not_in_sync() -> None:
    graph = graph_with(10)
    clock = Clock()
    checker = calc_check.CalcChecker(0.0, clock=clock)
    clock.now += 1000
    checker.turn(graph, interval=0.0, in_sync=True)
    assert not running(checker)
    checker.turn(graph, interval=1.0, in_sync=False)
    assert not running(checker)


def test_close_kills_a_running_check() -> None:
    graph = graph_with(3000)
    checker, _ = started(graph)
    child = checker._pid
    checker.close()
    assert not running(checker)
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # killed and reaped


def test_a_child_killed_from_outside_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph = graph_with(3000)
    checker, clock = started(graph)
    os.kill(checker._pid, signal.SIGKILL)  # what the OOM killer does
    finish(checker, graph)  # no CalcDiverged
    assert "killed by signal 9" in caplog.text
    clock.now += 5.0
    checker.turn(graph, interval=5.0, in_sync=True)
    assert running(checker)
    finish(checker, graph)
