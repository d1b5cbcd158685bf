"""Address autodetection methods over an ``ip -j addr`` dump, and start-up's environment checks."""

from __future__ import annotations

from typing import Any

import pytest

from calico.node import autodetect, startup

DUMP: list[dict[str, Any]] = [
    {
        "ifname": "lo",
        "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}],
    },
    {
        "ifname": "docker0",
        "addr_info": [
            {"family": "inet", "local": "172.17.0.1", "prefixlen": 16, "scope": "global"}
        ],
    },
    {
        "ifname": "eth0",
        "addr_info": [
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
            {"family": "inet", "local": "10.0.0.5", "prefixlen": 24, "scope": "global"},
            {"family": "inet6", "local": "fd00::5", "prefixlen": 64, "scope": "global"},
        ],
    },
    {
        "ifname": "cali1234",
        "addr_info": [
            {"family": "inet", "local": "169.254.9.9", "prefixlen": 32, "scope": "global"}
        ],
    },
    {
        "ifname": "ens5",
        "addr_info": [
            {"family": "inet", "local": "192.168.50.7", "prefixlen": 20, "scope": "global"}
        ],
    },
]


def lister() -> list[dict[str, Any]]:
    return DUMP


@pytest.mark.parametrize(
    ("method", "want"),
    [
        ("first-found", "10.0.0.5/24"),
        ("", "10.0.0.5/24"),
        ("interface=ens.*", "192.168.50.7/20"),
        ("interface=nope,ens5", "192.168.50.7/20"),
        ("skip-interface=eth.*", "192.168.50.7/20"),
        ("cidr=192.168.0.0/16", "192.168.50.7/20"),
        ("cidr=10.9.0.0/16,10.0.0.0/8", "10.0.0.5/24"),
    ],
)
def test_detect_ipv4(method: str, want: str) -> None:
    assert autodetect.detect(method, 4, lister=lister).cidr == want


def test_detect_ipv6_skips_link_local() -> None:
    assert autodetect.detect("first-found", 6, lister=lister).cidr == "fd00::5/64"


@pytest.mark.parametrize(
    ("method", "match"),
    [
        ("interface=wlan.*", "no IPv4 address found"),
        ("interface=(", "bad interface regex"),
        ("cidr=10.0.0.0/33", "cidr=10.0.0.0/33"),
        ("bogus", "unknown method 'bogus'"),
        ("can-reach=", "can-reach needs a destination"),
    ],
)
def test_detect_errors_name_the_variable(method: str, match: str) -> None:
    with pytest.raises(autodetect.AutodetectError, match="IP_AUTODETECTION_METHOD") as exc:
        autodetect.detect(method, 4, lister=lister)
    assert match in str(exc.value)


def test_explicit_ip_gets_its_interface_prefix() -> None:
    assert autodetect.with_prefix("10.0.0.5", 4, lister) == "10.0.0.5/24"
    assert autodetect.with_prefix("10.1.1.1", 4, lister) == "10.1.1.1/32"
    assert autodetect.with_prefix("10.1.1.1/16", 4, lister) == "10.1.1.1/16"


def test_settings_defaults() -> None:
    s = startup.settings_from_env({"NODENAME": "n1"})
    assert (s.name, s.ip, s.ip6, s.as_number, s.backend) == ("n1", "", "", None, "bird")
    # Calico's documented defaults (calico/node configuration reference)
    assert s.pools.ipv4_cidr == "192.168.0.0/16"
    assert (s.pools.ipv4_ipip, s.pools.ipv4_vxlan) == ("Always", "Never")
    assert s.pools.ipv4_nat_outgoing is True
    assert (s.pools.ipv6_cidr, s.pools.ipv6_nat_outgoing) == ("", False)
    assert not s.no_default_pools


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"IP": "10.0.0.300"}, "IP: '10.0.0.300'"),
        ({"IP": "fd00::1"}, "IP: 'fd00::1' is not an IPv4"),
        ({"IP6": "10.0.0.1"}, "IP6: '10.0.0.1' is not an IPv6"),
        ({"AS": "abc"}, "AS: 'abc'"),
        ({"AS": "0"}, "AS: '0'"),
        ({"CALICO_IPV4POOL_CIDR": "10.0.0.0/40"}, "CALICO_IPV4POOL_CIDR: '10.0.0.0/40'"),
        ({"CALICO_IPV4POOL_CIDR": "10.0.0.0/28"}, "smaller than one IPAM block"),
        ({"CALICO_IPV4POOL_CIDR": "fd00::/64"}, "not an IPv4 CIDR"),
        ({"CALICO_NETWORKING_BACKEND": "gobgp"}, "CALICO_NETWORKING_BACKEND: 'gobgp'"),
        ({"CALICO_IPV4POOL_IPIP": "Sometimes"}, "CALICO_IPV4POOL_IPIP: 'Sometimes'"),
        ({"CALICO_IPV4POOL_VXLAN": "on"}, "CALICO_IPV4POOL_VXLAN: 'on'"),
        ({"CALICO_IPV4POOL_NAT_OUTGOING": "maybe"}, "CALICO_IPV4POOL_NAT_OUTGOING: 'maybe'"),
        ({"CALICO_IPV6POOL_NAT_OUTGOING": "2"}, "CALICO_IPV6POOL_NAT_OUTGOING: '2'"),
        (
            {"CALICO_IPV4POOL_IPIP": "CrossSubnet", "CALICO_IPV4POOL_VXLAN": "Always"},
            "CALICO_IPV4POOL_IPIP='CrossSubnet' and CALICO_IPV4POOL_VXLAN='Always'",
        ),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(startup.StartupError, match=match.replace("(", r"\(")):
        startup.settings_from_env({"NODENAME": "n1", **env})


def test_settings_accept_calico_spellings() -> None:
    s = startup.settings_from_env(
        {
            "NODENAME": "n",
            "IP": "autodetect",
            "AS": "65001",
            "CALICO_IPV4POOL_IPIP": "always",
            "NO_DEFAULT_POOLS": "true",
            "CALICO_NETWORKING_BACKEND": "none",
            "IP6": "none",
        }
    )
    assert (s.ip, s.ip6, s.as_number, s.pools.ipv4_ipip) == (
        "autodetect",
        "none",
        65001,
        "Always",
    )
    assert s.no_default_pools
    assert s.backend == "none"


@pytest.mark.parametrize(
    ("ipip", "vxlan", "want"),
    [
        ("always", "", ("Always", "Never")),
        ("CROSSSUBNET", "", ("CrossSubnet", "Never")),
        ("cross-subnet", "never", ("CrossSubnet", "Never")),  # Calico's older spelling
        ("Off", "", ("Never", "Never")),
        ("", "Always", ("Never", "Always")),  # VXLAN on: IPIP's default steps aside
        ("never", "cross-subnet", ("Never", "CrossSubnet")),
        ("", "off", ("Always", "Never")),
    ],
)
def test_encapsulation_spellings(ipip: str, vxlan: str, want: tuple[str, str]) -> None:
    env = {"NODENAME": "n", "CALICO_IPV4POOL_IPIP": ipip, "CALICO_IPV4POOL_VXLAN": vxlan}
    s = startup.settings_from_env(env)
    assert (s.pools.ipv4_ipip, s.pools.ipv4_vxlan) == want


@pytest.mark.parametrize(("text", "want"), [("TRUE", True), ("0", False), ("no", False)])
def test_nat_outgoing_spellings(text: str, want: bool) -> None:
    s = startup.settings_from_env({"NODENAME": "n", "CALICO_IPV4POOL_NAT_OUTGOING": text})
    assert s.pools.ipv4_nat_outgoing is want


def test_vxlan_backend() -> None:
    assert startup.settings_from_env({"CALICO_NETWORKING_BACKEND": "vxlan"}).backend == "vxlan"
