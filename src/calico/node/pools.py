"""The default IP pools calico-node creates at start-up, from Calico's environment variables.

Only when no pool of that family exists yet and ``NO_DEFAULT_POOLS`` is not set:

* IPv4 ``default-ipv4-ippool``: ``CALICO_IPV4POOL_CIDR`` (default 192.168.0.0/16),
  ``CALICO_IPV4POOL_IPIP`` (default ``Always``), ``CALICO_IPV4POOL_VXLAN`` (default ``Never``),
  ``CALICO_IPV4POOL_NAT_OUTGOING`` (default true), blockSize 26;
* IPv6 ``default-ipv6-ippool`` only when ``CALICO_IPV6POOL_CIDR`` is set:
  ``CALICO_IPV6POOL_NAT_OUTGOING`` (default false), blockSize 122, never IPIP.

The defaults are Calico's documented ones (the calico/node configuration reference). Modes are
read case-insensitively; Calico's older spellings ``cross-subnet`` and ``off`` are accepted. A pool
cannot use IPIP and VXLAN at once: when ``CALICO_IPV4POOL_VXLAN`` turns VXLAN on and
``CALICO_IPV4POOL_IPIP`` is not given, IPIP's default becomes ``Never``; both given and on is an
error naming both variables. Every value is checked before anything is written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico.datastore.client import AlreadyExists, Client

DEFAULT_IPV4_POOL = "192.168.0.0/16"
IPV4_POOL_NAME = "default-ipv4-ippool"
IPV6_POOL_NAME = "default-ipv6-ippool"

_MODES = {
    "always": "Always",
    "crosssubnet": "CrossSubnet",
    "cross-subnet": "CrossSubnet",
    "never": "Never",
    "off": "Never",
}
_BOOLS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "t": True,
    "y": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
    "f": False,
    "n": False,
}


class PoolSettingError(ValueError):
    """A default-pool variable has a bad value (the message names the variable and the value)."""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    ipv4_cidr: str = DEFAULT_IPV4_POOL
    ipv4_ipip: str = "Always"
    ipv4_vxlan: str = "Never"
    ipv4_nat_outgoing: bool = True
    ipv6_cidr: str = ""  # no IPv6 default pool unless set
    ipv6_nat_outgoing: bool = False


def _cidr(var: str, value: str, version: int) -> str:
    try:
        net = ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise PoolSettingError(f"{var}: {value!r} is not a valid CIDR ({exc})") from None
    if net.version != version:
        raise PoolSettingError(f"{var}: {value!r} is not an IPv{version} CIDR")
    if net.prefixlen > (26 if version == 4 else 122):
        raise PoolSettingError(f"{var}: {value!r} is smaller than one IPAM block")
    return str(net)


def _mode(var: str, value: str) -> str:
    mode = _MODES.get(value.strip().lower())
    if mode is None:
        raise PoolSettingError(f"{var}: {value!r} is not Always, CrossSubnet or Never")
    return mode


def _bool(var: str, value: str) -> bool:
    flag = _BOOLS.get(value.strip().lower())
    if flag is None:
        raise PoolSettingError(f"{var}: {value!r} is not true or false")
    return flag


def settings_from_env(env: Mapping[str, str]) -> PoolSettings:
    """Parse and check every default-pool variable (an empty value counts as unset)."""

    def given(var: str) -> str:
        return (env.get(var) or "").strip()

    vxlan = _mode("CALICO_IPV4POOL_VXLAN", given("CALICO_IPV4POOL_VXLAN") or "Never")
    ipip_text = given("CALICO_IPV4POOL_IPIP")
    if ipip_text:
        ipip = _mode("CALICO_IPV4POOL_IPIP", ipip_text)
    else:
        ipip = "Always" if vxlan == "Never" else "Never"
    if ipip != "Never" and vxlan != "Never":
        raise PoolSettingError(
            f"CALICO_IPV4POOL_IPIP={ipip_text!r} and CALICO_IPV4POOL_VXLAN="
            f"{given('CALICO_IPV4POOL_VXLAN')!r}: a pool cannot use both IPIP and VXLAN "
            "(set one of them to Never)"
        )
    v6 = given("CALICO_IPV6POOL_CIDR")
    return PoolSettings(
        ipv4_cidr=_cidr(
            "CALICO_IPV4POOL_CIDR", given("CALICO_IPV4POOL_CIDR") or DEFAULT_IPV4_POOL, 4
        ),
        ipv4_ipip=ipip,
        ipv4_vxlan=vxlan,
        ipv4_nat_outgoing=_bool(
            "CALICO_IPV4POOL_NAT_OUTGOING", given("CALICO_IPV4POOL_NAT_OUTGOING") or "true"
        ),
        ipv6_cidr=_cidr("CALICO_IPV6POOL_CIDR", v6, 6) if v6 else "",
        ipv6_nat_outgoing=_bool(
            "CALICO_IPV6POOL_NAT_OUTGOING", given("CALICO_IPV6POOL_NAT_OUTGOING") or "false"
        ),
    )


def pool_resource(
    name: str, cidr: str, *, ipip: str = "Never", vxlan: str = "Never", nat_outgoing: bool = True
) -> dict[str, Any]:
    version = ipaddress.ip_network(cidr).version
    spec: dict[str, Any] = {
        "cidr": cidr,
        "ipipMode": ipip,
        "vxlanMode": vxlan,
        "natOutgoing": nat_outgoing,
        "blockSize": 26 if version == 4 else 122,
    }
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def wanted(s: PoolSettings) -> list[tuple[int, dict[str, Any]]]:
    """(family, pool) for each default pool these settings describe."""
    out = [
        (
            4,
            pool_resource(
                IPV4_POOL_NAME,
                s.ipv4_cidr,
                ipip=s.ipv4_ipip,
                vxlan=s.ipv4_vxlan,
                nat_outgoing=s.ipv4_nat_outgoing,
            ),
        )
    ]
    if s.ipv6_cidr:
        out.append(
            (6, pool_resource(IPV6_POOL_NAME, s.ipv6_cidr, nat_outgoing=s.ipv6_nat_outgoing))
        )
    return out


def ensure_default_pools(client: Client, s: PoolSettings) -> list[str]:
    """Create the default pools whose family has no pool yet; returns the names created."""
    versions = {
        ipaddress.ip_network(str((p.get("spec") or {}).get("cidr"))).version
        for p in client.list("IPPool")
        if (p.get("spec") or {}).get("cidr")
    }
    made = []
    for version, pool in wanted(s):
        if version in versions:
            continue
        try:
            client.create(pool)
            made.append(pool["metadata"]["name"])
        except AlreadyExists:
            pass
    return made
