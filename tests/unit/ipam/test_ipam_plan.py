"""plan.assignment, the one allocation decision (pure). Hypothesis: over any state of the blocks,
a plan takes exactly what was asked or raises, never a taken address, never another host's
affine block before its own, claims only blocks that do not exist, borrows only when allowed."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.datastore.etcd import KV
from calico.ipam import keys, plan
from calico.ipam.block import Block
from calico.ipam.errors import IPAMError, PoolExhausted
from calico.ipam.view import View

POOL = ipaddress.IPv4Network("10.9.0.0/28")  # four blocks of four
BLOCKS = list(POOL.subnets(new_prefix=30))


def _kv(key: str, value: str, rev: int = 1) -> KV:
    return KV(key, value.encode(), rev, rev)


def _view(blocks: dict[int, tuple[str | None, int]], *, strict: bool, auto: bool) -> View:
    """Blocks by index -> (affine host or None, how many addresses taken); host "me" plans."""
    view = View("me", [4], keys.handle_key("h"))
    pool = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"cidr": str(POOL), "blockSize": 30}}  # fmt: skip
    view.pools = [_kv("/pool/p", json.dumps(pool))]
    config = plan.IPAMConfig(strict_affinity=strict, auto_allocate_blocks=auto)
    view.config = _kv(keys.CONFIG_KEY, config.to_json())
    view.affinity[4] = []
    for index, (host, used) in blocks.items():
        block = Block.new(BLOCKS[index], host=host)
        block.auto_assign(used, handle_id=f"old{index}")
        view.blocks[keys.block_key(block.cidr)] = _kv(keys.block_key(block.cidr), block.to_json())
        if host == "me":
            view.affinity[4].append(_kv(keys.affinity_key("me", block.cidr), "{}"))
    return view


def _plan(view: View, num: int) -> plan.Plan:
    """Plan, reading what the planner asks for from the view's own blocks (as the driver does)."""
    for _ in range(5):
        try:
            return plan.assignment(view, [(4, num, None)], handle_id="h", host="me", attrs={})
        except plan.Need as need:
            if need.blocks:
                raise AssertionError("the affine blocks are all in the view") from need
            for v in need.index:
                view.index[v] = {k for k, kv in view.blocks.items() if kv is not None}
            for v in need.all_blocks:
                view.all_blocks[v] = [kv for kv in view.blocks.values() if kv is not None]
    raise AssertionError("the planner kept asking for more")


states = st.dictionaries(
    st.integers(0, 3), st.tuples(st.sampled_from(["me", "other", None]), st.integers(0, 4))
)


@settings(max_examples=300, deadline=None)
@given(states, st.integers(1, 6), st.booleans(), st.booleans())
def test_a_plan_is_exact_and_never_double_allocates(
    blocks: dict[int, tuple[str | None, int]], num: int, strict: bool, auto: bool
) -> None:
    view = _view(blocks, strict=strict, auto=auto)
    free_own = sum(4 - used for host, used in blocks.values() if host == "me")
    claimable = (4 - len(blocks)) * 4 if auto else 0
    borrowable = 0 if strict else sum(4 - u for h, u in blocks.values() if h != "me")
    try:
        chosen = _plan(view, num)
    except PoolExhausted:
        assert free_own + claimable + borrowable < num
        return
    assert len(chosen.ips) == len(set(chosen.ips)) == num
    taken_before = set()
    for kv in view.blocks.values():
        taken_before |= {ip for ip, _ in Block.from_json(kv.value).allocated()} if kv else set()
    assert taken_before.isdisjoint(chosen.ips)
    by_block: dict[str, int] = {}
    for ip in chosen.ips:
        cidr = next(b for b in BLOCKS if ipaddress.ip_address(ip) in b)
        by_block[str(cidr)] = by_block.get(str(cidr), 0) + 1
    assert by_block == chosen.counts
    own_used = sum(n for c, n in by_block.items() if _existed(blocks, c) == "me")
    assert own_used == min(num, free_own), "the host's own blocks come first"
    for key, (kv, block) in chosen.writes().items():
        if kv is None:  # a claim: the block did not exist, and is now ours
            assert auto
            assert key not in view.blocks
            assert block.affinity == "host:me"
        elif _existed(blocks, str(block.cidr)) != "me":
            assert not strict, "borrowed despite strictAffinity"
    assert chosen.used_config == (num > free_own)


def _existed(blocks: dict[int, tuple[str | None, int]], cidr: str) -> str | None:
    """The host an existing block was affine to ("-" for a block that did not exist)."""
    index = BLOCKS.index(ipaddress.IPv4Network(cidr))
    return blocks[index][0] if index in blocks else "-"


def test_a_requested_pool_that_does_not_exist_is_an_error() -> None:
    view = _view({}, strict=False, auto=True)
    with pytest.raises(IPAMError, match="does not exist"):
        plan.assignment(view, [(4, 1, ["10.1.0.0/16"])], handle_id="h", host="me", attrs={})


def test_handle_record_merges_and_deletes() -> None:
    first = plan.handle_record(None, "h", {"10.9.0.0/30": 2})
    assert first == '{"handleID": "h", "block": {"10.9.0.0/30": 2}}'
    kv = _kv(keys.handle_key("h"), first)
    assert json.loads(plan.handle_record(kv, "h", {"10.9.0.4/30": 1}) or "")["block"] == {
        "10.9.0.0/30": 2,
        "10.9.0.4/30": 1,
    }
    assert plan.handle_record(kv, "h", {"10.9.0.0/30": -2}) is None
