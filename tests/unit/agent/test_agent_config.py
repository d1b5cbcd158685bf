"""The agent's parameter table: precedence env > node.<name> > default > built-in, parsing,
and errors that name the variable and the value."""

from __future__ import annotations

import pytest

from calico.agent import config


def test_defaults() -> None:
    cfg = config.load({"NODENAME": "n1"})
    assert cfg["FelixHostname"] == "n1"
    assert cfg["DefaultEndpointToHostAction"] == "DROP"
    assert ("tcp", 22) in cfg["FailsafeInboundHostPorts"]
    assert ("udp", 53) in cfg["FailsafeOutboundHostPorts"]
    assert cfg["HealthPort"] == 9099
    assert cfg["PrometheusMetricsPort"] == 9091


def test_precedence_env_then_node_then_global() -> None:
    glob = {
        "defaultEndpointToHostAction": "Accept",
        "logSeverityScreen": "Debug",
        "nftablesRefreshInterval": "1m30s",
    }
    node = {"defaultEndpointToHostAction": "Return"}
    cfg = config.load({}, global_config=glob, node_config=node)
    assert cfg["DefaultEndpointToHostAction"] == "RETURN"
    assert cfg.sources["DefaultEndpointToHostAction"] == "FelixConfiguration node"
    assert cfg["LogSeverityScreen"] == "DEBUG"
    assert cfg["NftablesRefreshInterval"] == 90.0
    cfg = config.load(
        {"FELIX_DEFAULTENDPOINTTOHOSTACTION": "drop"}, global_config=glob, node_config=node
    )
    assert cfg["DefaultEndpointToHostAction"] == "DROP"
    assert cfg.sources["DefaultEndpointToHostAction"] == "environment"


def test_failsafe_ports_both_forms() -> None:
    cfg = config.load(
        {"FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:22, udp:68,8080"},
        global_config={"failsafeOutboundHostPorts": [{"protocol": "UDP", "port": 53}]},
    )
    assert cfg["FailsafeInboundHostPorts"] == (("tcp", 22), ("udp", 68), ("tcp", 8080))
    assert cfg["FailsafeOutboundHostPorts"] == (("udp", 53),)
    assert config.load({"FELIX_FAILSAFEINBOUNDHOSTPORTS": "none"})["FailsafeInboundHostPorts"] == ()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("FELIX_DEFAULTENDPOINTTOHOSTACTION", "Maybe"),
        ("FELIX_HEALTHPORT", "99999"),
        ("FELIX_FAILSAFEINBOUNDHOSTPORTS", "icmp:1"),
        ("FELIX_NFTABLESREFRESHINTERVAL", "soon"),
        ("FELIX_HEALTHENABLED", "perhaps"),
    ],
)
def test_bad_env_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=f"{var}={value!r}"):
        config.load({var: value})


def test_bad_datastore_value_is_skipped() -> None:
    cfg = config.load({}, global_config={"healthPort": "lots"})
    assert cfg["HealthPort"] == 9099


def test_log_prefix_cannot_break_rules() -> None:
    with pytest.raises(config.ConfigError, match="FELIX_LOGPREFIX"):
        config.load({"FELIX_LOGPREFIX": 'x" drop'})
    assert config.load({"FELIX_LOGPREFIX": "calico-drop"})["LogPrefix"] == "calico-drop"


def test_env_only_parameters_ignore_the_datastore() -> None:
    cfg = config.load({}, global_config={"calcCheckInterval": 5})
    assert cfg["CalcCheckInterval"] == 600.0
    assert config.load({"FELIX_CALCCHECKINTERVAL": "2"})["CalcCheckInterval"] == 2.0
