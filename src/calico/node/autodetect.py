"""Host address autodetection, with Calico's methods (``IP_AUTODETECTION_METHOD``).

* ``first-found`` (default): the first global address on the first interface not excluded by
  Calico's default list (docker, cbr, dummy, virbr, lxcbr, veth, lo, cali, tunl, flannel, kube-ipvs,
  cni).
* ``interface=REGEX[,REGEX]``: the first address on the first interface whose name matches.
* ``skip-interface=REGEX[,REGEX]``: like first-found, also skipping these interfaces.
* ``can-reach=DEST``: the source address the kernel would use to reach DEST (an IP or a name).
* ``cidr=CIDR[,CIDR]``: the first address inside one of the CIDRs.

Addresses come from ``ip -j addr show`` and ``ip -j route get`` in the current network namespace.
Results carry the prefix length of the interface's subnet (``10.0.0.1/24``), as Calico stores them.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from calico.lib import cmd

DEFAULT_EXCLUDES = (
    "docker.*",
    "cbr.*",
    "dummy.*",
    "virbr.*",
    "lxcbr.*",
    "veth.*",
    "lo",
    "cali.*",
    "tunl.*",
    "flannel.*",
    "kube-ipvs.*",
    "cni.*",
)


class AutodetectError(ValueError):
    """No address found, or a method string that does not parse (message names the variable)."""


@dataclass(frozen=True, slots=True)
class Addr:
    ifname: str
    cidr: str  # "10.0.0.1/24"

    @property
    def ip(self) -> str:
        return self.cidr.split("/")[0]


Lister = Callable[[], list[dict[str, object]]]


def ip_addr_json() -> list[dict[str, object]]:
    out = cmd.run(["ip", "-j", "addr", "show"]).stdout
    data = json.loads(out or "[]")
    return data if isinstance(data, list) else []


def addresses(version: int, lister: Lister = ip_addr_json) -> list[Addr]:
    """Global-scope addresses of one family, in interface order."""
    family = "inet" if version == 4 else "inet6"
    out: list[Addr] = []
    for link in lister():
        name = str(link.get("ifname", ""))
        infos = link.get("addr_info") or []
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, dict) or info.get("family") != family:
                continue
            if info.get("scope", "global") != "global":
                continue
            ip = ipaddress.ip_address(str(info["local"]))
            if ip.is_loopback or ip.is_link_local:
                continue
            out.append(Addr(name, f"{ip}/{info.get('prefixlen', 32 if version == 4 else 128)}"))
    return out


def _regexes(text: str, var: str) -> list[re.Pattern[str]]:
    try:
        return [re.compile(r) for r in text.split(",") if r.strip()]
    except re.error as exc:
        raise AutodetectError(f"{var}: bad interface regex {text!r}: {exc}") from exc


def _full(pats: list[re.Pattern[str]], name: str) -> bool:
    return any(p.fullmatch(name) for p in pats)


def _can_reach(dest: str, version: int, addrs: list[Addr], var: str) -> Addr:
    try:
        infos = socket.getaddrinfo(dest, None, socket.AF_INET if version == 4 else socket.AF_INET6)
        dest_ip = str(infos[0][4][0])
    except (OSError, IndexError) as exc:
        raise AutodetectError(f"{var}: can-reach={dest}: cannot resolve: {exc}") from exc
    proc = cmd.run(["ip", "-j", f"-{version}", "route", "get", dest_ip], check=False)
    routes = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    src = routes[0].get("prefsrc") if routes else None
    if not src:
        raise AutodetectError(f"{var}: can-reach={dest}: no route to {dest_ip}")
    for a in addrs:
        if a.ip == src:
            return a
    return Addr(str(routes[0].get("dev", "")), f"{src}/{32 if version == 4 else 128}")


def detect(
    method: str,
    version: int = 4,
    *,
    lister: Lister = ip_addr_json,
    var: str = "IP_AUTODETECTION_METHOD",
) -> Addr:
    """The address chosen by ``method``; AutodetectError when none qualifies."""
    method = (method or "first-found").strip()
    addrs = addresses(version, lister)
    kind, _, arg = method.partition("=")
    excludes = _regexes(",".join(DEFAULT_EXCLUDES), var)
    if kind == "first-found":
        found = [a for a in addrs if not _full(excludes, a.ifname)]
    elif kind == "interface":
        pats = _regexes(arg, var)
        found = [a for a in addrs if _full(pats, a.ifname)]
    elif kind == "skip-interface":
        pats = _regexes(arg, var) + excludes
        found = [a for a in addrs if not _full(pats, a.ifname)]
    elif kind == "can-reach":
        if not arg:
            raise AutodetectError(f"{var}: can-reach needs a destination, got {method!r}")
        return _can_reach(arg, version, addrs, var)
    elif kind == "cidr":
        try:
            nets = [ipaddress.ip_network(c.strip(), strict=False) for c in arg.split(",") if c]
        except ValueError as exc:
            raise AutodetectError(f"{var}: {method!r}: {exc}") from exc
        if not nets:
            raise AutodetectError(f"{var}: cidr needs at least one CIDR, got {method!r}")
        found = [a for a in addrs if any(ipaddress.ip_address(a.ip) in n for n in nets)]
    else:
        raise AutodetectError(
            f"{var}: unknown method {method!r} (first-found, interface=REGEX, "
            "skip-interface=REGEX, can-reach=DEST, cidr=CIDR)"
        )
    if not found:
        raise AutodetectError(f"{var}={method}: no IPv{version} address found")
    return found[0]


def with_prefix(ip: str, version: int, lister: Lister = ip_addr_json) -> str:
    """An explicit ``IP`` gets the prefix length of the interface that holds it (else /32, /128)."""
    if "/" in ip:
        return str(ipaddress.ip_interface(ip))
    for a in addresses(version, lister):
        if a.ip == str(ipaddress.ip_address(ip)):
            return a.cidr
    return f"{ipaddress.ip_address(ip)}/{32 if version == 4 else 128}"
