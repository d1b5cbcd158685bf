"""The lab's etcd options (``--etcd-members N``, ``--etcd-tls``): checks, recorded options, member
addresses, what every component is given (endpoint list, certificate files), older state files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico_lab import cluster, datastore, etcd, nodes, state, views
from calico_lab.datastore import EtcdOptions
from calico_lab.state import LabError


def test_flags_are_checked_before_anything_is_made() -> None:
    assert datastore.requested() == {}
    assert datastore.requested(members=3, tls=True) == {"members": 3, "tls": True}
    for bad in (0, 8, -1):
        with pytest.raises(LabError, match=rf"--etcd-members {bad}: must be between 1 and 7"):
            datastore.requested(members=bad)


def test_an_existing_lab_keeps_its_etcd_and_refuses_another() -> None:
    recorded = EtcdOptions(members=3, tls=True)
    assert datastore.resolve({}, recorded, lab="t") == recorded
    assert datastore.resolve({"members": 3}, recorded, lab="t") == recorded
    with pytest.raises(LabError, match=r"already up with --etcd-members 3, not 1"):
        datastore.resolve({"members": 1}, recorded, lab="t")
    with pytest.raises(LabError, match=r"already up with --etcd-tls true, not false"):
        datastore.resolve({"tls": False}, recorded, lab="t")
    assert datastore.resolve({}, None, lab="t") == EtcdOptions(members=1, tls=False)


def test_each_member_has_its_own_address_below_the_nodes() -> None:
    opts = EtcdOptions(members=3)
    assert opts.hosts() == ["10.99.0.1", "10.99.0.2", "10.99.0.3"]
    assert opts.endpoints_text() == (
        "http://10.99.0.1:2379,http://10.99.0.2:2379,http://10.99.0.3:2379"
    )
    assert EtcdOptions(members=7).hosts()[-1] == "10.99.0.7"  # nodes start at .11
    assert EtcdOptions(tls=True).endpoints() == ["https://10.99.0.1:2379"]


def test_every_component_gets_the_member_list_and_its_own_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = cluster.new_state("t", 2, etcd_opts=EtcdOptions(members=3, tls=True))
    pki = tmp_path / "t" / "pki"
    urls = "https://10.99.0.1:2379,https://10.99.0.2:2379,https://10.99.0.3:2379"
    env = nodes.node_env(lab, lab.nodes[1])
    assert env["ETCD_ENDPOINTS"] == urls
    assert env["ETCD_CA_CERT_FILE"] == str(pki / "ca.crt")
    assert env["ETCD_CERT_FILE"] == str(pki / "calico-node-node2.crt")
    assert env["ETCD_KEY_FILE"] == str(pki / "calico-node-node2.key")
    plugin = nodes.conflist(lab, lab.nodes[1])["plugins"][0]
    assert plugin["etcd_endpoints"] == urls
    assert plugin["etcd_ca_cert_file"] == str(pki / "ca.crt")
    assert plugin["etcd_cert_file"] == str(pki / "cni-node2.crt")
    assert plugin["etcd_key_file"] == str(pki / "cni-node2.key")
    tls = lab.etcd_tls("calico-lab")
    assert tls is not None
    assert tls.cert_file == str(pki / "calico-lab.crt")
    # members: their own address and certificate, clients must present one
    members = etcd.servers(lab)
    assert [m.endpoint for m in members] == urls.split(",")
    assert [m.name for m in members] == ["calab-t-0", "calab-t-1", "calab-t-2"]
    assert members[2].tls is not None
    assert members[2].tls.cert_file == str(pki / "etcd-2.crt")
    assert all(m.tls and m.tls.client_cert_auth for m in members)
    assert members[0].netns == "calab-t-core"


def test_without_tls_nothing_names_a_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = cluster.new_state("t", 1)
    env = nodes.node_env(lab, lab.nodes[0])
    assert env["ETCD_ENDPOINTS"] == "http://10.99.0.1:2379"
    assert not any(k.endswith("_FILE") for k in env if k.startswith("ETCD_"))
    assert not any(k.startswith("etcd_") and k.endswith("_file") for k in nodes.conflist(
        lab, lab.nodes[0])["plugins"][0])  # fmt: skip
    # a one-member lab keeps the layout it always had
    (member,) = etcd.servers(lab)
    assert member.name == "calab-t"
    assert member.data_dir == tmp_path / "t" / "etcd"
    assert member.log_file == tmp_path / "t" / "etcd.log"


def test_state_round_trip_and_a_state_file_from_before_the_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = cluster.new_state("t", 1, etcd_opts=EtcdOptions(members=3, tls=True))
    lab.etcd_pids = [11, 12, 13]
    lab.save()
    loaded = state.require("t")
    assert loaded.etcd == EtcdOptions(members=3, tls=True)
    assert loaded.etcd_pids == [11, 12, 13]
    assert loaded.etcd_pid == 11
    data = json.loads((tmp_path / "t" / "state.json").read_text())
    del data["etcd"], data["etcd_pids"]
    data["etcd_pid"] = 42
    (tmp_path / "t" / "state.json").write_text(json.dumps(data))
    old = state.require("t")
    assert old.etcd == EtcdOptions()
    assert old.etcd_pids == [42]


def test_status_text_shows_every_member() -> None:
    base = {"name": "t", "dir": "/x", "nodes": [], "pods": []}
    one = {"endpoint": "http://10.99.0.1:2379", "running": True, "members": [], "tls": False}
    assert "etcd: http://10.99.0.1:2379 running" in views.status_text({**base, "etcd": one})
    three = {
        "endpoint": "x",
        "running": True,
        "tls": True,
        "members": [
            {"endpoint": "https://10.99.0.1:2379", "running": True},
            {"endpoint": "https://10.99.0.2:2379", "running": False},
            {"endpoint": "https://10.99.0.3:2379", "running": True},
        ],
    }
    text = views.status_text({**base, "etcd": three})
    assert "etcd: 2/3 members (client mTLS): https://10.99.0.1:2379 up, " in text
    assert "https://10.99.0.2:2379 DOWN" in text
