"""The agent's parameter table: precedence env > node.<name> > default > built-in, parsing,
and errors that name the variable and the value."""

from __future__ import annotations

import pytest

from calico.agent import config
from calico.model import felixconfig, fields


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


# ---- one parser: the agent uses exactly the FelixConfiguration values the model accepts -------

SAMPLES: list[object] = [
    True, False, "true", "yes", 0, 1, 9099, 65535, 65536, -1, "9099", 1.5, "lots", "", None,
    "Drop", "Accept", "Return", "accept", "DROP", "Debug", "Info", "Warning", "Fatal", "None",
    "warn", "90s", "1m30s", "500ms", "90", "soon", "calico-drop", 'x" drop', "a" * 30,
    "127.0.0.1", "fd00::1", " 10.0.0.1", 4096, 16777215, 16777216,
    [], [{"protocol": "TCP", "port": 22}], [{"protocol": "tcp", "port": 22}],
    [{"protocol": "UDP", "port": 70000}], [{"port": 53}], ["tcp:22"], {"a": 1},
]  # fmt: skip


@pytest.mark.parametrize("param", [p for p in config.PARAMS if p.field in felixconfig.FIELDS],
                         ids=lambda p: p.name)  # fmt: skip
def test_datastore_values_are_used_iff_the_model_accepts_them(param: config.Param) -> None:
    """calicoctl's check (model.felixconfig) and the agent agree on every sample value."""
    for raw in SAMPLES:
        if raw is None:
            continue
        try:
            felixconfig.FIELDS[param.field](raw, f"spec.{param.field}")
            accepted = True
        except fields.FieldError:
            accepted = False
        cfg = config.load({}, global_config={param.field: raw})
        used = cfg.sources[param.name] == "FelixConfiguration default"
        assert used == accepted, (param.name, raw)


def test_durations_in_any_go_unit_and_numbers_from_the_environment() -> None:
    cfg = config.load({}, global_config={"routeRefreshInterval": "500ms"})
    assert cfg["RouteRefreshInterval"] == 0.5
    assert config.load({"FELIX_ROUTEREFRESHINTERVAL": "30"})["RouteRefreshInterval"] == 30.0
    assert config.load({"FELIX_ROUTEREFRESHINTERVAL": "2m"})["RouteRefreshInterval"] == 120.0
    with pytest.raises(config.ConfigError, match="negative"):
        config.load({"FELIX_ROUTEREFRESHINTERVAL": "-5"})


def test_env_spellings_reach_the_model_parsers() -> None:
    cfg = config.load({"FELIX_HEALTHENABLED": "off", "FELIX_HEALTHPORT": "9100"})
    assert (cfg["HealthEnabled"], cfg["HealthPort"]) == (False, 9100)
    with pytest.raises(config.ConfigError, match=r"FELIX_HEALTHPORT='x': invalid value 'x'"):
        config.load({"FELIX_HEALTHPORT": "x"})
    with pytest.raises(config.ConfigError, match=r"want one of TCP, UDP, SCTP"):
        config.load({"FELIX_FAILSAFEOUTBOUNDHOSTPORTS": "icmp:1"})


def test_lower_case_datastore_values_are_rejected_as_calicoctl_rejects_them() -> None:
    cfg = config.load({}, global_config={"defaultEndpointToHostAction": "accept"})
    assert cfg.sources["DefaultEndpointToHostAction"] == "default"
    cfg = config.load({}, global_config={"logPrefix": "a" * 30})
    assert cfg["LogPrefix"] == "calico-packet"
