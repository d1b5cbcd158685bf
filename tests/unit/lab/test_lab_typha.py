"""The lab's ``--typha`` option: fixed for the lab's life, what the agents and Typha are given
(plain, and with ``--etcd-tls`` Typha mTLS on the lab's CA), recorded in and read back from the
state file (older state files: no Typha), shown by ``status``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from calico_lab import cluster, nodes, state, views
from calico_lab import typha as lab_typha
from calico_lab.datastore import EtcdOptions
from calico_lab.state import LabError


def test_a_new_lab_takes_the_flag_an_existing_one_keeps_it() -> None:
    assert lab_typha.resolve(None, None, lab="t") is False
    assert lab_typha.resolve(True, None, lab="t") is True
    assert lab_typha.resolve(None, True, lab="t") is True
    assert lab_typha.resolve(True, True, lab="t") is True
    with pytest.raises(LabError, match=r"already up with --typha, not --no-typha"):
        lab_typha.resolve(False, True, lab="t")
    with pytest.raises(LabError, match=r"already up with --no-typha, not --typha"):
        lab_typha.resolve(True, False, lab="t")


def lab_state(tmp_path: Path, *, typha: bool, tls: bool) -> state.LabState:
    lab = cluster.new_state("t", 2, etcd_opts=EtcdOptions(tls=tls))
    lab.dir = str(tmp_path)
    lab.typha = typha
    return lab


def test_the_agents_are_pointed_at_typha_only_with_the_flag(tmp_path: Path) -> None:
    plain = lab_state(tmp_path, typha=False, tls=False)
    assert not any(k.startswith("FELIX_TYPHA") for k in nodes.node_env(plain, plain.nodes[0]))
    lab = lab_state(tmp_path, typha=True, tls=False)
    env = nodes.node_env(lab, lab.nodes[0])
    assert env["FELIX_TYPHAADDR"] == "10.99.0.1:5473"
    assert "FELIX_TYPHACAFILE" not in env
    assert "TYPHA_CAFILE" not in lab_typha.typha_env(lab)
    assert lab_typha.typha_env(lab)["ETCD_ENDPOINTS"] == "http://10.99.0.1:2379"


def test_with_etcd_tls_typha_and_the_agents_use_mtls(tmp_path: Path) -> None:
    lab = lab_state(tmp_path, typha=True, tls=True)
    env = nodes.node_env(lab, lab.nodes[1])
    pki = tmp_path / "pki"
    assert env["FELIX_TYPHACAFILE"] == str(pki / "ca.crt")
    assert env["FELIX_TYPHACERTFILE"] == str(pki / "calico-felix.crt")
    assert env["FELIX_TYPHACN"] == "calico-typha"
    t = lab_typha.typha_env(lab)
    assert t["TYPHA_SERVERCERTFILE"] == str(pki / "calico-typha.crt")
    assert t["TYPHA_CLIENTCN"] == "calico-felix"
    assert t["ETCD_CERT_FILE"] == str(pki / "calico-typha.crt")  # its etcd client identity
    assert t["ETCD_ENDPOINTS"] == "https://10.99.0.1:2379"


def test_recorded_in_the_state_file_and_older_files_have_none(tmp_path: Path) -> None:
    lab = lab_state(tmp_path, typha=True, tls=False)
    lab.typha_pid = 1234
    data = json.loads(json.dumps(asdict(lab)))
    back = state.LabState.from_json(dict(data))
    assert back.typha is True
    assert back.typha_pid == 1234
    del data["typha"], data["typha_pid"]
    old = state.LabState.from_json(data)
    assert old.typha is False
    assert old.typha_pid == 0


def test_status_text_shows_typha() -> None:
    base = {"name": "t", "dir": "/x", "etcd": {"endpoint": "e", "running": True}, "nodes": []}
    base["pods"] = []
    up = {"address": "10.99.0.1:5473", "running": True, "ready": True, "connections": 3}
    text = views.status_text({**base, "typha": {**up, "tls": True}})
    assert "typha: 10.99.0.1:5473 (mTLS) ready, 3 agent(s) connected" in text
    text = views.status_text({**base, "typha": {**up, "running": False}})
    assert "typha: 10.99.0.1:5473 NOT RUNNING" in text
    assert "typha:" not in views.status_text({**base, "typha": None})
