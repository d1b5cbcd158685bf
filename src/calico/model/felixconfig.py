"""Validation of FelixConfiguration specs: one table, field name (as Calico spells it) -> checker.

Felix reads ``default`` and ``node.<nodename>`` FelixConfigurations; absent fields mean Felix's own
default, so nothing is filled in here. Unknown fields are rejected, so a misspelt setting fails
loudly instead of being ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from calico.model import fields
from calico.model.fields import Obj

LOG_LEVELS = ("Debug", "Info", "Warning", "Error", "Fatal", "None")
ENDPOINT_TO_HOST_ACTIONS = ("Drop", "Accept", "Return")
ALLOW_ACTIONS = ("Accept", "Return")

Checker = Callable[[Any, str], Any]


def _choice(*choices: str) -> Checker:
    return lambda v, p: fields.one_of(v, p, choices)


def _int(lo: int, hi: int) -> Checker:
    return lambda v, p: fields.integer(v, p, lo, hi)


def _port(v: Any, p: str) -> int:
    return fields.integer(v, p, 0, 65535)


def _proto_ports(v: Any, p: str) -> list[Obj]:
    return [fields.proto_port(item, f"{p}[{i}]") for i, item in enumerate(fields.seq(v, p))]


def _cidrs(v: Any, p: str) -> list[str]:
    return fields.string_list(v, p, fields.cidr)


def _strings(v: Any, p: str) -> list[str]:
    return fields.string_list(v, p)


def _ipv4(v: Any, p: str) -> str:
    return fields.ip(v, p, 4)


def _mark(v: Any, p: str) -> int:
    return fields.integer(v, p, 0, 0xFFFFFFFF)


def _port_ranges(v: Any, p: str) -> list[Any]:
    return [fields.port(item, f"{p}[{i}]") for i, item in enumerate(fields.seq(v, p))]


def _route_table_range(v: Any, p: str) -> Obj:
    d = fields.mapping(v, p)
    fields.known_keys(d, ("min", "max"), p)
    lo = fields.integer(d.get("min"), f"{p}.min", 1, 250)
    fields.integer(d.get("max"), f"{p}.max", lo, 250)
    return d


_LOG_PREFIX = re.compile(r"[A-Za-z0-9 _.:/-]{0,27}")


def log_prefix(v: Any, p: str) -> str:
    """The prefix of Log rules' lines: it is written into nft rule text, so it is restricted."""
    if not isinstance(v, str) or not _LOG_PREFIX.fullmatch(v):
        raise fields.FieldError(
            p, f"invalid log prefix {v!r} (up to 27 of letters, digits, space and _.:/-)"
        )
    return v


_B = fields.boolean
_S = fields.string
_D = fields.duration

FIELDS: dict[str, Checker] = {
    "useInternalDataplaneDriver": _B,
    "dataplaneDriver": _S,
    "ipv6Support": _B,
    "ignoreLooseRPF": _B,
    "routeRefreshInterval": _D,
    "iptablesRefreshInterval": _D,
    "iptablesPostWriteCheckInterval": _D,
    "iptablesLockFilePath": _S,
    "iptablesLockTimeout": _D,
    "iptablesLockProbeInterval": _D,
    "ipsetsRefreshInterval": _D,
    "maxIpsetSize": _int(1, 1 << 30),
    "netlinkTimeout": _D,
    "metadataAddr": _S,
    "metadataPort": _port,
    "interfacePrefix": _S,
    "interfaceExclude": _S,
    "chainInsertMode": _choice("Insert", "Append"),
    "defaultEndpointToHostAction": _choice(*ENDPOINT_TO_HOST_ACTIONS),
    "iptablesFilterAllowAction": _choice(*ALLOW_ACTIONS),
    "iptablesMangleAllowAction": _choice(*ALLOW_ACTIONS),
    "logPrefix": log_prefix,
    "logFilePath": _S,
    "logSeverityFile": _choice(*LOG_LEVELS),
    "logSeverityScreen": _choice(*LOG_LEVELS),
    "logSeveritySys": _choice(*LOG_LEVELS),
    "ipipEnabled": _B,
    "ipipMTU": _int(0, 65535),
    "vxlanEnabled": _B,
    "vxlanMTU": _int(0, 65535),
    "vxlanPort": _int(1, 65535),
    "vxlanVNI": _int(1, (1 << 24) - 1),
    "reportingInterval": _D,
    "reportingTTL": _D,
    "endpointReportingEnabled": _B,
    "endpointReportingDelay": _D,
    "iptablesMarkMask": _mark,
    "disableConntrackInvalidCheck": _B,
    "healthEnabled": _B,
    "healthHost": _S,
    "healthPort": _port,
    "prometheusMetricsEnabled": _B,
    "prometheusMetricsHost": _S,
    "prometheusMetricsPort": _port,
    "prometheusGoMetricsEnabled": _B,
    "prometheusProcessMetricsEnabled": _B,
    "failsafeInboundHostPorts": _proto_ports,
    "failsafeOutboundHostPorts": _proto_ports,
    "kubeNodePortRanges": _port_ranges,
    "policySyncPathPrefix": _S,
    "usageReportingEnabled": _B,
    "usageReportingInitialDelay": _D,
    "usageReportingInterval": _D,
    "natPortRange": fields.port,
    "natOutgoingAddress": _ipv4,
    "deviceRouteSourceAddress": fields.ip,
    "externalNodesCIDRList": _cidrs,
    "debugMemoryProfilePath": _S,
    "debugDisableLogDropping": _B,
    "debugSimulateCalcGraphHangAfter": _D,
    "debugSimulateDataplaneHangAfter": _D,
    "iptablesNATOutgoingInterfaceFilter": _S,
    "sidecarAccelerationEnabled": _B,
    "xdpEnabled": _B,
    "xdpRefreshInterval": _D,
    "genericXDPEnabled": _B,
    "routeTableRange": _route_table_range,
    "routeSource": _choice("CalicoIPAM", "WorkloadIPs"),
    "ipv4ElevatedMaxTTL": _int(0, 255),
    "interfaceRefreshInterval": _D,
    "nftablesMode": _choice("Enabled", "Disabled", "Auto"),
    "nftablesRefreshInterval": _D,
    "allowIPIPPacketsFromWorkloads": _B,
    "allowVXLANPacketsFromWorkloads": _B,
    "serviceLoopPrevention": _choice("Drop", "Reject", "Disabled"),
    "featureDetectOverride": _S,
    "wireguardEnabled": _B,
    "bpfEnabled": _B,
    "excludedInterfaces": _strings,
    # Flow logs (Calico's names; docs/design/agent.md "Flow logs" says where we differ).
    "flowLogsFileEnabled": _B,
    "flowLogsFileEnabledForAllowed": _B,
    "flowLogsFileEnabledForDenied": _B,
    "flowLogsFlushInterval": _D,
    "flowLogsFileDirectory": _S,
    "flowLogsFileMaxFiles": _int(1, 1000),
    "flowLogsFileMaxFileSizeMB": _int(1, 1 << 20),
    "flowLogsEnableHostEndpoint": _B,
}


def felix_configuration(spec: Obj, path: str) -> Obj:
    fields.known_keys(spec, FIELDS, path)
    out: Obj = dict(spec)
    for key, value in spec.items():
        if value is not None:
            out[key] = FIELDS[key](value, f"{path}.{key}")
    return out
