"""The whole etcd cluster down for 30 s, then back: the dataplane keeps enforcing the last policy
(a denied pair never gets through; the programmed state does not change), the TCP stream
survives, CNI ADD and DEL during the outage answer the spec's error JSON and write nothing, no
component exits; once etcd is back a DEL cleans up, every node converges (a change made after
the return is programmed everywhere), ``calicoctl ipam check`` is clean and every
WorkloadEndpoint has an address."""

from __future__ import annotations

import time

import pytest

from calico.cni.veth import host_veth_name
from tests.chaos import cni, converge
from tests.chaos.chaoslab import ChaosLab
from tests.chaos.figures import Figures, rounds
from tests.chaos.scenario import (
    MARKER,
    ipam_problems,
    marker_policy,
    start_traffic,
    stop_traffic,
)
from tests.e2e.lab_support import has_link

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(900)]

OUTAGE = 30.0


def test_whole_etcd_down_for_30s(chaos_lab: ChaosLab, figures: Figures) -> None:
    lab = chaos_lab
    lab.converged(within=60)
    restarts_before = lab.restarts()
    boxes: list[cni.Sandbox] = []
    try:
        for round_ in range(rounds(1, 2)):
            outage(lab, figures, boxes, round_)
    finally:
        cni.remove_sandboxes(lab.name, boxes)
        lab.delete("GlobalNetworkPolicy", MARKER)
    assert lab.restarts() == restarts_before, "a component restarted during the outage"
    figures.leaks = ipam_problems(lab)
    assert figures.leaks == 0
    weps = lab.store.list("workloadendpoints")
    assert all((w.get("spec") or {}).get("ipNetworks") for w in weps), "an endpoint without an IP"


def outage(lab: ChaosLab, figures: Figures, boxes: list[cni.Sandbox], round_: int) -> None:
    st = lab.state()
    before = {n.name: converge.kernel(n.netns) for n in st.nodes}
    stream, probers = start_traffic(lab)
    box = cni.new_sandbox(lab.name, "node3", f"outage-{round_}")
    boxes.append(box)
    for i in range(len(st.etcd_pids)):
        lab.kill_member(i)
    figures.fault(f"kill -9 every etcd member ({len(st.etcd_pids)}), {OUTAGE:.0f} s")
    down_at = time.monotonic()
    try:
        add = cni.call(st, box, "ADD")
        figures.op("CNI ADD during the outage")
        delete = cni.call(st, box, "DEL")
        figures.op("CNI DEL during the outage")
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        during = {n.name: converge.kernel(n.netns) for n in st.nodes}
    finally:
        lab.restart_etcd()
        back_at = time.monotonic()
        wrongly, stream_error = stop_traffic(stream, probers, figures)
    figures.notes.append(
        f"CNI ADD during the outage answered code {add.out.get('code')} in {add.seconds:.2f} s"
    )
    # the spec's error: non-zero exit, JSON with the version, a code and a message
    assert add.rc != 0
    assert add.out.get("cniVersion") == "0.3.1", add.out
    assert add.out.get("code") == 11, add.out  # "try again later"
    assert "etcd" in str(add.out.get("msg", "")) + str(add.out.get("details", "")), add.out
    assert delete.rc != 0
    assert delete.out.get("code") == 11, delete.out
    assert not has_link(st.node("node3").netns, host_veth_name(f"default.{box.name}"))
    for name, state_before in before.items():
        assert not converge.differences(state_before, during[name]), f"{name} changed"
    assert wrongly == 0, f"{wrongly} connection(s) of a denied pair got through"
    assert not stream_error, stream_error
    # etcd is back: the runtime's DEL retry succeeds; a change is programmed everywhere
    assert cni.call(st, box, "DEL").rc == 0
    lab.apply(marker_policy(round_))
    figures.op("policy write after the return")
    figures.converge_s.append(round(lab.converged(within=90), 2))
    figures.notes.append(
        f"etcd back (3 members restarted) {back_at - down_at:.1f} s after the kill"
    )
    handle = f"k8s-pod-network.{box.container_id}"
    assert lab.etcd_call(lambda e: e.get(f"/calico/ipam/v2/handle/{handle}")) is None
    endpoints = [
        w for w in lab.store.list("workloadendpoints")
        if (w.get("spec") or {}).get("containerID") == box.container_id
    ]  # fmt: skip
    assert endpoints == [], "the failed ADD left a WorkloadEndpoint"
