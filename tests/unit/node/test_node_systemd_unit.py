"""The systemd unit carries the guide's environment and is accepted by systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "deploy" / "systemd" / "calico-node.service"


def _unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(f"{section}.{key}", []).append(value)
    return out


def test_guide_environment_is_kept() -> None:
    env = dict(v.split("=", 1) for v in _unit()["Service.Environment"])
    for var in (
        "ETCD_ENDPOINTS",
        "NODENAME",
        "IP",
        "NO_DEFAULT_POOLS",
        "AS",
        "IP6",
        "CALICO_NETWORKING_BACKEND",
        "FELIX_DEFAULTENDPOINTTOHOSTACTION",
    ):
        assert var in env, var
    assert env["CALICO_NETWORKING_BACKEND"] == "bird"
    assert env["FELIX_DEFAULTENDPOINTTOHOSTACTION"] == "ACCEPT"
    assert env["CALICO_RUN_DIR"] == "/var/run/calico"
    unit = _unit()
    assert unit["Service.ExecStart"][0].endswith("/calico-node")
    assert unit["Service.Restart"] == ["always"]
    assert unit["Service.RestartSec"] == ["10"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = shutil.which("true")
    assert exe
    unit = tmp_path / "calico-node.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/calico-node", exe))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "calico-node.service" not in out.stderr, out.stderr
