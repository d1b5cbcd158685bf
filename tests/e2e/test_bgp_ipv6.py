"""Dual stack: two hosts with IPv4 and IPv6 addresses (IP6=autodetect) and IPv6 blocks. Both
families get mesh sessions, IPv6 block routes, and TCP over IPv6 between pods on different hosts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer

from .bgp_fabric import (
    BGP_E2E_MARKS,
    Fabric,
    echoes,
    route_to,
    running_fabric,
    sessions_with,
    wait_for,
)

pytestmark = BGP_E2E_MARKS


@pytest.fixture
def fabric(
    make_netns: Callable[[], str], tmp_path: Path, etcd_server: EtcdServer, etcd: EtcdClient
) -> Iterator[Fabric]:
    with running_fabric(make_netns, tmp_path, etcd_server.port, etcd, 2, ipv6=True) as fab:
        yield fab


def test_bgp_dual_stack(fabric: Fabric, make_netns: Callable[[], str], datastore: Client) -> None:
    fab = fabric
    h1, h2 = fab.hosts
    for h in fab.hosts:
        fab.start(
            h,
            IP6="autodetect",
            IP6_AUTODETECTION_METHOD="interface=eth0",
            CALICO_IPV6POOL_CIDR="fd80:24e2::/48",
        )
        fab.add_pod(make_netns, h, h.block.replace(".0/26", ".2"), h.block6.replace("/122", "2"))
    try:
        wait_for("Node resources", lambda: len(datastore.list("Node")) == 2, 30)
        assert datastore.get("Node", "host1")["spec"]["bgp"]["ipv6Address"] == "fd99::1/64"
        pools = sorted(p["spec"]["cidr"] for p in datastore.list("IPPool"))
        assert pools == ["192.168.0.0/16", "fd80:24e2::/48"]

        for h, o in ((h1, h2), (h2, h1)):
            wait_for(
                f"{h.name} v4+v6 sessions",
                sessions_with(h, [o.ip, o.ip6]),
                60,
            )
        status = h1.node_status()
        v6 = status[status.index("IPv6 BGP status") :]
        assert "| fd99::2      | node-to-node mesh | up    |" in v6

        for h, o in ((h1, h2), (h2, h1)):
            r6 = wait_for(f"{h.name} v6 route", route_to(h, o.block6, 6), 30)
            assert r6["gateway"] == o.ip6
            assert r6["protocol"] == "bird"
            assert h.routes(6)[h.block6]["type"] == "blackhole"
            assert o.block in h.routes(4)

        for src, dst in ((h1, h2), (h2, h1)):
            pod, ip6 = src.pods6[0][0], dst.pods6[0][1]
            wait_for(f"{src.name} pod -> [{ip6}]", echoes(pod, ip6), 30)
            wait_for(
                f"{src.name} pod -> {dst.pods[0][1]}",
                echoes(pod, dst.pods[0][1]),
                15,
            )

        fab.stop(h2)
        wait_for("host1 withdrew host2's v6 block", lambda: h2.block6 not in h1.routes(6), 30)
    except AssertionError as exc:
        dump = "\n".join(f"== {h.name}\n{h.node_status()}\n{h.log_tail()}" for h in fab.hosts)
        raise AssertionError(f"{exc}\n{dump}") from None
