"""``kill -9`` of the policy agent, of BIRD and of calico-node itself, each under a continuous TCP
stream a -> b (node1 -> node2) and continuous probers of the denied pairs c -> b, d -> b: the
stream survives, no denied connection gets through, every node keeps its BGP routes (graceful
restart: the kernel keeps BIRD's routes, peers keep the restarting node's), and afterwards every
node's dataplane equals the datastore again. Also: the convergence oracle does see a node whose
agent is stopped (so "converged" is not vacuous)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.chaos.chaoslab import ChaosLab
from tests.chaos.churn import policy
from tests.chaos.figures import Figures, rounds
from tests.chaos.routes import RouteWatcher
from tests.chaos.scenario import MARKER, marker_policy, start_traffic, stop_traffic
from tests.e2e.lab_support import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(900)]


def test_the_oracle_sees_a_node_whose_agent_is_stopped(chaos_lab: ChaosLab) -> None:
    lab = chaos_lab
    lab.converged(within=60)
    felix = lab.service_pid("node3", "felix")
    os.kill(felix, signal.SIGSTOP)
    try:
        lab.apply(policy(0, 1))  # selects c, on node3
        time.sleep(1.0)
        stale = lab.differences()
    finally:
        os.kill(felix, signal.SIGCONT)
        lab.delete("NetworkPolicy", "churn-0", "default")
    assert stale, "the oracle saw no difference on a node whose agent was stopped"
    assert all(d.startswith("node3: ") for d in stale), stale
    lab.converged(within=60)


def _kill(lab: ChaosLab, node: str, what: str, figures: Figures, change: int) -> None:
    """kill -9 one process, change policy while it is down, wait until it runs again."""
    if what == "calico-node":
        pid = lab.state().node(node).pid
        os.kill(pid, signal.SIGKILL)
        figures.fault(f"kill -9 calico-node on {node} (its children see their parent die)")
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        lab.apply(marker_policy(change))  # every node must program it, this one when back
        figures.op("policy change while down")
        time.sleep(3.0)  # down for a while, as a crash-looping or upgraded node is
        # the host's supervisor (systemd, kubelet) starts it again: here calico-lab up
        lab.handle.cli("up", "--nodes", "3", "--quiet", timeout=300)
        return
    service = {"agent": "felix", "BIRD": "bird"}[what]
    pid = lab.service_pid(node, service)
    os.kill(pid, signal.SIGKILL)
    figures.fault(f"kill -9 {what} ({service}) on {node}")
    if what == "agent":
        lab.apply(marker_policy(change))  # the restarted agent must program it
        figures.op("policy change while down")
    lab.wait_service(node, service, not_pid=pid)  # calico-node restarts it


@pytest.mark.parametrize(
    ("what", "node"),
    [("agent", "node2"), ("BIRD", "node1"), ("BIRD", "node2"), ("calico-node", "node2")],
)
def test_kill_9_under_traffic(chaos_lab: ChaosLab, figures: Figures, what: str, node: str) -> None:
    lab = chaos_lab
    figures.scenario = f"kill_9_{what.lower().replace('-', '_')}_{node}"
    lab.converged(within=60)
    lab.wait_bgp_settled()  # a restart before the last one ended is another scenario
    st = lab.state()
    routes = RouteWatcher({n.name: n.netns for n in st.nodes})
    stream, probers = start_traffic(lab)
    try:
        for round_ in range(rounds(1, 3)):
            _kill(lab, node, what, figures, round_)
            started = time.monotonic()
            figures.converge_s.append(round(lab.converged(within=120), 2))
            figures.notes.append(f"back and converged {time.monotonic() - started:.1f} s")
            figures.notes.append(f"BGP graceful restart ended after {lab.wait_bgp_settled():.1f} s")
    finally:
        lost = routes.stop()
        wrongly, stream_error = stop_traffic(stream, probers, figures)
        lab.delete("GlobalNetworkPolicy", MARKER)
    figures.leaks = 0
    figures.events_lost = 0
    missing = {f"{n}: {dst} via {via}": round(t, 2) for (n, dst, via), t in lost.items()}
    figures.notes.append(f"route samples {routes.samples}; routes missing: {missing or 'none'}")
    logs = bird_logs(lab) if missing or stream_error else ""
    assert wrongly == 0, f"{wrongly} connection(s) of a denied pair got through"
    assert not missing, f"routes went missing during the fault: {missing}\n{logs}"
    assert not stream_error, f"{stream_error}\n{logs}"


def bird_logs(lab: ChaosLab) -> str:
    """The end of every node's BIRD log (what a failed route check needs)."""
    from calico_lab import nodes

    st = lab.state()
    out = []
    for n in st.nodes:
        for svc in ("bird", "bgp"):
            path = nodes.log_dir(st, n.name) / svc / "current"
            lines = path.read_text(errors="replace").splitlines()[-25:] if path.exists() else []
            out.append(f"--- {n.name} {svc}:\n" + "\n".join(lines))
    return "\n".join(out)
