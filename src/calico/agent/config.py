"""The agent's configuration: ONE typed parameter table, and where values come from.

Sources, highest first (as Calico documents for Felix): environment ``FELIX_<PARAM>`` (upper
case), FelixConfiguration ``node.<nodename>``, FelixConfiguration ``default``, then the table's
default. Environment values that do not parse stop the agent with an error naming the variable;
bad datastore values are logged and skipped (the next source wins).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value that does not parse (names the source, parameter and value)."""


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{v!r} is not a boolean")


def _int_port(v: Any) -> int:
    n = int(v)
    if not 0 <= n <= 65535:
        raise ValueError(f"{v!r} is not a port number")
    return n


def _seconds(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    text = str(v).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or parts is None:
        raise ValueError(f"{v!r} is not a duration (seconds, or like 1m30s)")
    h, m, s = (float(x) if x else 0.0 for x in parts.groups())
    return h * 3600 + m * 60 + s


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError(f"{v!r} is not an integer")
        n = int(str(v).strip()) if not isinstance(v, int) else v
        if not lo <= n <= hi:
            raise ValueError(f"{v!r} is not in {lo}..{hi}")
        return n

    return parse


def _ipv4_or_empty(v: Any) -> str:
    text = str(v).strip()
    return str(ipaddress.IPv4Address(text)) if text else ""


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
    text = str(v)
    if not re.fullmatch(r"[A-Za-z0-9 _.:/-]{0,27}", text):
        raise ValueError(f"{v!r}: up to 27 of letters, digits, space and _.:/-")
    return text


def _ports(v: Any) -> tuple[tuple[str, int], ...]:
    """``"tcp:22,udp:68"`` (env) or ``[{protocol: TCP, port: 22}]`` (FelixConfiguration)."""
    items: list[tuple[str, int]] = []
    if isinstance(v, list):
        for p in v:
            if not isinstance(p, dict):
                raise ValueError(f"{p!r} is not {{protocol, port}}")
            items.append((str(p.get("protocol", "tcp")).lower(), _int_port(p.get("port"))))
    else:
        for part in str(v).split(","):
            part = part.strip()
            if not part or part.lower() == "none":
                continue
            proto, _, port = part.rpartition(":")
            items.append(((proto or "tcp").lower(), _int_port(port)))
    for proto, _ in items:
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"protocol {proto!r} is not tcp, udp or sctp")
    return tuple(items)


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
)
# Our own parameters, not FelixConfiguration fields in Calico: environment only.
ENV_ONLY_PARAMS: tuple[Param, ...] = (
    Param(
        "CalcCheckInterval",
        _seconds,
        600.0,
        "period of the check: incremental output == full recompute (0: off); a mismatch exits",
    ),
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
        if p not in ENV_ONLY_PARAMS:
            layers = [
                ("FelixConfiguration default", (global_config or {}).get(p.field)),
                ("FelixConfiguration node", (node_config or {}).get(p.field)),
            ]
        for source, raw in layers:
            if raw is None:
                continue
            try:
                values[p.name], sources[p.name] = p.parse(raw), source
            except (ValueError, TypeError) as exc:
                logger.error("%s spec.%s: ignoring bad value %r: %s", source, p.field, raw, exc)
        if p.env in env:
            try:
                values[p.name], sources[p.name] = p.parse(env[p.env]), "environment"
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{p.env}={env[p.env]!r}: {exc}") from exc
    if not values["FelixHostname"]:
        values["FelixHostname"] = env.get("NODENAME") or socket.gethostname()
    return Config(values, sources)
