"""Field checkers shared by the resource validators: names, labels, CIDRs, ports, protocols, ...

Each checker takes the value and its dotted path in the resource (``spec.ingress[0].action``) and
either returns the (possibly normalized) value or raises :class:`FieldError` naming that path and
the offending value. :mod:`calico.model.validation` turns a FieldError into a ValidationError that
also names the resource.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from calico import selector as selector_lang
from calico.model import values

Obj = dict[str, Any]


class FieldError(ValueError):
    """One field of a resource is wrong: ``path`` says which, the message says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# ---- structure -----------------------------------------------------------------------------


def mapping(value: Any, path: str) -> Obj:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(path, f"must be a mapping, got {value!r}")
    return value


def seq(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FieldError(path, f"must be a list, got {value!r}")
    return value


def known_keys(d: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
    """Reject fields Calico does not define (a typo must not be silently ignored)."""
    for key in d:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise FieldError(where, f"unknown field {key!r}")


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, got {value!r}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(path, f"must be true or false, got {value!r}")
    return value


def integer(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FieldError(path, f"invalid value {value!r} (want an integer {lo}-{hi})")
    return value


def number(value: Any, path: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(path, f"must be a number, got {value!r}")
    return value


def one_of(value: Any, path: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise FieldError(path, f"invalid value {value!r} (want one of {', '.join(choices)})")
    return str(value)


def string_list(value: Any, path: str, check: Callable[[Any, str], Any] = string) -> list[Any]:
    return [check(v, f"{path}[{i}]") for i, v in enumerate(seq(value, path))]


# ---- names and labels ----------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_IFACE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")  # as Calico; safe in nft text
_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


# Names and labels repeat across resources (namespaces, nodes, profiles, label keys): the pure
# string checks are cached, so checking every endpoint the agent reads stays cheap.


@functools.lru_cache(maxsize=8192)
def _subdomain_ok(value: str) -> bool:
    return len(value) <= 253 and all(_DNS_LABEL.fullmatch(part) for part in value.split("."))


@functools.lru_cache(maxsize=8192)
def label_key_problem(key: str) -> str | None:
    """None for a good qualified label key (Kubernetes' syntax: optional ``prefix/``, a DNS
    subdomain, then a name of 1-63 ``[A-Za-z0-9-_.]`` starting and ending with an alphanumeric),
    else what is wrong: "prefix" or "name"."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and _subdomain_ok(prefix)):
        return "prefix"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return "name"
    return None


@functools.lru_cache(maxsize=8192)
def label_value_ok(value: str) -> bool:
    """Kubernetes' label value syntax: empty, or a name of at most 63 characters."""
    return not value or (len(value) <= 63 and _LABEL_NAME.fullmatch(value) is not None)


def dns_subdomain(value: Any, path: str) -> str:
    """Kubernetes/Calico resource name: lower-case alphanumerics, '-' and '.', at most 253."""
    if not isinstance(value, str) or not value:
        raise FieldError(path, f"name is required, got {value!r}")
    if not _subdomain_ok(value):
        raise FieldError(
            path,
            f"invalid name {value!r} (lower-case alphanumerics, '-' and '.', "
            "starting and ending with an alphanumeric)",
        )
    return value


@functools.lru_cache(maxsize=4096)
def dns_label_ok(value: str) -> bool:
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def dns_label(value: Any, path: str) -> str:
    if not isinstance(value, str) or not dns_label_ok(value):
        raise FieldError(path, f"invalid namespace {value!r} (a DNS-1123 label)")
    return value


def label_key(key: Any, path: str) -> str:
    """A qualified label key: optional ``prefix/`` (a DNS subdomain) and a name of at most 63."""
    problem = label_key_problem(key) if isinstance(key, str) else "name"
    if problem is None:
        return str(key)
    raise FieldError(path, f"invalid label key {key!r}" + (" (bad prefix)" * (problem == "prefix")))


def labels(value: Any, path: str) -> dict[str, str]:
    d = mapping(value, path)
    for k, v in d.items():
        if not isinstance(k, str) or label_key_problem(k) is not None:
            label_key(k, f"{path}[{k}]")
        if not isinstance(v, str) or not label_value_ok(v):
            raise FieldError(f"{path}[{k}]", f"invalid label value {v!r}")
    return d


def interface_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _IFACE.fullmatch(value):
        raise FieldError(path, f"invalid interface name {value!r}")
    return value


def mac(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise FieldError(path, f"invalid MAC address {value!r}")
    return value


# ---- addresses -----------------------------------------------------------------------------


def ip(value: Any, path: str, version: int | None = None) -> str:
    try:
        addr = ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        raise FieldError(path, f"invalid IP address {value!r}") from None
    if version and addr.version != version:
        raise FieldError(path, f"invalid IPv{version} address {value!r}")
    return str(addr)


_OCTET = r"(0|[1-9][0-9]{0,2})"
_V4_CIDR = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}/(0|[1-9][0-9]?)")


def _normal_v4_cidr(text: str) -> bool:
    """Whether ``text`` is already a normalized IPv4 CIDR (the stored form of nearly every
    endpoint address): checked without ``ipaddress``, about four times faster."""
    m = _V4_CIDR.fullmatch(text)
    if m is None:
        return False
    a, b, c, d, plen = map(int, m.groups())
    if a > 255 or b > 255 or c > 255 or d > 255 or plen > 32:
        return False
    host_bits = ((a << 24) | (b << 16) | (c << 8) | d) & ((1 << (32 - plen)) - 1)
    return host_bits == 0


def cidr(value: Any, path: str, version: int | None = None) -> str:
    """A network in CIDR form (a bare address means /32 or /128); returned normalized."""
    if version != 6 and isinstance(value, str) and _normal_v4_cidr(value):
        return value
    try:
        net = ipaddress.ip_network(value if isinstance(value, str) else "", strict=False)
    except ValueError:
        raise FieldError(path, f"invalid CIDR {value!r}") from None
    if version and net.version != version:
        raise FieldError(path, f"invalid IPv{version} CIDR {value!r}")
    return str(net)


def interface_address(value: Any, path: str, version: int | None = None) -> str:
    """An address with an optional prefix length (``10.0.0.1/24``); kept as written."""
    try:
        iface = ipaddress.ip_interface(value if isinstance(value, str) else "")
    except ValueError:
        raise FieldError(path, f"invalid IP address or CIDR {value!r}") from None
    if version and iface.version != version:
        raise FieldError(path, f"invalid IPv{version} address {value!r}")
    return str(value)


def as_number(value: Any, path: str) -> int:
    """A 4-byte AS number, as an integer or in dotted ``high.low`` form; returned as int."""
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
        high, _, low = value.partition(".")
        if low:
            if int(high) < 65536 and int(low) < 65536:
                return (int(high) << 16) + int(low)
        elif int(high) <= 0xFFFFFFFF:
            return int(high)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
        return value
    raise FieldError(path, f"invalid AS number {value!r}")


# ---- ports and protocols -------------------------------------------------------------------

PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
_PROTO_BY_LOWER = {p.lower(): p for p in PROTOCOLS}
PORT_PROTOCOLS = {"TCP", "UDP", "SCTP", 6, 17, 132}
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def protocol(value: Any, path: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if isinstance(value, str):
        if value.lower() in _PROTO_BY_LOWER:
            return _PROTO_BY_LOWER[value.lower()]
        if _digits(value) and int(value) <= 255:
            return int(value)
    raise FieldError(
        path, f"invalid protocol {value!r} (want {', '.join(PROTOCOLS)} or a number 0-255)"
    )


def port_match(value: Any, path: str) -> values.Port:
    """A port number, a ``"min:max"`` range, or a named port, as a typed :class:`~values.Port`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            return values.Port(value, value)
    elif isinstance(value, str):
        if value.isdigit() and value.isascii():
            if 1 <= int(value) <= 65535:
                return values.Port(int(value), int(value))
            raise FieldError(path, f"invalid port {value!r}")
        lo, sep, hi = value.partition(":")
        if sep:
            if _digits(lo) and _digits(hi) and 1 <= int(lo) <= int(hi) <= 65535:
                return values.Port(int(lo), int(hi))
        elif len(value) <= 15 and _PORT_NAME.fullmatch(value):
            return values.Port(name=value)
    raise FieldError(path, f"invalid port {value!r}")


def port(value: Any, path: str) -> int | str:
    """:func:`port_match` in its JSON form (a number, ``"min:max"`` or a name)."""
    return port_match(value, path).to_json()


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+|0")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: Any, path: str) -> float:
    """A Go duration such as ``90s``, ``1m30s``, ``500ms`` (Felix's intervals), in seconds."""
    if isinstance(value, str) and _DURATION.fullmatch(value):
        return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    raise FieldError(path, f"invalid duration {value!r} (e.g. '90s', '1m30s')")


def duration(value: Any, path: str) -> str:
    """:func:`seconds`, keeping the text (what FelixConfiguration stores)."""
    seconds(value, path)
    return str(value)


def proto_port(value: Any, path: str) -> Obj:
    """``{protocol, port}`` as in FelixConfiguration's failsafe ports."""
    d = mapping(value, path)
    known_keys(d, ("protocol", "port", "net"), path)
    out: Obj = dict(d)
    out["protocol"] = one_of(d.get("protocol", "TCP"), f"{path}.protocol", ("TCP", "UDP", "SCTP"))
    out["port"] = integer(d.get("port"), f"{path}.port", 0, 65535)
    if "net" in d:
        out["net"] = cidr(d["net"], f"{path}.net")
    return out


# ---- selectors -----------------------------------------------------------------------------


def selector(value: Any, path: str) -> str:
    """A Calico selector expression, checked with the selector grammar (calico.selector)."""
    if not isinstance(value, str):
        raise FieldError(path, f"selector must be a string, got {value!r}")
    if value.strip():
        try:
            selector_lang.parse(value)
        except ValueError as exc:
            raise FieldError(path, f"invalid selector: {exc}") from None
    return value


def names(text: str) -> tuple[str, ...]:
    """Field-name tables written as one space-separated string."""
    return tuple(text.split())
