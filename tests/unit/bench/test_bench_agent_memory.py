"""The agent memory report's heap walk (bench/agent_memory/wrapper.py)."""

from __future__ import annotations

import sys
from collections import Counter
from types import SimpleNamespace

from bench.agent_memory import wrapper


def test_walk_counts_dict_keys() -> None:
    key = "k" * 1000
    assert wrapper.walk([{key: None}], set()) >= sys.getsizeof(key)


def test_walk_counts_each_reachable_object_once() -> None:
    blob = bytes(10_000)
    shared = [blob, blob]
    root = {"a": shared, "b": shared}
    seen: set[int] = set()
    sizes: Counter[str] = Counter()
    total = wrapper.walk([root], seen, sizes)
    assert total >= sys.getsizeof(blob) + sys.getsizeof(shared) + sys.getsizeof(root)
    assert total < 2 * sys.getsizeof(blob)  # the blob once, though reachable twice
    assert sizes["bytes"] == sys.getsizeof(blob)
    assert wrapper.walk([shared], seen) == 0  # already attributed


def test_walk_stops_at_shared_objects() -> None:
    def fn() -> bytes:
        return bytes(50_000)

    key = "".join(["call", "back"])  # not interned: its own object
    holder = {key: fn}
    walked = wrapper.walk([holder], set(), stop=wrapper.SHARED)
    assert walked == sys.getsizeof(holder) + sys.getsizeof(key)


def test_parts_follow_attribute_paths_and_skip_missing_ones() -> None:
    graph = SimpleNamespace(resources={"k": b"v"}, _items={}, sequencer=[], active_rules=[])
    agent = SimpleNamespace(graph=graph, syncer=[])
    parts = wrapper.agent_parts(agent)
    assert parts["calc: resources (reference copy)"] is graph.resources
    assert parts["calc: other"] is graph
    assert "dataplane" not in parts
    assert "calc: ip sets + selector index" not in parts


def test_report_has_rss_and_heap() -> None:
    out = wrapper.report()
    assert out["rss_mb"] > 1
    assert 1 < out["heap_mb"] < out["rss_mb"] * 2
    assert out["objects"] > 1000
