"""The live full-recompute check in a real agent loop: agreement keeps it running, a divergence
ends it (crash-only, exit code 1), while the check itself runs off the loop (calc_check)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from calico.agent import config as agent_config
from calico.agent import main as agent_main
from calico.datastore.etcd import EtcdClient
from calico.dpapi import messages as m
from calico.lib import netns
from tests.integration.agent.harness import NODENAME, Node

pytestmark = [pytest.mark.netns, pytest.mark.etcd]

DENY = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "NetworkPolicy",
    "metadata": {"name": "deny-a", "namespace": "default"},
    "spec": {"selector": "app == 'b'", "ingress": [{"action": "Deny"}]},
}


def test_divergence_found_by_the_live_check_ends_the_agent(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.add_workload("b", "10.65.0.3", {"app": "b"})
    node.apply(DENY)
    env = {
        "ETCD_ENDPOINTS": node.etcd.endpoint,
        "NODENAME": NODENAME,
        "FELIX_CALCCHECKINTERVAL": "0.2",
        "FELIX_HEALTHENABLED": "false",
    }
    exit_code: list[int] = []
    made: list[agent_main.Agent] = []
    ready = threading.Event()

    def run() -> None:
        # The agent is made and run by a thread in the node namespace: its nft context's netlink
        # socket belongs to the namespace of the thread that opens it (libnft.LibNftables).
        netns.enter(node.ns)
        made.append(agent_main.Agent(agent_config.load(env), env, EtcdClient([node.etcd.endpoint])))
        ready.set()
        exit_code.append(made[0].run())

    caplog.set_level(logging.INFO)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20), caplog.text
    agent = made[0]
    try:
        deadline = time.monotonic() + 20
        while agent.checker.checks < 3:  # several agreeing checks: the agent keeps running
            assert time.monotonic() < deadline, "the live check did not run"
            assert thread.is_alive(), caplog.text
            time.sleep(0.05)
        pid = m.PolicyID("default", "deny-a")
        assert pid in agent.graph.sequencer._sent_policies
        agent.graph.sequencer._sent_policies[pid] = m.Policy()  # what an incremental bug does
        thread.join(20)
        assert not thread.is_alive(), "the agent kept running with a divergence"
    finally:
        agent.stopping.set()
        thread.join(10)
    assert exit_code == [1]
    assert "incremental state differs from a full recompute" in caplog.text
    assert "policies: 1 differ" in caplog.text
