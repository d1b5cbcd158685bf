"""Block: the pure allocator. Hypothesis: no double allocation; release restores the free count."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.ipam.block import Block, BlockError
from calico.ipam.keys import affinity_key, block_key, cidr_from_key, parse_affinity_key


def _check_invariants(b: Block) -> None:
    free = set(b.unallocated)
    assert len(free) == len(b.unallocated), "an ordinal is free twice"
    for o, idx in enumerate(b.allocations):
        if idx is None:
            assert o in free
        else:
            assert o not in free
            assert 0 <= idx < len(b.attributes)
    used = {idx for idx in b.allocations if idx is not None}
    assert used == set(range(len(b.attributes))), "an attribute record nothing points at"


def test_new_block_json_shape() -> None:
    b = Block.new("10.0.0.64/26", host="node1")
    b.auto_assign(2, handle_id="net.c1", attrs={"node": "node1", "pod": "p"})
    import json

    d = json.loads(b.to_json())
    assert d["cidr"] == "10.0.0.64/26"
    assert d["affinity"] == "host:node1"
    assert d["strictAffinity"] is False
    assert d["allocations"][:3] == [0, 0, None]
    assert len(d["allocations"]) == 64
    assert d["unallocated"][0] == 2
    assert d["attributes"] == [{"handle_id": "net.c1", "secondary": {"node": "node1", "pod": "p"}}]
    again = Block.from_json(b.to_json())
    assert again.to_json() == b.to_json()


def test_assign_specific_and_errors() -> None:
    b = Block.new("fd00::/122", host=None)
    b.assign("fd00::5", handle_id="h")
    with pytest.raises(BlockError, match="already allocated"):
        b.assign("fd00::5", handle_id="h2")
    with pytest.raises(BlockError, match="not in block"):
        b.assign("fd00::1:0", handle_id="h2")
    assert b.ips_by_handle("h") == ["fd00::5"]
    assert b.release(["fd00::5", "fd00::6"]) == (["fd00::6"], {"h": 1})
    assert b.free_count == 64


def test_fills_up() -> None:
    b = Block.new("10.1.0.0/30", host="n")
    assert b.auto_assign(3, handle_id="a") == ["10.1.0.0", "10.1.0.1", "10.1.0.2"]
    assert b.auto_assign(3, handle_id="b") == ["10.1.0.3"]
    assert b.auto_assign(1, handle_id="c") == []
    assert b.release_by_handle("a") == 3
    assert b.attributes == [{"handle_id": "b", "secondary": None}]
    _check_invariants(b)


def test_keys_round_trip() -> None:
    net = ipaddress.ip_network("192.168.12.64/26")
    assert block_key(net) == "/calico/ipam/v2/assignment/ipv4/block/192.168.12.64-26"
    assert affinity_key("node1", net) == "/calico/ipam/v2/host/node1/ipv4/block/192.168.12.64-26"
    assert cidr_from_key(block_key(net)) == net
    v6 = ipaddress.ip_network("fd80:24e2::/122")
    assert block_key(v6) == "/calico/ipam/v2/assignment/ipv6/block/fd80:24e2::-122"
    assert parse_affinity_key(affinity_key("n-2", v6)) == ("n-2", v6)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("auto"), st.integers(0, 20), st.sampled_from(["h1", "h2", "h3"])),
        st.tuples(st.just("rel_handle"), st.just(0), st.sampled_from(["h1", "h2", "h3"])),
        st.tuples(st.just("rel_ip"), st.integers(0, 63), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_no_double_allocation_and_release_restores(seq: list[tuple[str, int, str]]) -> None:
    b = Block.new("10.2.0.0/26", host="n")
    holders: dict[str, str] = {}  # ip -> handle, the model
    for op, n, handle in seq:
        if op == "auto":
            got = b.auto_assign(n, handle_id=handle, attrs={"pod": handle})
            assert len(got) == min(n, 64 - len(holders))
            for ip in got:
                assert ip not in holders, f"{ip} handed out twice"
                holders[ip] = handle
        elif op == "rel_handle":
            freed = b.release_by_handle(handle)
            mine = [ip for ip, h in holders.items() if h == handle]
            assert freed == len(mine)
            for ip in mine:
                del holders[ip]
        else:
            ip = str(ipaddress.ip_address("10.2.0.0") + n)
            missing, per_handle = b.release([ip])
            assert (missing == []) == (ip in holders)
            if ip in holders:
                assert per_handle == {holders.pop(ip): 1}
        _check_invariants(b)
        assert b.free_count == 64 - len(holders)
        assert b.in_use == len(holders)
        b = Block.from_json(b.to_json())  # what goes through etcd comes back the same
    for handle in ("h1", "h2", "h3"):
        b.release_by_handle(handle)
    assert b.free_count == 64
    assert b.attributes == []
