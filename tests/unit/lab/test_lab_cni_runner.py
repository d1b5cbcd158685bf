"""Unit tests for how the lab calls CNI plugins (kubelet's conventions) and renders status."""

from __future__ import annotations

from typing import Any

import pytest

from calico_lab import cni_runner, nodes, views
from calico_lab.state import LabState, NodeState


def test_cni_args_are_kubelets() -> None:
    ref = cni_runner.PodRef(namespace="x", name="a", container_id="c1", netns="calab-t-p-1")
    assert ref.cni_args() == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=c1"
    )


def test_plugin_conf_carries_name_version_and_prev_result() -> None:
    conflist: dict[str, Any] = {
        "name": "net",
        "cniVersion": "0.3.1",
        "plugins": [{"type": "calico"}],
    }
    conf = cni_runner._plugin_conf(conflist, conflist["plugins"][0], {"ips": []})
    assert conf == {
        "type": "calico",
        "name": "net",
        "cniVersion": "0.3.1",
        "prevResult": {"ips": []},
    }
    assert "prevResult" not in cni_runner._plugin_conf(conflist, {"type": "calico"}, None)


def test_pod_ip_from_result() -> None:
    result = {"ips": [{"address": "fd00::1/128"}, {"address": "192.168.1.5/32"}]}
    assert cni_runner.pod_ip(result) == "192.168.1.5"
    with pytest.raises(cni_runner.CNIError, match="no IPv4"):
        cni_runner.pod_ip({"ips": []})


def test_node_conflist_names_node_etcd_and_pod_api(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = LabState(name="t", dir=str(tmp_path))
    node = NodeState("node2", "calab-t-node2", "10.99.0.12")
    plugin = nodes.conflist(lab, node)["plugins"][0]
    assert plugin["type"] == "calico"
    assert plugin["nodename"] == "node2"
    assert plugin["etcd_endpoints"] == "http://10.99.0.1:2379"
    assert plugin["ipam"] == {"type": "calico-ipam"}
    assert plugin["kubernetes"] == {"k8s_api_root": "http://10.99.0.1:8080"}
    env = nodes.node_env(lab, node)
    assert env["CALICO_RUN_DIR"].endswith("/nodes/node2/run")
    assert env["NODENAME"] == "node2"
    assert env["IP"] == "10.99.0.12/24"


def test_status_text() -> None:
    snap = {
        "name": "t",
        "dir": "/x",
        "ready": True,
        "etcd": {"endpoint": "http://10.99.0.1:2379", "running": True},
        "nodes": [
            {
                "name": "node1",
                "ip": "10.99.0.11",
                "running": True,
                "bgp": [{"name": "Mesh_10_99_0_12", "state": "up", "info": "Established"}],
            }
        ],
        "pods": [
            {
                "pod": "x/a",
                "node": "node1",
                "ip": "192.168.1.2",
                "responder": True,
                "labels": {"pod": "a"},
            }
        ],
    }
    text = views.status_text(snap)
    assert "Mesh_10_99_0_12:Established" in text
    assert "1/1" in text
    assert "x/a" in text
    assert "pod=a" in text


@pytest.mark.parametrize(
    ("host", "pod"),
    [(None, "calab-t-p-1"), ("", "calab-t-p-1"), ("calt-x", "calab-t-p-1"), ("calab-t-node1", "")],
)
def test_plugins_run_only_in_lab_namespaces(host: str | None, pod: str) -> None:
    """The plugins program "this" namespace: never the root one (nothing is executed here)."""
    ref = cni_runner.PodRef(namespace="x", name="a", container_id="c1", netns=pod)
    conflist: dict[str, Any] = {
        "name": "net",
        "cniVersion": "0.3.1",
        "plugins": [{"type": "calico"}],
    }
    with pytest.raises(cni_runner.CNIError, match="is not a lab namespace"):
        cni_runner.add(conflist, ref, cni_path="/nonexistent", host_netns=host)
