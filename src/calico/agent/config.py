"""The agent's configuration: ONE typed parameter table, and where values come from.

Sources, highest first (as Calico documents for Felix): environment ``FELIX_<PARAM>`` (upper
case), FelixConfiguration ``node.<nodename>``, FelixConfiguration ``default``, then the table's
default. Environment values that do not parse stop the agent with an error naming the variable;
bad datastore values are logged and skipped (the next source wins).

One parser: a FelixConfiguration value is checked by the model's checker for that field
(``calico.model.felixconfig.FIELDS``, what calicoctl runs on write) before the parameter's own
parse, so the agent uses exactly the values the CLI accepts; a parameter that is not a
FelixConfiguration field is read from the environment only.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from calico.model import felixconfig, fields

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value that does not parse (names the source, parameter and value)."""


# Values are parsed by the model's field parsers (calico.model.fields / felixconfig), the same
# ones that check FelixConfiguration on write; the helpers below only add the environment's
# spelling (strings such as "true", "90", "tcp:22,udp:68") in front of them.
_ENV_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_ENV_BOOLS |= {"false": False, "0": False, "no": False, "off": False}
_WHERE = "value"  # the path in FieldErrors; load() reports the variable or field instead


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        v = _ENV_BOOLS.get(v.strip().lower(), v)
    return fields.boolean(v, _WHERE)


def _env_int(v: Any) -> Any:
    if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():
        return int(v)
    return v


def _int_port(v: Any) -> int:
    return fields.integer(_env_int(v), _WHERE, 0, 65535)


def _seconds(v: Any) -> float:
    """Seconds: a number (the environment's usual form) or a Go duration such as ``1m30s``."""
    secs: float | None = None
    if isinstance(v, int | float) and not isinstance(v, bool):
        secs = float(v)
    elif isinstance(v, str):
        try:
            secs = float(v.strip())
        except ValueError:
            v = v.strip()
    if secs is None:
        return fields.seconds(v, _WHERE)
    if not secs >= 0:
        raise ValueError(f"{v!r} is not a duration (a negative or NaN number of seconds)")
    return secs


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        return fields.integer(_env_int(v), _WHERE, lo, hi)

    return parse


def _ipv4_or_empty(v: Any) -> str:
    """An IPv4 address, or empty (unset) from the environment."""
    if isinstance(v, str) and not v.strip():
        return ""
    return fields.ip(v.strip() if isinstance(v, str) else v, _WHERE, 4)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        text = str(v).strip().upper()
        if text not in allowed:
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def _log_level(v: Any) -> str:
    text = str(v).strip().upper()
    text = {"WARN": "WARNING", "FATAL": "CRITICAL", "PANIC": "CRITICAL"}.get(text, text)
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NONE"):
        raise ValueError(f"{v!r} is not a log level")
    return text


def _log_prefix(v: Any) -> str:
    return felixconfig.log_prefix(v, _WHERE)


def _ports(v: Any) -> tuple[tuple[str, int], ...]:
    """``"tcp:22,udp:68"`` (env) or ``[{protocol: TCP, port: 22}]`` (FelixConfiguration)."""
    items: list[Any] = v if isinstance(v, list) else []
    if isinstance(v, str):
        for part in v.split(","):
            part = part.strip()
            if part and part.lower() != "none":
                proto, _, port = part.rpartition(":")
                items.append({"protocol": (proto or "tcp").upper(), "port": _env_int(port)})
    elif not isinstance(v, list):
        raise ValueError(f"{v!r} is not a list of {{protocol, port}} or 'tcp:22,udp:68'")
    checked = [fields.proto_port(item, f"{_WHERE}[{i}]") for i, item in enumerate(items)]
    return tuple((p["protocol"].lower(), p["port"]) for p in checked)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    live: bool = True  # False: takes effect at the next start
    field_name: str = ""  # the FelixConfiguration field, when not the name in lowerCamelCase

    @property
    def env(self) -> str:
        return "FELIX_" + self.name.upper()

    @property
    def field(self) -> str:
        return self.field_name or self.name[0].lower() + self.name[1:]


PARAMS: tuple[Param, ...] = (
    Param("FelixHostname", str, "", "node name (else NODENAME, else the hostname)", live=False),
    Param("LogSeverityScreen", _log_level, "INFO", "log level on stderr"),
    Param(
        "DefaultEndpointToHostAction",
        _choice("DROP", "RETURN", "ACCEPT"),
        "DROP",
        "workload -> its own host, after the workload's egress policy",
    ),
    Param(
        "FailsafeInboundHostPorts",
        _ports,
        _ports("tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:6666,tcp:6667"),
        "always-allowed inbound ports on host endpoints",
    ),
    Param(
        "FailsafeOutboundHostPorts",
        _ports,
        _ports("udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:6666,tcp:6667"),
        "always-allowed outbound ports on host endpoints",
    ),
    Param("NftablesRefreshInterval", _seconds, 90.0, "period of the table drift check"),
    Param("RouteRefreshInterval", _seconds, 90.0, "period of the route mark-and-sweep"),
    Param("LogPrefix", _log_prefix, "calico-packet", "prefix of Log rule lines"),
    Param("HealthEnabled", _bool, True, "serve /liveness and /readiness", live=False),
    Param("HealthHost", str, "localhost", "health address (as Felix)", live=False),
    Param("HealthPort", _int_port, 9099, "health port", live=False),
    Param("PrometheusMetricsEnabled", _bool, False, "serve Prometheus metrics", live=False),
    Param("PrometheusMetricsHost", str, "0.0.0.0", "metrics address", live=False),
    Param("PrometheusMetricsPort", _int_port, 9091, "metrics port", live=False),
    # Encapsulation and NAT (issue #11): which modes are on comes from the IPPools.
    Param(
        "VXLANMTU",
        _int_range(0, 65535),
        0,
        "MTU of vxlan.calico (0: the parent interface's MTU - 50)",
        field_name="vxlanMTU",
    ),
    Param(
        "IpInIpMtu",
        _int_range(0, 65535),
        0,
        "MTU of tunl0 (0: the parent interface's MTU - 20)",
        field_name="ipipMTU",
    ),
    Param(
        "VXLANVNI", _int_range(1, (1 << 24) - 1), 4096, "VNI of vxlan.calico", field_name="vxlanVNI"
    ),
    Param(
        "VXLANPort", _int_range(1, 65535), 4789, "UDP port of vxlan.calico", field_name="vxlanPort"
    ),
    Param(
        "NATOutgoingAddress",
        _ipv4_or_empty,
        "",
        "natOutgoing SNATs to this address (empty: masquerade to the outgoing interface's)",
        field_name="natOutgoingAddress",
    ),
    # Flow logs (issue #12): Calico's field names; defaults differ where agent.md says why.
    Param("FlowLogsFileEnabled", _bool, True, "log flows (NFLOG) and write them to files"),
    Param("FlowLogsFileEnabledForDenied", _bool, True, "log denied flows"),
    Param("FlowLogsFileEnabledForAllowed", _bool, False, "log allowed flows (first packet)"),
    Param("FlowLogsFlushInterval", _seconds, 15.0, "aggregation interval of flow records"),
    Param(
        "FlowLogsFileDirectory",
        str,
        "",
        "directory of flows.log (empty: $CALICO_LOG_DIR/flowlogs, else /var/log/calico/flowlogs)",
        live=False,
    ),
    Param("FlowLogsFileMaxFiles", _int_range(1, 1000), 5, "flows.log files kept when rotating"),
    Param(
        "FlowLogsFileMaxFileSizeMB",
        _int_range(1, 1 << 20),
        100,
        "size at which flows.log is rotated",
        field_name="flowLogsFileMaxFileSizeMB",
    ),
    Param("FlowLogsEnableHostEndpoint", _bool, False, "also write flows of host endpoints"),
)


def _typha_addrs(v: Any) -> tuple[str, ...]:
    from calico.datastore.typha_client import parse_addresses  # lazy: msgspec is Typha's only

    return tuple(parse_addresses(str(v)))


def _positive_seconds(v: Any) -> float:
    secs = _seconds(v)
    if not secs > 0:
        raise ValueError(f"{v!r} is not a positive duration")
    return secs


# Environment only: our own parameters (not FelixConfiguration fields in Calico), and Calico's
# local ones, read before the datastore is (how to reach Typha; Calico: config file or env).
ENV_ONLY_PARAMS: tuple[Param, ...] = (
    Param(
        "CalcCheckInterval",
        _seconds,
        600.0,
        "period of the check: incremental output == full recompute (0: off); a mismatch exits",
    ),
    Param(
        "FlowLogsRateLimit",
        _int_range(1, 1_000_000),
        1000,
        "flow log messages the kernel sends per second, all verdict points together (burst: same)",
        live=False,
    ),
    Param("FlowLogsNflogGroup", _int_range(1, 65535), 1, "NFLOG group of flow logs", live=False),
    Param(
        "FlowLogsMaxFlows",
        _int_range(1, 10_000_000),
        20_000,
        "distinct flows kept per interval (more are counted, not recorded)",
    ),
    Param(
        "ControlPort",
        _int_port,
        0,
        "TCP port of the control listener for other nodes' calicoctl (0: off; the Unix socket "
        "$CALICO_RUN_DIR/felix-control.sock is always on)",
        live=False,
    ),
    Param("ControlHost", str, "0.0.0.0", "address of the control listener", live=False),
    Param(
        "TyphaAddr",
        _typha_addrs,
        (),
        "Typha's host:port; ours: a comma-separated list, tried in turn",
        live=False,
    ),
    Param("TyphaK8sServiceName", str, "", "find Typha from this Service's endpoints", live=False),
    Param("TyphaK8sNamespace", str, "kube-system", "that Service's namespace", live=False),
    Param("TyphaCAFile", str, "", "CA of Typha's certificate (TLS)", live=False),
    Param("TyphaCertFile", str, "", "our certificate for Typha (TLS)", live=False),
    Param("TyphaKeyFile", str, "", "its key (TLS)", live=False),
    Param("TyphaCN", str, "", "Typha's certificate must have this Common Name, or", live=False),
    Param("TyphaURISAN", str, "", "this URI SAN", live=False),
    Param(
        "TyphaReadTimeout",
        _positive_seconds,
        30.0,
        "nothing from Typha this long: reconnect",
        live=False,
    ),
    Param("TyphaWriteTimeout", _positive_seconds, 10.0, "a write to Typha's deadline", live=False),
)
BY_NAME = {p.name: p for p in PARAMS + ENV_ONLY_PARAMS}


class Config:
    """Effective values; ``values[name]`` plus the source each came from."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self.values = values
        self.sources = sources

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.values == other.values

    def __repr__(self) -> str:
        return f"Config({self.values!r})"

    __hash__ = None  # type: ignore[assignment]


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, fields.FieldError) else str(exc)


def _from_datastore(p: Param, raw: Any) -> Any:
    """The model's check of the FelixConfiguration field (as on write), then the parameter's."""
    return p.parse(felixconfig.FIELDS[p.field](raw, f"spec.{p.field}"))


def load(
    env: Mapping[str, str] | None = None,
    *,
    global_config: Mapping[str, Any] | None = None,
    node_config: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the sources; ConfigError for a bad environment value."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for p in PARAMS + ENV_ONLY_PARAMS:
        values[p.name], sources[p.name] = p.default, "default"
        layers: list[tuple[str, Any]] = []
        if p not in ENV_ONLY_PARAMS and p.field in felixconfig.FIELDS:
            layers = [
                ("FelixConfiguration default", (global_config or {}).get(p.field)),
                ("FelixConfiguration node", (node_config or {}).get(p.field)),
            ]
        for source, raw in layers:
            if raw is None:
                continue
            try:
                values[p.name], sources[p.name] = _from_datastore(p, raw), source
            except (ValueError, TypeError) as exc:
                logger.error(
                    "%s spec.%s: ignoring bad value %r: %s", source, p.field, raw, _reason(exc)
                )
        if p.env in env:
            try:
                values[p.name], sources[p.name] = p.parse(env[p.env]), "environment"
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{p.env}={env[p.env]!r}: {_reason(exc)}") from exc
    if not values["FelixHostname"]:
        values["FelixHostname"] = env.get("NODENAME") or socket.gethostname()
    return Config(values, sources)
