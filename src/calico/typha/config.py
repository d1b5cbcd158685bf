"""Typha's configuration: one table of ``TYPHA_<NAME>`` environment parameters (Calico's names).

As Calico's Typha reads them (its config file is not supported): a value that does not parse
stops Typha with an error naming the variable and the value. Defaults are Calico's, except
``ServerPort`` (Calico's binary defaults to 0 and its manifests set 5473: we default to 5473) and
the parameters Calico does not have (marked "ours" in the table). The datastore is configured as
for every component (``DATASTORE_TYPE``, ``ETCD_ENDPOINTS``, ...; calico.datastore.config).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from calico.datastore import typha_tls


class ConfigError(ValueError):
    """A TYPHA_* value that does not parse (names the variable and the value)."""


def _bool(v: str) -> bool:
    text = v.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{v!r} is not a boolean")


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        if not v.strip().isdigit() or not lo <= int(v) <= hi:
            raise ValueError(f"{v!r} is not an integer in [{lo}, {hi}]")
        return int(v)

    return parse


def _seconds(v: str) -> float:
    try:
        secs = float(v.strip().removesuffix("s"))
    except ValueError:
        raise ValueError(f"{v!r} is not a number of seconds") from None
    if not secs > 0:
        raise ValueError(f"{v!r} is not a positive number of seconds")
    return secs


def _level(v: str) -> str:
    text = v.strip().upper()
    text = {"WARN": "WARNING", "FATAL": "CRITICAL", "PANIC": "CRITICAL"}.get(text, text)
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NONE"):
        raise ValueError(f"{v!r} is not a log level")
    return text


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str

    @property
    def env(self) -> str:
        return "TYPHA_" + self.name.upper()


PORT = _int(0, 65535)
PARAMS: tuple[Param, ...] = (
    Param("LogSeverityScreen", _level, "INFO", "log level on stderr"),
    Param("HealthEnabled", _bool, False, "serve /liveness and /readiness"),
    Param("HealthHost", str, "localhost", "health address"),
    Param("HealthPort", PORT, 9098, "health port"),
    Param("PrometheusMetricsEnabled", _bool, False, "serve /metrics"),
    Param("PrometheusMetricsHost", str, "", "metrics address (empty: all)"),
    Param("PrometheusMetricsPort", PORT, 9093, "metrics port"),
    Param("ServerHost", str, "", "address clients connect to (ours; empty: all)"),
    Param("ServerPort", PORT, 5473, "port clients connect to"),
    Param("MaxConnectionsUpperLimit", _int(1, 1 << 20), 10000, "clients beyond are refused"),
    Param("SnapshotCacheMaxBatchSize", _int(1, 1 << 20), 100, "entries per snapshot message"),
    Param("ServerMaxMessageSize", _int(1, 1 << 20), 100, "entries per change message"),
    Param("ServerMaxFallBehindSecs", _seconds, 300.0, "a client further behind is dropped"),
    Param(
        "ServerNewClientFallBehindGracePeriod",
        _seconds,
        300.0,
        "a new client's time to read its snapshot, and then to catch up",
    ),
    Param("ServerPingIntervalSecs", _seconds, 10.0, "a ping to each client this often"),
    Param("ServerPongTimeoutSecs", _seconds, 60.0, "a client silent this long is dropped"),
    Param("ServerHandshakeTimeoutSecs", _seconds, 10.0, "a client's time to say hello"),
    Param(
        "ServerMaxFallBehindBytes",
        _int(1 << 16, 1 << 40),
        64 << 20,
        "ours: bytes of changes kept for clients behind (one copy for all); a client further "
        "behind is dropped",
    ),
    Param(
        "ServerWriteBufferSize",
        _int(1 << 12, 1 << 30),
        1 << 20,
        "ours: bytes queued per client before Typha waits for it to read (then it is behind)",
    ),
    Param("CAFile", str, "", "CA of the clients' certificates (TLS)"),
    Param("ServerCertFile", str, "", "Typha's certificate (TLS)"),
    Param("ServerKeyFile", str, "", "Typha's key (TLS)"),
    Param("ClientCN", str, "", "a client certificate must have this Common Name, or"),
    Param("ClientURISAN", str, "", "this URI SAN"),
)
TLS_NAMES_ALL = (
    "TYPHA_CAFILE",
    "TYPHA_SERVERCERTFILE",
    "TYPHA_SERVERKEYFILE",
    "TYPHA_CLIENTCN",
    "TYPHA_CLIENTURISAN",
)


class Config:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def tls(self) -> typha_tls.TLSSettings:
        return typha_tls.TLSSettings(
            ca_file=self["CAFile"],
            cert_file=self["ServerCertFile"],
            key_file=self["ServerKeyFile"],
            peer_cn=self["ClientCN"],
            peer_uri_san=self["ClientURISAN"],
        )


def load(env: Mapping[str, str]) -> Config:
    values: dict[str, Any] = {}
    for p in PARAMS:
        values[p.name] = p.default
        if p.env in env:
            try:
                values[p.name] = p.parse(env[p.env])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{p.env}={env[p.env]!r}: {exc}") from exc
    cfg = Config(values)
    try:
        typha_tls.check(cfg.tls(), TLS_NAMES_ALL)
    except typha_tls.TLSConfigError as exc:
        raise ConfigError(str(exc)) from exc
    return cfg


__all__ = ["PARAMS", "Config", "ConfigError", "Param", "load"]
