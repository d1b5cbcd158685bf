"""Helpers for calc tests: resource dicts -> datastore keys, running a graph, full recompute."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from calico.calc.graph import CalcGraph
from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState
from calico.ipam import keys as ipam_keys
from calico.model import kinds

KV = tuple[str, dict[str, Any] | None]


def key_of(obj: dict[str, Any]) -> str:
    if obj["kind"] == "IPAMBlock":  # not a v3 resource: Calico's IPAM block key (tests' marker)
        cidr: str = obj["cidr"]
        return ipam_keys.block_prefix(6 if ":" in cidr else 4) + cidr.replace("/", "-")
    kind = kinds.KINDS[obj["kind"]]
    meta = obj["metadata"]
    return kind.key(meta["name"], meta.get("namespace"))


def kvs(objs: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(key_of(o), o) for o in objs]


def feed(graph: CalcGraph, items: Iterable[KV]) -> list[m.Message]:
    for key, value in items:
        graph.on_update(key, value)
    return graph.flush()


def full_state(snapshot: dict[str, dict[str, Any]], hostname: str = "node1") -> DataplaneState:
    """The reference: a fresh graph fed the final snapshot in one go."""
    graph = CalcGraph(hostname)
    graph.on_in_sync()
    return DataplaneState().apply_all(feed(graph, snapshot.items()))
