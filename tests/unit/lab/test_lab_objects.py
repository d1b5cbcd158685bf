"""Unit tests for the lab's pure parts: names, manifest parsing, label syntax, matrix rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico_lab import objects, pods, probe, state
from calico_lab.main import parse_label_changes
from calico_lab.state import LabError, LabState, NodeState, PodState


def _lab(tmp_path: Path) -> LabState:
    lab = LabState(name="t", dir=str(tmp_path / "t"))
    lab.nodes = [
        NodeState("node1", "calab-t-node1", "10.99.0.11"),
        NodeState("node2", "calab-t-node2", "10.99.0.12"),
    ]
    return lab


def test_names_are_prefixed_and_stable() -> None:
    assert state.core_netns("demo") == "calab-demo-core"
    assert state.node_netns("demo", "node1") == "calab-demo-node1"
    a = state.pod_netns("demo", "x", "a")
    assert a.startswith("calab-demo-p-")
    assert a == state.pod_netns("demo", "x", "a")
    assert a != state.pod_netns("demo", "y", "a")
    assert state.node_ip(1) == "10.99.0.11"


@pytest.mark.parametrize("bad", ["", "Demo", "a-b", "x" * 16, "a/b"])
def test_bad_lab_names_are_rejected(bad: str) -> None:
    with pytest.raises(LabError, match="lab name"):
        state.check_name(bad)


def test_state_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = LabState(name="rt", dir=str(state.lab_dir("rt")))
    lab.nodes = [NodeState("node1", "calab-rt-node1", "10.99.0.11", pid=5)]
    lab.pods["x/a"] = PodState(
        "x",
        "a",
        "node1",
        "calab-rt-p-1",
        "c" * 64,
        {"pod": "a"},
        [{"containerPort": 80, "protocol": "TCP"}],
        ip="192.168.1.2",
    )
    lab.save()
    back = state.load("rt")
    assert back == lab
    assert state.existing_labs() == ["rt"]
    assert state.load("other") is None
    with pytest.raises(LabError, match="not up"):
        state.require("other")


MULTI = """
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x, labels: {pod: a}}
  spec:
    containers:
    - name: c
      ports: [{containerPort: 80, name: serve-80-tcp}, {containerPort: 80, protocol: UDP}]
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny, namespace: x}
  spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec: {selector: all(), types: [Ingress]}
"""


def test_parse_multi_doc_and_lists() -> None:
    docs = objects.parse(MULTI, "f.yaml")
    assert [d.kind for d in docs] == ["Namespace", "Pod", "NetworkPolicy", "GlobalNetworkPolicy"]
    assert docs[1].where == "f.yaml: document 2, item 1"
    assert docs[3].is_calico


def test_parse_json() -> None:
    docs = objects.parse(
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "z"}})
    )
    assert docs[0].name == "z"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
            "Deployment.*not supported",
        ),
        ("apiVersion: v1\nkind: Pod\nmetadata: {}\n", "metadata.name is required"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
        ("apiVersion: projectcalico.org/v3\nkind: NoSuchKind\nmetadata: {name: n}\n", "NoSuchKind"),
    ],
)
def test_parse_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(LabError, match=match):
        objects.parse(text, "f.yaml")


def test_container_ports_upper_cases_and_checks() -> None:
    pod = {
        "spec": {
            "containers": [{"ports": [{"containerPort": 81, "protocol": "udp", "name": "dns"}]}]
        }
    }
    assert pods.container_ports(pod) == [{"containerPort": 81, "protocol": "UDP", "name": "dns"}]
    bad_port = {"spec": {"containers": [{"ports": [{"containerPort": 0}]}]}}
    with pytest.raises(LabError, match=r"spec.containers\[0\].ports\[0\].containerPort"):
        pods.container_ports(bad_port)
    bad_protocol = {"spec": {"containers": [{"ports": [{"containerPort": 1, "protocol": "ICMP"}]}]}}
    with pytest.raises(LabError, match="protocol"):
        pods.container_ports(bad_protocol)


def test_placement_round_robin_and_node_name(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    assert [pods.place(lab, {"spec": {}}) for _ in range(3)] == ["node1", "node2", "node1"]
    assert pods.place(lab, {"spec": {"nodeName": "node2"}}) == "node2"
    with pytest.raises(LabError, match="node9"):
        pods.place(lab, {"spec": {"nodeName": "node9"}})


def test_label_change_syntax() -> None:
    assert parse_label_changes(("a=b", "c-", "d=")) == {"a": "b", "c": None, "d": ""}
    with pytest.raises(LabError, match="KEY=VALUE"):
        parse_label_changes(("novalue",))


def test_matrix_table_marks() -> None:
    result = {"x/a": {"x/a": True, "x/b": False}, "x/b": {"x/a": True, "x/b": True}}
    text = probe.render_table(result, colour=False)
    lines = text.splitlines()
    assert "x/a" in lines[0]
    assert "x/b" in lines[0]
    assert lines[2].startswith("x/a")
    assert "✓" in lines[2]
    assert "✗" in lines[2]
    assert "\033[" not in text
    assert "\033[32m" in probe.render_table(result, colour=True)


def test_probe_protocol_checked() -> None:
    assert probe.check_protocol("udp") == "UDP"
    with pytest.raises(LabError, match="TCP, UDP or SCTP"):
        probe.check_protocol("ICMP")
