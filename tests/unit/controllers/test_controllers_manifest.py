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
