"""Typha's and the agent's Typha settings: Calico's names, defaults, errors naming the variable."""

from __future__ import annotations

import pytest

from calico.agent import config as agent_config
from calico.agent import typha as agent_typha
from calico.datastore.typha_client import parse_address
from calico.typha import config


def test_defaults_are_calicos() -> None:
    cfg = config.load({})
    assert cfg["ServerPort"] == 5473
    assert cfg["HealthPort"] == 9098
    assert cfg["PrometheusMetricsPort"] == 9093
    assert cfg["ServerMaxFallBehindSecs"] == 300.0
    assert cfg["ServerPingIntervalSecs"] == 10.0
    assert cfg["ServerPongTimeoutSecs"] == 60.0
    assert not cfg.tls().enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TYPHA_SERVERPORT": "70000"}, "TYPHA_SERVERPORT='70000'"),
        ({"TYPHA_HEALTHENABLED": "maybe"}, "TYPHA_HEALTHENABLED='maybe': 'maybe' is not a boolean"),
        ({"TYPHA_SERVERMAXFALLBEHINDSECS": "-3"}, "TYPHA_SERVERMAXFALLBEHINDSECS='-3'"),
        ({"TYPHA_CAFILE": "/ca.crt"}, "TYPHA_SERVERCERTFILE, TYPHA_SERVERKEYFILE not set"),
        (
            {"TYPHA_CAFILE": "a", "TYPHA_SERVERCERTFILE": "b", "TYPHA_SERVERKEYFILE": "c"},
            "needs TYPHA_CLIENTCN or TYPHA_CLIENTURISAN",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.load(env)


def test_the_agent_reads_a_list_of_typha_addresses() -> None:
    cfg = agent_config.load({"FELIX_TYPHAADDR": "10.0.0.1:5473, [fd00::1]:5474,typha"})
    assert cfg["TyphaAddr"] == ("10.0.0.1:5473", "[fd00::1]:5474", "typha")
    assert agent_typha.wanted(cfg)
    assert parse_address("[fd00::1]:5474") == ("fd00::1", 5474)
    assert parse_address("typha") == ("typha", 5473)
    assert not agent_typha.wanted(agent_config.load({}))


@pytest.mark.parametrize("value", ["10.0.0.1:99999", "host:port", "[fd00::1", "a:b:c"])
def test_a_bad_typha_address_names_the_variable(value: str) -> None:
    with pytest.raises(
        agent_config.ConfigError, match=f"FELIX_TYPHAADDR={value!r}".replace("[", r"\[")
    ):
        agent_config.load({"FELIX_TYPHAADDR": value})


def test_partial_typha_tls_stops_the_agent() -> None:
    cfg = agent_config.load({"FELIX_TYPHAADDR": "t:1", "FELIX_TYPHACAFILE": "/ca"})
    with pytest.raises(agent_config.ConfigError, match="FELIX_TYPHACERTFILE, FELIX_TYPHAKEYFILE"):
        agent_typha.check(cfg)
    cfg = agent_config.load({"FELIX_TYPHAADDR": "t:1", "FELIX_TYPHACAFILE": "/nope/ca",
                             "FELIX_TYPHACERTFILE": "/nope/c", "FELIX_TYPHAKEYFILE": "/nope/k",
                             "FELIX_TYPHACN": "calico-typha"})  # fmt: skip
    with pytest.raises(agent_config.ConfigError, match="CA file /nope/ca"):
        agent_typha.check(cfg)
