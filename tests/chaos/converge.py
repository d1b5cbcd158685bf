"""Has every node programmed exactly what the datastore says? The chaos tests' convergence oracle.

For one node, the *expected* dataplane is computed from a snapshot of etcd (every key the agent
watches, read at one revision) by the product's own reference path: a fresh calculation graph
(``CalcGraph`` — full recompute is the reference semantics, STYLE §6.1.6) → the dataplane managers'
conversion (``InternalDataplane.on_update`` + ``complete_deferred_work``, no I/O: the drivers get
runners that refuse to run anything). The *programmed* dataplane is read from the node's kernel:
``nft -j list table inet calico`` (chains with their rules' content-hash comments, set elements,
verdict map entries) and ``ip -j route show proto 80`` on the agent's devices. Converged means
equal; the differences are listed in words.

This is stronger than comparing counts: a rule whose content changed has another hash, a set
missing one member differs, a stale endpoint map entry or route is named.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.agent import config as agent_config
from calico.agent.main import dataplane_config
from calico.calc import graph as calc_graph
from calico.dataplane import links, loop, neighbors, nft_table, route_table
from calico.datastore.etcd import EtcdClient
from calico.datastore.syncer import Update
from calico.dpapi import messages as m


@dataclass
class Programmed:
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain -> rule comments
    sets: dict[str, frozenset[str]] = field(default_factory=dict)  # set -> normalised elements
    maps: dict[str, dict[str, str]] = field(default_factory=dict)  # map -> key -> verdict
    routes: set[tuple[str, str, str]] = field(default_factory=set)  # (dev, dst, gateway or "")


class _Refuse:
    """A runner for the drivers that must never run: the expected state is computed, not
    applied (this runs in the test's own, root, namespace)."""

    def run(self, *args: object, **kwargs: object) -> Any:
        raise AssertionError(f"the convergence oracle tried to run {args!r}")

    def __call__(self, *args: object, **kwargs: object) -> Any:
        return self.run(*args, **kwargs)


def snapshot(etcd: EtcdClient) -> tuple[list[Update], int]:
    """Every key the agent watches, at one revision (the first read's)."""
    updates: list[Update] = []
    revision = 0
    for prefix in calc_graph.watched_prefixes():
        kvs, rev = etcd.get_prefix(prefix, revision=revision)
        revision = revision or rev
        for kv in kvs:
            try:
                value = json.loads(kv.value)
            except ValueError:
                value = None
            updates.append(Update(kv.key, value, kv.mod_revision))
    return updates, revision


def expected(updates: Sequence[Update], hostname: str, env: Mapping[str, str]) -> Programmed:
    """What ``hostname``'s agent must have programmed for this datastore snapshot."""
    env = {**env, "FELIX_FELIXHOSTNAME": hostname}
    cfg = agent_config.load(env)
    graph = calc_graph.CalcGraph(hostname, quiet=True)
    refuse: Any = _Refuse()
    dp = loop.InternalDataplane(
        nft_table.NftTable(refuse),
        route_table.RouteTable(runner=refuse),
        dataplane_config(cfg),
        hostname=hostname,
        links_=links.Links(runner=refuse),
        neighbors_=neighbors.Neighbors(runner=refuse),
    )
    graph.on_updates(list(updates))
    graph.on_in_sync()
    for msg in graph.flush():
        if isinstance(msg, m.ConfigUpdate):
            cfg = agent_config.load(
                env, global_config=dict(msg.global_config), node_config=dict(msg.node_config)
            )
            dp.set_config(dataplane_config(cfg))
        dp.on_update(msg)
    dp.complete_deferred_work()
    table = dp.table
    return Programmed(
        chains={
            n: [nft_table._comment_of(r) for r in rules] for n, rules in table.chains().items()
        },
        sets={n: _norm_elements(spec.elements) for n, spec in table._sets.items()},
        maps={n: dict(items) for n, items in table._maps.items()},
        routes={
            (dev, dst, gw or "")
            for dev, routes in dp.routes._desired.items()
            for dst, gw in routes.items()
        },
    )


def _norm_elements(elements: frozenset[str] | Sequence[str]) -> frozenset[str]:
    """Set elements in one canonical form: address sets collapsed to networks (the kernel may
    merge adjacent intervals), concatenations as ``a . b . c``."""
    nets = []
    other = set()
    for e in elements:
        try:
            nets.append(ipaddress.ip_network(e, strict=False))
        except ValueError:
            other.add(" . ".join(part.strip() for part in e.split(" . ")))
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    collapsed = {str(n) for n in ipaddress.collapse_addresses(v4)}
    collapsed |= {str(n) for n in ipaddress.collapse_addresses(v6)}
    return frozenset(collapsed | other)


def _kernel_element(e: Any) -> list[str]:
    if isinstance(e, str | int):
        return [str(e)]
    if "prefix" in e:
        return [f"{e['prefix']['addr']}/{e['prefix']['len']}"]
    if "range" in e:
        lo, hi = (ipaddress.ip_address(x) for x in e["range"])
        return [str(n) for n in ipaddress.summarize_address_range(lo, hi)]
    if "concat" in e:
        return [" . ".join(str(x) for x in e["concat"])]
    if "elem" in e:
        return _kernel_element(e["elem"]["val"])
    return [json.dumps(e, sort_keys=True)]


def _verdict(v: Any) -> str:
    if isinstance(v, dict):
        ((kind, arg),) = v.items()
        return f"{kind} {arg['target']}" if isinstance(arg, dict) else kind
    return str(v)


def _netns_run(netns: str, argv: list[str]) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def kernel(netns: str) -> Programmed:
    """What the node's kernel has: ``table inet calico`` and the agent's ``proto 80`` routes."""
    out = Programmed()
    raw = _netns_run(netns, ["nft", "-j", "list", "table", "inet", "calico"])
    for obj in json.loads(raw).get("nftables", []):
        if "chain" in obj:
            out.chains.setdefault(obj["chain"]["name"], [])
        elif "rule" in obj:
            out.chains.setdefault(obj["rule"]["chain"], []).append(obj["rule"].get("comment", ""))
        elif "set" in obj:
            elems = [x for e in obj["set"].get("elem", []) for x in _kernel_element(e)]
            out.sets[obj["set"]["name"]] = _norm_elements(elems)
        elif "map" in obj:
            out.maps[obj["map"]["name"]] = {
                str(k): _verdict(v) for k, v in obj["map"].get("elem", [])
            }
    for fam in ("-4", "-6"):
        for r in json.loads(_netns_run(netns, ["ip", "-j", fam, "route", "show", "proto", "80"])):
            dev = r.get("dev", "")
            if route_table.owned(dev):
                dst = r["dst"]
                if dst != "default" and "/" not in dst:
                    dst = str(ipaddress.ip_network(dst))
                out.routes.add((dev, dst, r.get("gateway", "")))
    return out


def differences(want: Programmed, got: Programmed) -> list[str]:
    """``want`` vs ``got`` in words (empty: equal)."""
    diffs: list[str] = []
    for name in sorted(want.chains.keys() | got.chains.keys()):
        w, g = want.chains.get(name), got.chains.get(name)
        if w is None:
            diffs.append(f"chain {name}: programmed, not expected")
        elif g is None:
            diffs.append(f"chain {name}: expected, not programmed")
        elif w != g:
            diffs.append(f"chain {name}: rules differ ({len(w)} expected, {len(g)} programmed)")
    for name in sorted(want.sets.keys() | got.sets.keys()):
        w_set, g_set = want.sets.get(name), got.sets.get(name)
        if w_set != g_set:
            missing = sorted((w_set or frozenset()) - (g_set or frozenset()))
            extra = sorted((g_set or frozenset()) - (w_set or frozenset()))
            diffs.append(f"set {name}: missing {missing[:5]}, extra {extra[:5]}")
    for name in sorted(want.maps.keys() | got.maps.keys()):
        w_map, g_map = want.maps.get(name, {}), got.maps.get(name, {})
        if w_map != g_map:
            keys = sorted(k for k in w_map.keys() | g_map.keys() if w_map.get(k) != g_map.get(k))
            diffs.append(f"map {name}: entries differ for {keys[:5]}")
    missing_routes = want.routes - got.routes
    extra_routes = got.routes - want.routes
    if missing_routes:
        diffs.append(f"routes expected, not programmed: {sorted(missing_routes)[:5]}")
    if extra_routes:
        diffs.append(f"routes programmed, not expected: {sorted(extra_routes)[:5]}")
    return diffs


def wait_converged(
    etcd_call: Callable[[Callable[[EtcdClient], Any]], Any],
    nodes: Mapping[str, tuple[str, Mapping[str, str]]],
    *,
    within: float,
    interval: float = 0.5,
) -> float:
    """Wait until every node's kernel equals the expectation from the datastore's current state;
    return the seconds it took. ``nodes``: name -> (netns, agent env). ``etcd_call(fn)`` runs
    ``fn(etcd_client)`` where the lab's etcd is reachable. Fails listing every difference."""
    start = time.monotonic()
    while True:
        updates, _ = etcd_call(snapshot)
        diffs: list[str] = []
        for name, (netns, env) in nodes.items():
            want = expected(updates, name, env)
            got = kernel(netns)
            diffs += [f"{name}: {d}" for d in differences(want, got)]
        if not diffs:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(
                f"not converged after {within:.0f}s:\n  " + "\n  ".join(diffs[:40])
            )
        time.sleep(interval)
