"""``calico-lab up --kubernetes``'s pure parts: the hosted manifest as the lab applies it, pods
filled in with the lab's image, the node's configs (cgroup root, masked sysctls, conntrack left
alone), cgroup hierarchies from mountinfo, the one-layer image archive, the recorded state."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_lab import (
    cluster,
    k8s_calico,
    k8s_cluster,
    k8s_host,
    k8s_images,
    k8s_node,
    k8s_pki,
    k8s_pods,
    k8s_state,
    main,
)
from calico_lab.network import Network
from calico_lab.state import LabError, LabState

MANIFEST = Path(__file__).resolve().parents[3] / "manifests" / "calico.yaml"


def lab(tmp_path: Path, *, net: Network | None = None) -> LabState:
    made = cluster.new_state("t", 2, net)
    made.dir = str(tmp_path / "t")
    made.run_root = str(tmp_path / "run")  # never the machine's /run/calico-lab
    return made


def docs_of(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def test_the_hosted_manifest_gets_the_labs_etcd_and_network_options(tmp_path: Path) -> None:
    net = Network(vxlan="Always", nat_outgoing=False, backend="vxlan")
    text = k8s_calico.hosted_manifest(lab(tmp_path, net=net), MANIFEST.read_text())
    docs = docs_of(text)
    config = docs[("ConfigMap", "calico-config")]["data"]
    assert config["etcd_endpoints"] == "http://10.99.0.1:2379"
    assert (config["calico_backend"], config["veth_mtu"]) == ("vxlan", "1450")
    ds = docs[("DaemonSet", "calico-node")]["spec"]["template"]["spec"]
    (node,) = [c for c in ds["containers"] if c["name"] == "calico-node"]
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["CALICO_IPV4POOL_VXLAN"] == "Always"
    assert env["CALICO_IPV4POOL_IPIP"] == "Never"
    assert env["CALICO_IPV4POOL_NAT_OUTGOING"] == "false"
    assert [e["name"] for e in node["env"]].count("CALICO_IPV4POOL_VXLAN") == 1
    # everything else is the manifest as a user has it
    assert docs.keys() == docs_of(MANIFEST.read_text()).keys()


def test_the_manifest_mounts_nothing_a_host_may_lack() -> None:
    ds = docs_of(MANIFEST.read_text())[("DaemonSet", "calico-node")]["spec"]["template"]["spec"]
    paths = [v["hostPath"]["path"] for v in ds["volumes"] if "hostPath" in v]
    for path in paths:
        typed = next(v for v in ds["volumes"] if v.get("hostPath", {}).get("path") == path)
        assert typed["hostPath"].get("type") == "DirectoryOrCreate", path
    assert "/lib/modules" not in paths


def test_a_pod_without_an_image_serves_its_container_ports_with_the_responder() -> None:
    pod: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {"name": "a", "namespace": "x"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                }
            ]
        },
    }
    (out,) = k8s_pods.prepare([pod])
    (c,) = out["spec"]["containers"]
    assert c["image"] == k8s_images.responder_ref()
    assert c["imagePullPolicy"] == "Never"
    assert c["args"] == ["--identity", "x/a", "--tcp", "80", "--udp", "53"]
    assert "image" not in pod["spec"]["containers"][0]  # the input is not changed


def test_other_images_and_given_commands_are_left_alone() -> None:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "a", "image": "busybox:1.36", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "calico-lab/responder", "args": ["--tcp", "9000"]},
            {
                "name": "c",
                "image": "docker.io/calico-lab/responder:latest",
                "imagePullPolicy": "IfNotPresent",
            },
        ]
    }
    k8s_pods.fill_pod_spec(spec, "x/p")
    a, b, c = spec["containers"]
    assert "imagePullPolicy" not in a
    assert "args" not in a
    assert b["imagePullPolicy"] == "Never"
    assert b["args"] == ["--tcp", "9000"]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["--identity", "x/p"]


def test_a_deployments_template_is_filled_without_an_identity() -> None:
    deploy = {"kind": "Deployment", "metadata": {"name": "d"},
              "spec": {"template": {"spec": {"containers": [
                  {"name": "c", "ports": [{"containerPort": 8080}]}]}}}}  # fmt: skip
    (out,) = k8s_pods.prepare([deploy])
    (c,) = out["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["--tcp", "8080"]


def test_manifests_split_into_calico_resources_and_kubernetes_objects() -> None:
    text = """
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: x}}
- {apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
"""
    calico, kube = k8s_pods.split(k8s_pods.load([("-", text)]))
    assert [d["kind"] for d in calico] == ["GlobalNetworkPolicy"]
    assert [d["kind"] for d in kube] == ["Namespace", "Service"]
    with pytest.raises(LabError, match="-: document 1: not a Kubernetes object"):
        k8s_pods.load([("-", "just: a mapping\n")])


def test_a_pod_pinned_to_a_node_the_lab_lacks_is_refused(tmp_path: Path) -> None:
    docs = [{"kind": "Pod", "metadata": {"name": "db"}, "spec": {"nodeName": "node3"}}]
    with pytest.raises(LabError, match=r"pod db: spec.nodeName: node 'node3' is not in lab"):
        k8s_pods.check_nodes(lab(tmp_path), docs)


def test_pod_cgroups_name_the_pod_uid() -> None:
    uid = "0a4c5b03-5829-4e11-8ec1-fdcbdef237ff"
    for path in (f"/calab-t-node1/kubepods/besteffort/pod{uid}/abc/",
                 f"/calab-t-node1/kubepods/pod{uid}/abc/"):  # fmt: skip
        found = k8s_pods.POD_CGROUP.search(path)
        assert found is not None
        assert found[1] == uid


def test_each_node_has_its_own_cgroup_root_and_kubelet_paths(tmp_path: Path) -> None:
    made = lab(tmp_path)
    for node in made.nodes:
        config = json.loads(k8s_node.kubelet_config(made, node))
        assert config["cgroupRoot"] == f"/calab-t-{node.name}"
        assert config["cgroupDriver"] == "cgroupfs"
        assert config["address"] == node.ip
    ks = k8s_state.KubeState(kube_bin="/k")
    argv = k8s_node.kubelet_argv(made, ks, made.nodes[0])
    assert any(a.startswith("--volume-plugin-dir=" + str(made.path)) for a in argv)


def test_kube_proxy_leaves_the_machines_conntrack_settings_alone(tmp_path: Path) -> None:
    made = lab(tmp_path)
    config = json.loads(k8s_node.kube_proxy_config(made, made.nodes[0]))
    assert config["mode"] == "iptables"
    assert config["conntrack"] == {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }


def test_the_node_masks_every_sysctl_kubelet_would_write(tmp_path: Path) -> None:
    made = lab(tmp_path)
    args = k8s_node.init_args(made, "node1")
    masks = dict(a.split("=", 1) for a in args[args.index("--mask") :: 1] if "/proc/sys/" in a)
    assert set(masks) == {f"/proc/sys/{k}" for k in k8s_node.SYSCTL_MASKS}
    assert Path(masks["/proc/sys/kernel/panic"]).read_text() == "10\n"
    binds = [args[i + 1] for i, a in enumerate(args) if a == "--bind"]
    targets = [b.split("=", 1)[1] for b in binds]
    assert targets[:2] == ["/run/calico", "/var/log"]  # /var/log before /var/log/calico
    assert set(k8s_node.MOUNT_POINTS) <= set(targets)


def test_cgroup_hierarchies_are_read_from_mountinfo() -> None:
    info = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert k8s_host.cgroup_mounts(info) == [
        ("/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct"),
        ("/sys/fs/cgroup/systemd", "none,name=systemd"),
        ("/sys/fs/cgroup/unified", "cgroup2"),
    ]


def test_only_lab_cgroups_are_ever_removed() -> None:
    with pytest.raises(LabError, match="not named calab-"):
        k8s_host.remove_cgroup_root("kubepods")


def test_the_image_archive_is_one_deterministic_layer(tmp_path: Path) -> None:
    layer = k8s_images.Layer()
    layer.file("bin/tool", b"\x7fELF...", 0o755)
    layer.symlink("bin/sh", "tool")
    data = layer.tar()
    first = k8s_images.write_archive(tmp_path / "a.tar", tags=["x/y:1"], layer=data,
                                     entrypoint=["/bin/tool"])  # fmt: skip
    again = k8s_images.write_archive(tmp_path / "b.tar", tags=["x/y:1"], layer=data,
                                     entrypoint=["/bin/tool"])  # fmt: skip
    assert first == again
    with tarfile.open(tmp_path / "a.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (entry,) = manifest
        config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
        inner = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
    assert entry["RepoTags"] == ["x/y:1"]
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert names["bin"].isdir()
    assert names["bin/sh"].linkname == "tool"
    assert names["bin/tool"].mode == 0o755
    assert names["bin/tool"].mtime == 0


def test_the_kubernetes_state_round_trips_through_the_state_file(tmp_path: Path) -> None:
    made = lab(tmp_path)
    ks = k8s_state.KubeState(calico="host", kube_bin="/k")
    ks.hosts["node1"] = k8s_state.KubeHost(
        netns="calab-t-node1", init_pid=7, cgroup="calab-t-node1"
    )
    ks.hosts["node1"].daemons["kubelet"] = 9
    k8s_state.save(made, ks)
    data = json.loads((made.path / "state.json").read_text())
    again = k8s_state.load(LabState.from_json(data))
    assert again == ks
    assert k8s_state.load(lab(tmp_path / "other")) is None


def test_a_lab_keeps_its_kind(tmp_path: Path) -> None:
    plain = lab(tmp_path)
    with pytest.raises(LabError, match="was made without --kubernetes"):
        cluster._same_kubernetes(plain, {"calico": "hosted"})
    plain.kubernetes = {"calico": "host"}
    with pytest.raises(LabError, match="was made --kubernetes --calico host"):
        cluster._same_kubernetes(plain, {"calico": "hosted"})
    cluster._same_kubernetes(plain, None)  # up without the flags keeps it


def test_kubernetes_flags_need_kubernetes() -> None:
    with pytest.raises(LabError, match="--calico and --kube-bin go with --kubernetes"):
        main._kubernetes_options(False, "host", None, None)
    with pytest.raises(LabError, match="--kubeconfig follows another cluster"):
        main._kubernetes_options(True, None, None, "/k.conf")
    assert main._kubernetes_options(False, None, None, None) is None


def test_missing_kube_binaries_are_named(tmp_path: Path) -> None:
    (tmp_path / "kubelet").write_text("")
    with pytest.raises(LabError, match=r"--kube-bin .*: no kube-apiserver, .*kubectl there"):
        k8s_cluster.check_kube_bin(str(tmp_path))


def test_the_apiserver_certificate_names_every_address_it_is_reached_at() -> None:
    sans = k8s_pki.apiserver_sans("10.99.0.1")
    assert {"IP:10.99.0.1", "IP:10.96.0.1", "DNS:kubernetes.default.svc"} <= set(sans)


def test_with_etcd_tls_the_hosted_manifest_carries_the_secret_and_its_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calico_lab import datastore, pki

    made = lab(tmp_path)
    made.etcd = datastore.EtcdOptions(members=3, tls=True)
    made.pki_dir.mkdir(parents=True)
    for name in ("ca", k8s_calico.ETCD_CLIENT):  # what pki.ensure_ca and pki.issue make
        (made.pki_dir / f"{name}.crt").write_text(f"{name} certificate\n")
        (made.pki_dir / f"{name}.key").write_text(f"{name} key\n")
    monkeypatch.setattr(pki, "issue", lambda *a, **k: None)
    docs = docs_of(k8s_calico.hosted_manifest(made, MANIFEST.read_text()))
    config = docs[("ConfigMap", "calico-config")]["data"]
    assert config["etcd_endpoints"].count("https://") == 3
    assert config["etcd_ca"] == "/calico-secrets/etcd-ca"
    assert config["etcd_key"] == "/calico-secrets/etcd-key"
    secret = docs[("Secret", "calico-etcd-secrets")]["data"]
    assert base64.b64decode(secret["etcd-cert"]) == b"calico-hosted certificate\n"
    assert base64.b64decode(secret["etcd-ca"]) == b"ca certificate\n"
