"""Pool: blocks of a pool, block lookup, and which pools a node may use."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from calico.ipam.pools import Pool, PoolError, select_pools


def pool(name: str, cidr: str, **spec: Any) -> Pool:
    return Pool.from_resource({"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}})


def test_blocks_cover_the_pool_once() -> None:
    p = pool("p", "10.0.0.0/24", blockSize=26)
    assert p.num_blocks == 4
    got = list(p.blocks())
    assert sorted(str(b) for b in got) == [
        "10.0.0.0/26",
        "10.0.0.128/26",
        "10.0.0.192/26",
        "10.0.0.64/26",
    ]
    assert [str(b) for b in p.blocks(start=3)] == [
        "10.0.0.192/26",
        "10.0.0.0/26",
        "10.0.0.64/26",
        "10.0.0.128/26",
    ]
    assert str(p.block_of(ipaddress.ip_address("10.0.0.77"))) == "10.0.0.64/26"


def test_defaults_and_small_pools() -> None:
    assert pool("a", "10.0.0.0/16").block_prefixlen == 26
    assert pool("b", "fd00::/64").block_prefixlen == 122
    tiny = pool("c", "10.1.0.0/28")  # smaller than a default block: one block, the pool itself
    assert tiny.num_blocks == 1
    assert str(tiny.block(0)) == "10.1.0.0/28"
    with pytest.raises(PoolError, match=r"spec\.cidr"):
        pool("d", "banana")


def test_select_pools() -> None:
    pools = [
        pool("b", "10.2.0.0/16"),
        pool("a", "10.1.0.0/16"),
        pool("off", "10.3.0.0/16", disabled=True),
        pool("v6", "fd00::/64"),
        pool("sel", "10.4.0.0/16", nodeSelector="all()"),
    ]
    names = [p.name for p in select_pools(pools, version=4, labels_for_node=dict)]
    assert names == ["a", "b", "sel"]  # enabled, IPv4, in address order
    assert [p.name for p in select_pools(pools, version=6, labels_for_node=dict)] == ["v6"]
    picked = select_pools(pools, version=4, labels_for_node=dict, requested=["10.2.0.0/16", "a"])
    assert [p.name for p in picked] == ["b", "a"]
    with pytest.raises(PoolError, match="'off' is disabled"):
        select_pools(pools, version=4, labels_for_node=dict, requested=["off"])
    with pytest.raises(PoolError, match="does not exist"):
        select_pools(pools, version=4, labels_for_node=dict, requested=["fd00::/64"])


def test_node_selector_needs_labels_only_when_used() -> None:
    asked = []

    def labels() -> dict[str, str]:
        asked.append(1)
        return {"zone": "b"}

    pools = [pool("a", "10.1.0.0/16"), pool("z", "10.5.0.0/16", nodeSelector="zone == 'a'")]
    assert [p.name for p in select_pools(pools, version=4, labels_for_node=labels)] == ["a"]
    assert asked == [1]
    assert select_pools(pools[:1], version=4, labels_for_node=labels)
    assert asked == [1]
