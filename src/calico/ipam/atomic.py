"""One-transaction IPAM for a CNI call: assign or release a handle's addresses, together with
the caller's own keys (the WorkloadEndpoint), in a single etcd write.

The plain :class:`~calico.ipam.client.IPAMClient` path costs one etcd round trip per record read
or written (handle, pools, affinities, block, handle, block, then the caller's endpoint). Here::

    assign:  [read handle, IPPools, Node, host affinities ─► read the affine blocks]
             ─► txn( handle absent ∧ used blocks, pools, Node at the revisions read
                     ⇒ put blocks, put handle, put the caller's keys
                     else ⇒ read all of the above again )
    release: read the handle's blocks
             ─► txn( handle, blocks and the caller's guards at the revisions read
                     ⇒ put blocks, delete handle, delete the caller's keys )

A long-lived caller (the CNI server) passes a :class:`Cache`: what the last transaction read or
wrote for a host stands in for the bracketed reads, so an ADD in steady state is one round trip.
Nothing stale can be written: every record the decision rests on is compared by revision in the
same transaction, and a failed compare returns the fresh records, which are then used (and
cached). Anything uncommon (the handle already holds addresses, the affine blocks are full, a
block claim or a borrow is needed) goes to the ordinary ``IPAMClient`` code, after which the
caller's keys are written on their own. The records are exactly the ordinary path's (same keys,
same JSON).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable, Mapping

from calico.datastore.client import decode
from calico.datastore.etcd import KV, cmp_absent, cmp_mod, op_delete, op_get, op_put
from calico.ipam import keys
from calico.ipam.block import Block, IPNetwork, affinity_for
from calico.ipam.client import IPAMClient
from calico.ipam.errors import IPAMError, PoolExhausted
from calico.ipam.pools import Pool, PoolError, select_pools
from calico.model import kinds

Extra = Callable[[list[str]], Mapping[str, str]]
FAST_TRIES = 5  # conflicts before the ordinary (record by record) path takes over


class _View:
    """What an assignment decides on, each record with the revision it was read at."""

    __slots__ = ("affinity", "blocks", "node", "pools")

    def __init__(self, pools: list[KV], node: list[KV], affinity: dict[int, list[KV]]) -> None:
        self.pools = pools
        self.node = node
        self.affinity = affinity
        self.blocks: dict[str, KV] = {}  # block key -> KV


class Cache:
    """Per-host views kept between calls by a long-lived caller (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, _View] = {}

    def get(self, host: str) -> _View | None:
        """A private copy of the host's view (calls run concurrently)."""
        with self._lock:
            view = self._views.get(host)
            if view is None:
                return None
            out = _View(view.pools, view.node, view.affinity)
            out.blocks = dict(view.blocks)
            return out

    def put(self, host: str, view: _View) -> None:
        with self._lock:
            self._views[host] = view

    def drop(self, host: str) -> None:
        with self._lock:
            self._views.pop(host, None)

    def block_keys(self, host: str) -> list[str]:
        with self._lock:
            view = self._views.get(host)
            return list(view.blocks) if view else []

    def update_blocks(self, host: str, kvs: list[KV]) -> None:
        with self._lock:
            view = self._views.get(host)
            if view is not None:
                for kv in kvs:
                    if kv.key in view.blocks:
                        view.blocks[kv.key] = kv


def _view_ops(host: str, versions: list[int], node_key: str) -> list[dict[str, object]]:
    ops = [op_get(kinds.lookup("IPPool").prefix(), prefix=True), op_get(node_key)]
    return ops + [op_get(keys.host_affinity_prefix(host, v), prefix=True) for v in versions]


def assign(
    ipam: IPAMClient,
    *,
    handle_id: str,
    host: str,
    num_v4: int = 1,
    num_v6: int = 0,
    pools: list[str] | None = None,
    pools_v6: list[str] | None = None,
    attrs: Mapping[str, str] | None = None,
    extra: Extra | None = None,
    cache: Cache | None = None,
) -> tuple[list[str], bool]:
    """(addresses, reused): like ``IPAMClient.auto_assign``, but a handle that already holds
    addresses keeps them (reused=True) and ``extra(addresses)`` -> {key: value} is written in the
    same transaction as the allocation when possible (always before this returns)."""
    etcd = ipam.etcd
    wanted = [(v, n, req) for v, n, req in ((4, num_v4, pools), (6, num_v6, pools_v6)) if n > 0]
    versions = [v for v, _, _ in wanted]
    hkey = keys.handle_key(handle_id)
    node_key = kinds.lookup("Node").key(host)
    view = cache.get(host) if cache is not None else None
    if view is not None and any(v not in view.affinity for v in versions):
        view = None
    fresh = False  # a view just read (not remembered from an earlier call)
    for _ in range(FAST_TRIES):
        if view is None:
            ops = [op_get(hkey), *_view_ops(host, versions, node_key)]
            handle_kvs, *rest = etcd.txn([], ops).responses
            view, fresh = _View(rest[0], rest[1], dict(zip(versions, rest[2:], strict=True))), True
            if handle_kvs:
                break
        try:
            chosen = _candidates(view, wanted, host)
        except IPAMError:
            if fresh:
                raise
            view = None  # a remembered view may lack a new pool or a Node label change
            continue
        missing = [keys.block_key(c) for _, _, cs in chosen for c in cs]
        missing = [k for k in missing if k not in view.blocks]
        if missing:
            read = etcd.txn([], [op_get(k) for k in missing]).responses
            view.blocks.update({r[0].key: r[0] for r in read if r})
        plan = _plan(view, chosen, handle_id, host, dict(attrs or {}))
        if plan is None:
            if fresh:
                break  # the host's blocks are full: claims and borrows are the slow path
            view = None  # a remembered view may lack a block claimed since
            continue
        ips, used = plan
        record = {"handleID": handle_id, "block": {str(c): n for c, (_, n, _) in used.items()}}
        compare = [cmp_absent(hkey)]
        compare += [cmp_mod(kv.key, kv.mod_revision) for kv, _, _ in used.values()]
        compare += [cmp_mod(kv.key, kv.mod_revision) for kv in view.pools]
        compare.append(cmp_mod(node_key, view.node[0].mod_revision) if view.node else
                       cmp_absent(node_key))  # fmt: skip
        written = {kv.key: (kv, b.to_json()) for kv, _, b in used.values()}
        success = [op_put(k, value) for k, (_, value) in written.items()]
        success.append(op_put(hkey, json.dumps(record)))
        success += [op_put(k, v) for k, v in (extra(ips) if extra else {}).items()]
        block_keys = list(view.blocks)
        failure = [op_get(hkey), *_view_ops(host, versions, node_key)]
        failure += [op_get(k) for k in block_keys]
        r = etcd.txn(compare, success, failure)
        if r.succeeded:
            for k, (kv, value) in written.items():
                view.blocks[k] = KV(k, value.encode(), r.revision, kv.create_revision)
            if cache is not None:
                cache.put(host, view)
            return ips, False
        handle_kvs, pool_kvs, node_kvs, *rest = r.responses
        view = _View(pool_kvs, node_kvs, dict(zip(versions, rest[: len(versions)], strict=True)))
        view.blocks = {b[0].key: b[0] for b in rest[len(versions) :] if b}
        fresh = True
        if handle_kvs:
            break
    if cache is not None:
        cache.drop(host)  # the ordinary path may claim blocks: read afresh next time
    return _ordinary(ipam, handle_id, host, num_v4, num_v6, pools, pools_v6, attrs, extra)


def _ordinary(
    ipam: IPAMClient,
    handle_id: str,
    host: str,
    num_v4: int,
    num_v6: int,
    pools: list[str] | None,
    pools_v6: list[str] | None,
    attrs: Mapping[str, str] | None,
    extra: Extra | None,
) -> tuple[list[str], bool]:
    ips = ipam.ips_by_handle(handle_id)
    reused = bool(ips)
    if not reused:
        ips = ipam.auto_assign(
            handle_id=handle_id, host=host, num_v4=num_v4, num_v6=num_v6,
            pools=pools, pools_v6=pools_v6, attrs=attrs,
        )  # fmt: skip
    try:
        puts = extra(ips) if extra else {}
        if puts:
            ipam.etcd.txn([], [op_put(k, v) for k, v in puts.items()])
    except Exception:
        if not reused:
            ipam.release_by_handle(handle_id)
        raise
    return ips, reused


def _candidates(
    view: _View, wanted: list[tuple[int, int, list[str] | None]], host: str
) -> list[tuple[int, int, list[IPNetwork]]]:
    """Per family: (version, count, the host's affine blocks inside its usable pools, sorted)."""
    all_pools = [Pool.from_resource(decode(kv.value, kv.mod_revision)) for kv in view.pools]
    labels = _labels(view.node)
    chosen = []
    for version, num, req in wanted:
        try:
            usable = select_pools(
                all_pools, version=version, labels_for_node=labels.copy, requested=req
            )
        except PoolError as exc:
            raise IPAMError(str(exc)) from exc
        if not usable:
            raise PoolExhausted(f"no enabled IPv{version} pool is usable by node {host!r}")
        cidrs = [keys.cidr_from_key(kv.key) for kv in view.affinity[version]]
        cidrs = [c for c in cidrs if any(_within(c, p) for p in usable)]
        chosen.append((version, num, sorted(cidrs, key=lambda c: int(c.network_address))))
    return chosen


def _within(cidr: IPNetwork, pool: Pool) -> bool:
    return cidr.version == pool.version and cidr.subnet_of(pool.cidr)  # type: ignore[arg-type]


def _labels(node_kvs: list[KV]) -> dict[str, str]:
    if not node_kvs:
        return {}
    meta = json.loads(node_kvs[0].value).get("metadata") or {}
    return dict(meta.get("labels") or {})


_Plan = tuple[list[str], dict[IPNetwork, tuple[KV, int, Block]]]


def _plan(
    view: _View,
    chosen: list[tuple[int, int, list[IPNetwork]]],
    handle_id: str,
    host: str,
    attrs: dict[str, str],
) -> _Plan | None:
    """Take the addresses from the host's affine blocks as the view has them, or None."""
    ips: list[str] = []
    used: dict[IPNetwork, tuple[KV, int, Block]] = {}
    for _, num, cidrs in chosen:
        got = 0
        for c in cidrs:
            kv = view.blocks.get(keys.block_key(c))
            if kv is None:
                continue
            block = Block.from_json(kv.value)
            if block.affinity != affinity_for(host):
                continue
            taken = block.auto_assign(num - got, handle_id=handle_id, attrs=attrs)
            if taken:
                ips += taken
                got += len(taken)
                used[c] = (kv, len(taken), block)
            if got == num:
                break
        if got < num:
            return None
    return ips, used


def release(
    ipam: IPAMClient,
    handle: KV | None,
    *,
    guards: Mapping[str, int] | None = None,
    blocks: Mapping[str, KV] | None = None,
    cache: Cache | None = None,
    host: str = "",
) -> list[str]:
    """Release every address of the handle read as ``handle`` and delete the ``guards`` keys
    ({key: mod revision}: each deleted only if still at that revision) in one transaction.

    ``blocks``: block records already read (by key), so they need no second read. Returns the
    addresses released. When the handle or a guard changed meanwhile, the handle is released the
    ordinary way and the guards that still match are deleted one by one.
    """
    etcd = ipam.etcd
    guards = dict(guards or {})
    if handle is None:
        for k, rev in guards.items():
            etcd.delete(k, mod_revision=rev)
        return []
    record = json.loads(handle.value)
    handle_id = record.get("handleID") or handle.key.rsplit("/", 1)[-1]
    bkeys = [keys.block_key(ipaddress.ip_network(c)) for c in record.get("block") or {}]
    have = dict(blocks or {})
    unread = [k for k in bkeys if k not in have]
    if unread:
        have.update({r[0].key: r[0] for r in etcd.txn([], [op_get(k) for k in unread]).responses
                     if r})  # fmt: skip
    compare = [cmp_mod(handle.key, handle.mod_revision)]
    compare += [cmp_mod(k, rev) for k, rev in guards.items()]
    success = [op_delete(handle.key)] + [op_delete(k) for k in guards]
    released: list[str] = []
    written: list[tuple[str, str, int]] = []
    for k in bkeys:
        kv = have.get(k)
        if kv is None:
            continue
        block = Block.from_json(kv.value)
        ips = block.ips_by_handle(handle_id)
        if ips:
            block.release(ips)
            released += ips
            compare.append(cmp_mod(k, kv.mod_revision))
            value = block.to_json()
            success.append(op_put(k, value))
            written.append((k, value, kv.create_revision))
    r = etcd.txn(compare, success)
    if r.succeeded:
        if cache is not None and host:
            cache.update_blocks(host, [KV(k, v.encode(), r.revision, c) for k, v, c in written])
        return released
    released = ipam.release_by_handle(handle_id)
    for k, rev in guards.items():
        etcd.delete(k, mod_revision=rev)
    return released
