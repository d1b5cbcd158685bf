"""manifests/policy-controller.yaml: parses, grants what the controller uses, runs the command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from calico.controllers import informer, manager

MANIFEST = Path(__file__).resolve().parents[3] / "manifests" / "policy-controller.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_rbac_covers_every_watched_resource_and_events() -> None:
    docs = _docs()
    granted = {
        (g, r, v)
        for rule in docs["ClusterRole"]["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    for res in informer.RESOURCES.values():
        info = res._api_info
        for verb in ("list", "watch"):
            assert (info.resource.group, info.plural, verb) in granted
    assert ("", "events", "create") in granted
    binding = docs["ClusterRoleBinding"]["subjects"][0]
    assert binding["name"] == docs["ServiceAccount"]["metadata"]["name"]
    assert binding["namespace"] == "kube-system"


def test_deployment_runs_the_command_with_known_settings() -> None:
    dep = _docs()["Deployment"]
    assert dep["metadata"]["namespace"] == "kube-system"
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "calico-kube-controllers"
    container = pod["containers"][0]
    assert container["command"] == ["calico-kube-controllers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ETCD_ENDPOINTS"] == "<ETCD_ENDPOINTS>"
    enabled = tuple(env["ENABLED_CONTROLLERS"].split(","))
    assert manager.ControllerConfig(controllers=enabled).kinds()
    assert container["readinessProbe"]["exec"]["command"][:2] == [
        "calico-kube-controllers",
        "check-health",
    ]


def test_crds_define_the_kinds_the_informers_watch() -> None:
    crds = {}
    for path in sorted((MANIFEST.parent / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
        assert (
            path.name
            == f"{crd['metadata']['name'].split('.', 1)[1]}_{crd['spec']['names']['plural']}.yaml"
        )
    for kind in informer.OPTIONAL:
        info = informer.RESOURCES[kind]._api_info
        crd = crds[kind]
        assert crd["metadata"]["name"] == f"{info.plural}.{info.resource.group}"
        assert crd["spec"]["scope"] == "Cluster"
        (version,) = crd["spec"]["versions"]
        assert version["name"] == info.resource.version
        assert version["served"]
        assert version["storage"]
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        rules = spec["properties"]["ingress"]["items"]["properties"]
        actions = rules["action"]["enum"]
        assert actions == (
            ["Allow", "Deny", "Pass"] if kind == "AdminNetworkPolicy" else ["Allow", "Deny"]
        )
        egress_peer = spec["properties"]["egress"]["items"]["properties"]["to"]["items"]
        assert set(egress_peer["properties"]) == {
            "namespaces",
            "pods",
            "nodes",
            "networks",
            "domainNames",
        }
        assert (egress_peer["minProperties"], egress_peer["maxProperties"]) == (1, 1)
    anp_spec = crds["AdminNetworkPolicy"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    priority = anp_spec["properties"]["spec"]["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (0, 1000)
