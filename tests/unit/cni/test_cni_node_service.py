"""calico-node supervises the CNI server when it installs the CNI launchers."""

from __future__ import annotations

import sys

from calico.node import main, startup


def services(env: dict[str, str]) -> dict[str, list[str]]:
    return {s.name: list(s.argv) for s in main.services(env, startup.settings_from_env(env))}


def test_cni_server_runs_with_the_installed_launchers() -> None:
    env = {"NODENAME": "n", "CALICO_NETWORKING_BACKEND": "none", "CNI_BIN_DIR": "/opt/cni/bin"}
    assert services(env) == {
        "felix": services(env)["felix"],
        "cni": [sys.executable, "-m", "calico.cni.server"],
    }
    assert "cni" not in services({**env, "CALICO_DISABLE_CNI_SERVER": "true"})
    assert "cni" not in services({"NODENAME": "n", "CALICO_NETWORKING_BACKEND": "none"})
