"""The encapsulation and NAT parameters (Felix's names, FelixConfiguration fields as Calico spells
them) and the status file other processes read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico.agent import config, status
from calico.agent.main import dataplane_config
from calico.model import felixconfig


def test_encap_defaults_are_felixs() -> None:
    cfg = config.load({"NODENAME": "n1"})
    assert (cfg["VXLANMTU"], cfg["IpInIpMtu"], cfg["VXLANVNI"], cfg["VXLANPort"]) == (
        0,
        0,
        4096,
        4789,
    )
    assert cfg["NATOutgoingAddress"] == ""


def test_encap_params_from_felixconfiguration_fields_and_env() -> None:
    glob = {"vxlanMTU": 1400, "ipipMTU": 1440, "vxlanVNI": 77, "vxlanPort": 8472}
    node = {"natOutgoingAddress": "192.0.2.7"}
    cfg = config.load({}, global_config=glob, node_config=node)
    assert (cfg["VXLANMTU"], cfg["IpInIpMtu"], cfg["VXLANVNI"], cfg["VXLANPort"]) == (
        1400,
        1440,
        77,
        8472,
    )
    assert cfg["NATOutgoingAddress"] == "192.0.2.7"
    for field in ("vxlanMTU", "ipipMTU", "vxlanVNI", "vxlanPort", "natOutgoingAddress"):
        assert field in felixconfig.FIELDS  # the datastore accepts what the agent reads
    env = {"FELIX_VXLANMTU": "1300", "FELIX_IPINIPMTU": "1420", "FELIX_NATOUTGOINGADDRESS": ""}
    cfg = config.load(env, global_config=glob, node_config=node)
    assert (cfg["VXLANMTU"], cfg["IpInIpMtu"], cfg["NATOutgoingAddress"]) == (1300, 1420, "")
    dp = dataplane_config(cfg)
    assert (dp.encap.vxlan_mtu, dp.encap.ipip_mtu, dp.encap.vxlan_vni) == (1300, 1420, 77)


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("FELIX_VXLANVNI", "0"),
        ("FELIX_VXLANPORT", "70000"),
        ("FELIX_NATOUTGOINGADDRESS", "fd00::1"),
        ("FELIX_VXLANMTU", "big"),
    ],
)
def test_bad_encap_env_names_the_variable(env: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=f"{env}={value!r}"):
        config.load({env: value})


def test_status_file_is_rewritten_atomically_only_on_change(tmp_path: Path) -> None:
    path = status.path_from_env({"CALICO_RUN_DIR": str(tmp_path / "run")})
    assert path == tmp_path / "run" / "felix-status.json"
    sf = status.StatusFile(path)
    st = {"ready": False, "in_sync": True, "applies": 1, "problems": ["IPIP pool(s) p: ..."]}
    assert sf.write(st)
    assert json.loads(path.read_text()) == st
    assert not sf.write(dict(st))  # unchanged: not rewritten
    assert sf.write({**st, "applies": 2})
    assert [p.name for p in path.parent.iterdir()] == ["felix-status.json"]  # no temp left
    assert status.path_from_env({}) == Path("/var/run/calico/felix-status.json")
