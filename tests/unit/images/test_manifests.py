"""manifests/calico.yaml and policy-controller.yaml: they parse, hang together, name the images
``make images`` builds, set only variables the product reads, and probe what calico-node serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import calico.agent.config
import calico.cni.install_cni
import calico.controllers
import calico.datastore.config
import calico.node
import calico.node.main
from calico.controllers import informer
from calico_images import spec

ROOT = Path(__file__).resolve().parents[3]
CALICO = ROOT / "manifests" / "calico.yaml"
POLICY = ROOT / "manifests" / "policy-controller.yaml"
NAME = re.compile(r"""["']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)["']""")  # a literal like "ETCD_KEY_FILE"
READ = re.compile(r"""env(?:iron)?(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""")  # env.get("IP")


def _docs(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text()) if d
    }


def _read_vars(*modules: Any) -> set[str]:
    """The variable names spelled out in the modules' (or packages') sources: a variable the
    product reads is named there as a string (``env.get("IP")``, a table of names)."""
    files: list[Path] = []
    for m in modules:
        path = Path(m.__file__)
        files += sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    texts = [f.read_text() for f in files]
    return {name for t in texts for name in NAME.findall(t) + READ.findall(t)}


DOCS = _docs(CALICO)
CONFIG = DOCS[("ConfigMap", "calico-config")]["data"]
NODE_DS = DOCS[("DaemonSet", "calico-node")]
POD = NODE_DS["spec"]["template"]["spec"]
NODE = POD["containers"][0]
INSTALL = POD["initContainers"][0]
KC = DOCS[("Deployment", "calico-kube-controllers")]["spec"]["template"]["spec"]["containers"][0]
DATASTORE_VARS = _read_vars(calico.datastore.config)
FELIX_VARS = {p.env for p in calico.agent.config.PARAMS + calico.agent.config.ENV_ONLY_PARAMS}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_every_image_is_one_make_images_builds_and_never_pulled() -> None:
    built = set(spec.refs(spec.project_version(ROOT)))
    containers = [NODE, INSTALL, KC]
    containers += [c for d in _docs(POLICY).values() if d["kind"] == "Deployment"
                   for c in d["spec"]["template"]["spec"]["containers"]]  # fmt: skip
    for c in containers:
        assert c["image"] in built, c["name"]
        assert c["imagePullPolicy"] == "Never", c["name"]
    assert {NODE["image"], INSTALL["image"], KC["image"]} == built


def test_config_map_has_calicos_keys_and_every_reference_resolves() -> None:
    assert {"etcd_endpoints", "calico_backend", "veth_mtu", "cni_network_config"} <= set(CONFIG)
    refs = [e["valueFrom"]["configMapKeyRef"] for c in (NODE, INSTALL, KC)
            for e in c["env"] if "configMapKeyRef" in e.get("valueFrom", {})]  # fmt: skip
    assert refs
    for ref in refs:
        assert ref["name"] == "calico-config"
        assert ref["key"] in CONFIG
    secret = DOCS[("Secret", "calico-etcd-secrets")]
    volumes = {v["name"]: v for v in POD["volumes"]}
    assert volumes["etcd-certs"]["secret"]["secretName"] == secret["metadata"]["name"]


def test_cni_network_config_renders_with_install_cnis_placeholders() -> None:
    template = CONFIG["cni_network_config"]
    values = dict.fromkeys(calico.cni.install_cni.PLACEHOLDER.findall(
        calico.cni.install_cni.DEFAULT_TEMPLATE), "x")  # fmt: skip
    values["__CNI_MTU__"] = CONFIG["veth_mtu"]
    conf = json.loads(calico.cni.install_cni.render(template, values))
    calico_plugin = conf["plugins"][0]
    assert calico_plugin["type"] == "calico"
    assert calico_plugin["ipam"] == {"type": "calico-ipam"}
    assert calico_plugin["policy"] == {"type": "k8s"}
    assert calico_plugin["mtu"] == int(CONFIG["veth_mtu"])
    assert conf["plugins"][1]["type"] == "portmap"


def test_calico_node_is_host_network_privileged_and_probed_by_its_own_checks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert POD["hostNetwork"] is True
    assert NODE["securityContext"]["privileged"] is True
    ready = NODE["readinessProbe"]["exec"]["command"]
    assert ready == ["calico-node", "--bird-ready", "--felix-ready"]
    with pytest.raises(SystemExit):
        calico.node.main.main(["--help"])
    usage = capsys.readouterr().out
    assert all(flag in usage for flag in ready[1:])
    live = NODE["livenessProbe"]["httpGet"]
    health = calico.agent.config.BY_NAME
    assert (live["path"], live["port"]) == ("/liveness", health["HealthPort"].default)
    assert live["host"] == health["HealthHost"].default


def test_install_cni_writes_into_the_hosts_cni_dirs() -> None:
    assert INSTALL["command"] == ["/usr/bin/install-cni"]
    mounts = {m["name"]: m["mountPath"] for m in INSTALL["volumeMounts"]}
    volumes = {v["name"]: v.get("hostPath", {}).get("path") for v in POD["volumes"]}
    # install-cni's default host paths, under its default --host-root /host
    assert volumes[next(n for n, p in mounts.items() if p == "/host/opt/cni/bin")] == "/opt/cni/bin"
    assert (
        volumes[next(n for n, p in mounts.items() if p == "/host/etc/cni/net.d")]
        == "/etc/cni/net.d"
    )
    assert _env(INSTALL)["SLEEP"]["value"] == "false"  # an init container must finish


def test_every_variable_set_is_one_the_product_reads() -> None:
    node_reads = _read_vars(calico.node) | DATASTORE_VARS | FELIX_VARS
    assert set(_env(NODE)) <= node_reads, set(_env(NODE)) - node_reads
    install_reads = _read_vars(calico.cni.install_cni)
    assert set(_env(INSTALL)) <= install_reads, set(_env(INSTALL)) - install_reads
    kc_reads = _read_vars(calico.controllers) | DATASTORE_VARS
    assert set(_env(KC)) <= kc_reads, set(_env(KC)) - kc_reads


def test_rbac_binds_each_service_account_and_covers_the_controllers_watches() -> None:
    for name in ("calico-node", "calico-kube-controllers"):
        assert ("ServiceAccount", name) in DOCS
        subject = DOCS[("ClusterRoleBinding", name)]["subjects"][0]
        assert (subject["name"], subject["namespace"]) == (name, "kube-system")
        assert DOCS[("ClusterRoleBinding", name)]["roleRef"]["name"] == name
    rules = DOCS[("ClusterRole", "calico-kube-controllers")]["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    for res in informer.RESOURCES.values():
        for verb in ("list", "watch"):
            assert (res._api_info.resource.group, res._api_info.plural, verb) in granted
    node_rules = DOCS[("ClusterRole", "calico-node")]["rules"]
    assert any("pods" in r["resources"] and "get" in r["verbs"] for r in node_rules)  # CNI lookup
    assert POD["serviceAccountName"] == "calico-node"
