"""``up --datastore kubernetes``: options checked before anything is made, a lab keeps its mode,
and every component is configured for the Kubernetes datastore (nothing of etcd)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico_lab import cluster, kdd, kdd_objects, kdd_server, kubenode, nodes
from calico_lab.state import LabError, LabState, PodState


def lab(tmp_path: Path, mode: dict[str, object] | None = None) -> LabState:
    made = cluster.new_state("t", 2)
    made.dir = str(tmp_path / "t")
    made.run_root = str(tmp_path / "run")
    kdd.resolve(made, mode, new=True)
    return made


def kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kc.json"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    return str(path)


def test_etcd_is_the_default_and_needs_no_api_server() -> None:
    assert kdd.requested(None, kubeconfig=None, apiserver=None) is None
    assert kdd.requested("etcdv3", kubeconfig=None, apiserver=None) is None


@pytest.mark.parametrize(
    ("datastore", "apiserver", "said"),
    [
        ("bogus", None, "--datastore bogus: use etcdv3 or kubernetes"),
        ("etcdv3", "stand-in", "--apiserver goes with --datastore kubernetes"),
        (None, "stand-in", "--apiserver goes with --datastore kubernetes"),
        ("kubernetes", "apiserver9", "--apiserver apiserver9: use kube-apiserver or stand-in"),
    ],
)
def test_bad_options_are_named(datastore: str | None, apiserver: str | None, said: str) -> None:
    with pytest.raises(LabError, match=said):
        kdd.requested(datastore, kubeconfig=None, apiserver=apiserver)


def test_a_given_kubeconfig_must_name_a_server_on_this_machines_loopback(tmp_path: Path) -> None:
    local = kubeconfig(tmp_path, "https://127.0.0.1:6443")
    assert kdd.requested("kubernetes", kubeconfig=local, apiserver=None) == {
        "apiserver": "external", "kubeconfig": local, "chosen": True}  # fmt: skip
    remote = kubeconfig(tmp_path, "https://192.0.2.7:6443")
    with pytest.raises(LabError, match="not on this machine's loopback"):
        kdd.requested("kubernetes", kubeconfig=remote, apiserver=None)
    with pytest.raises(LabError, match="--apiserver: with --kubeconfig"):
        kdd.requested("kubernetes", kubeconfig=local, apiserver="stand-in")


def test_a_real_kube_apiserver_is_asked_for_only_where_it_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kdd_server, "KUBE_BIN", tmp_path / "none")
    with pytest.raises(LabError, match="kube-apiserver not found"):
        kdd.requested("kubernetes", kubeconfig=None, apiserver="kube-apiserver")
    # not asked for: the stand-in
    got = kdd.requested("kubernetes", kubeconfig=None, apiserver=None)
    assert got == {"apiserver": "stand-in", "chosen": False}


def test_a_lab_keeps_its_datastore(tmp_path: Path) -> None:
    etcd_lab = lab(tmp_path)
    kdd.resolve(etcd_lab, None, new=False)  # no --datastore: kept
    with pytest.raises(LabError, match="was made with --datastore etcdv3"):
        kdd.resolve(etcd_lab, {"apiserver": "stand-in", "chosen": False}, new=False)
    stand_in = lab(tmp_path, {"apiserver": "stand-in", "chosen": True})
    assert stand_in.kdd == {"apiserver": "stand-in"}  # "chosen" is not recorded
    kdd.resolve(stand_in, {"apiserver": "kube-apiserver", "chosen": False}, new=False)  # default
    with pytest.raises(LabError, match=r"--datastore kubernetes \(stand-in\)"):
        kdd.resolve(stand_in, {"apiserver": "kube-apiserver", "chosen": True}, new=False)
    with pytest.raises(LabError, match="was made with --datastore kubernetes"):
        kdd.resolve(stand_in, {}, new=False)  # --datastore etcdv3


def test_components_get_the_kubernetes_datastore_and_nothing_of_etcd(tmp_path: Path) -> None:
    made = lab(tmp_path, {"apiserver": "kube-apiserver"})
    node = made.nodes[0]
    env = nodes.node_env(made, node)
    assert env["DATASTORE_TYPE"] == "kubernetes"
    assert env["KUBECONFIG"] == str(made.path / "kdd" / "kubeconfig")
    assert not [k for k in env if k.startswith("ETCD_")]
    plugin = nodes.conflist(made, node)["plugins"][0]
    assert plugin["datastore_type"] == "kubernetes"
    assert plugin["kubernetes"] == {"kubeconfig": env["KUBECONFIG"]}
    assert "etcd_endpoints" not in plugin
    assert plugin["nodename"] == node.name
    # an etcd lab: as before
    etcd_plugin = nodes.conflist(lab(tmp_path / "e"), node)["plugins"][0]
    assert etcd_plugin["etcd_endpoints"]
    assert "datastore_type" not in etcd_plugin


def test_a_given_kubeconfig_is_used_unchanged(tmp_path: Path) -> None:
    made = lab(tmp_path, {"apiserver": "external", "kubeconfig": "/k/config"})
    assert nodes.node_env(made, made.nodes[0])["KUBECONFIG"] == "/k/config"


def test_the_real_api_server_names_the_lab_and_leaves_no_token_controller_to_wait_for(
    tmp_path: Path,
) -> None:
    made = lab(tmp_path, {"apiserver": "kube-apiserver"})
    (made.path / "kdd").mkdir(parents=True)
    (made.path / "kdd" / "sa.key").write_text("stand-in key")  # no openssl here
    argv = kdd_server.real_argv(made)
    assert f"--external-hostname={made.core}" in argv  # daemons.alive's marker
    assert "--disable-admission-plugins=ServiceAccount" in argv
    assert "--bind-address=10.99.0.1" in argv
    assert f"--etcd-servers={made.etcd_endpoint}" in argv


def test_a_pod_object_is_bound_to_its_node_with_its_service_account() -> None:
    p = PodState(namespace="x", name="a", node="node2", netns="n", container_id="c",
                 labels={"pod": "a"}, service_account="sa1")  # fmt: skip
    body = kdd_objects.pod_body(p, {"containers": [{"ports": [{"containerPort": 80}]}]})
    assert body["metadata"] == {"name": "a", "namespace": "x", "labels": {"pod": "a"}}
    assert body["spec"]["nodeName"] == "node2"
    assert body["spec"]["serviceAccountName"] == "sa1"
    assert body["spec"]["containers"] == [
        {"name": "c0", "image": "calico-lab/responder", "ports": [{"containerPort": 80}]}
    ]


def test_a_node_object_carries_the_labs_label_and_address() -> None:
    node = kdd.node_object("t", "node1", "10.99.0.11")
    assert node["metadata"]["labels"][kubenode.LAB_LABEL] == "t"
    assert {"type": "InternalIP", "address": "10.99.0.11"} in node["status"]["addresses"]
