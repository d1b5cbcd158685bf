"""Calico IPAM's writes: each one transaction that compares every record it rests on.

This is the one allocation path: the CNI plugin, ``calico-ipam``, ``calicoctl ipam`` and
:class:`~calico.ipam.client.IPAMClient` all assign and release here::

    assign:  view: [handle, IPPools, Node, IPAM config, host affinities] (one read; none with a
             Cache) ─► plan.assignment (reads the affine blocks / the family's block keys / every
             block of the family by stages, only when a step needs them)
             ─► txn( handle absent (or at its revision) ∧ every used block at its revision ∧ every
                     claimed block absent ∧ IPPools ∧ Node [∧ config] ∧ ensured keys
                     ⇒ put handle, blocks, confirmed affinities of claimed blocks, ensured keys
                       that were absent, the caller's keys (the WorkloadEndpoint)
                     else ⇒ read the whole view again ) ─► plan again with the fresh records
    release: txn( its blocks ∧ handle ∧ the caller's guards at the revisions read
                  ⇒ put blocks, delete handle, delete guards  else ⇒ read them again )

The writes are listed in the order a store without multi-key transactions (the Kubernetes API)
makes them, each a compare-and-swap, undoing the earlier ones when a later one loses
(:mod:`calico.datastore.kube_txn`): the handle first on assignment, the blocks first on release.
Either way two writers can never both win one block revision, so no address is handed out twice.

A claimed block is created together with its addresses and its confirmed affinity, so there is no
"pending" state to clean up. A handle that already holds addresses keeps them (``reuse``: a
repeated CNI ADD); ``reuse=False`` adds addresses to it (Calico's AutoAssign). The records are
Calico's (same keys, same JSON).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping

from calico.datastore.backend import (
    KV,
    Backend,
    Cmp,
    Op,
    TxnResult,
    cmp_absent,
    cmp_mod,
    op_delete,
    op_get,
    op_put,
)
from calico.ipam import keys, plan
from calico.ipam.block import Block
from calico.ipam.errors import IPAMError
from calico.ipam.view import Cache, View

Extra = Callable[[list[str]], Mapping[str, str]]
MAX_ATTEMPTS = 100  # conflicting writers (or reads by stages) before giving up

__all__ = ["Cache", "Extra", "assign", "release"]


def assign(
    store: Backend,
    *,
    handle_id: str,
    host: str,
    num_v4: int = 1,
    num_v6: int = 0,
    pools: list[str] | None = None,
    pools_v6: list[str] | None = None,
    attrs: Mapping[str, str] | None = None,
    extra: Extra | None = None,
    ensure: Mapping[str, str] | None = None,
    cache: Cache | None = None,
    reuse: bool = True,
) -> tuple[list[str], bool]:
    """(addresses, reused). ``extra(addresses)`` -> {key: value} is written in the same
    transaction; ``ensure`` {key: value}: keys created with that value when absent (compared
    otherwise). All or nothing: on an error nothing was written."""
    wanted = [(v, n, req) for v, n, req in ((4, num_v4, pools), (6, num_v6, pools_v6)) if n > 0]
    versions = [v for v, _, _ in wanted]
    hkey = keys.handle_key(handle_id)
    ensure = dict(ensure or {})
    view = cache.get(host, versions, hkey) if cache is not None else None
    for _ in range(MAX_ATTEMPTS):
        view = _ready_view(store, view, host=host, versions=versions, hkey=hkey, ensure=ensure)
        try:
            held = plan.held(view, handle_id) if reuse else []
            if held:
                if _write_reused(store, view, held, extra, ensure):
                    return held, True
                continue
            chosen = plan.assignment(view, wanted, handle_id=handle_id, host=host,
                                     attrs=attrs or {})  # fmt: skip
        except plan.Need as need:
            if need.family_wide and view.remembered:
                view = None  # a remembered view may lack a block freed since: no claims from it
                continue
            view.read_more(store, blocks=need.blocks, index=need.index, all_blocks=need.all_blocks)
            continue
        except IPAMError:
            if view.remembered:
                view = None  # it may lack a new pool or a Node label change
                continue
            raise
        compare, success = _assign_ops(view, chosen, handle_id, extra, ensure)
        r = store.txn(compare, success, view.read_ops())
        if r.succeeded:
            _remember(view, chosen, ensure, r)
            if cache is not None:
                cache.put(view)
            return chosen.ips, False
        view.load(r.responses)  # the failure branch read every record again
    if cache is not None:
        cache.drop(host)
    raise IPAMError(f"handle {handle_id}: gave up after {MAX_ATTEMPTS} conflicting attempts")


def _ready_view(
    store: Backend,
    view: View | None,
    *,
    host: str,
    versions: list[int],
    hkey: str,
    ensure: Mapping[str, str],
) -> View:
    """The view to plan from: ``view``, or a fresh read when there is none; with every ensured
    key read either way."""
    if view is None:
        view = View(host, versions, hkey)
        view.ensure = dict.fromkeys(ensure)
        view.read(store)
    missing = [k for k in ensure if k not in view.ensure]
    if missing:
        view.read_more(store, ensure=missing)
    return view


def _ensure_ops(view: View, ensure: Mapping[str, str]) -> tuple[list[Cmp], list[Op]]:
    compare: list[Cmp] = []
    success: list[Op] = []
    for k, value in ensure.items():
        kv = view.ensure.get(k)
        compare.append(cmp_mod(k, kv.mod_revision) if kv is not None else cmp_absent(k))
        if kv is None:
            success.append(op_put(k, value))
    return compare, success


def _assign_ops(
    view: View, chosen: plan.Plan, handle_id: str, extra: Extra | None, ensure: Mapping[str, str]
) -> tuple[list[Cmp], list[Op]]:
    """The compares and writes of an assignment. Written in this order (it matters where a
    transaction is a sequence of compare-and-swaps, the Kubernetes API): the handle (so a
    concurrent call for the same handle loses before anything else is written), then the
    blocks (the writes that decide who gets an address), their new affinities, the ensured
    keys, the caller's keys."""
    hkey = view.handle_key
    compare = [cmp_mod(hkey, view.handle.mod_revision) if view.handle else cmp_absent(hkey)]
    record = plan.handle_record(view.handle, handle_id, chosen.counts)
    if record is None:
        raise IPAMError(f"handle {handle_id}: an assignment without addresses")
    success: list[Op] = [op_put(hkey, record)]
    for key, (kv, block) in chosen.writes().items():
        compare.append(cmp_mod(key, kv.mod_revision) if kv is not None else cmp_absent(key))
        success.append(op_put(key, block.to_json()))
        if kv is None:
            success.append(
                op_put(keys.affinity_key(view.host, block.cidr), keys.AFFINITY_CONFIRMED)
            )
    compare += [cmp_mod(kv.key, kv.mod_revision) for kv in view.pools]
    compare.append(_cmp(view.node_key, view.node))
    if chosen.used_config:
        compare.append(_cmp(keys.CONFIG_KEY, view.config))
    more_compare, more_success = _ensure_ops(view, ensure)
    success += more_success + [
        op_put(k, v) for k, v in (extra(chosen.ips) if extra else {}).items()
    ]
    return compare + more_compare, success


def _cmp(key: str, kv: KV | None) -> Cmp:
    return cmp_mod(key, kv.mod_revision) if kv is not None else cmp_absent(key)


def _remember(view: View, chosen: plan.Plan, ensure: Mapping[str, str], r: TxnResult) -> None:
    """What the successful transaction wrote becomes the view (for the next call's Cache)."""
    for key, (kv, block) in chosen.writes().items():
        rev = r.revision_of(key)
        view.blocks[key] = KV(key, block.to_json().encode(), rev,
                              kv.create_revision if kv is not None else rev)  # fmt: skip
        if kv is None:
            akey = keys.affinity_key(view.host, block.cidr)
            arev = r.revision_of(akey)
            aff = KV(akey, keys.AFFINITY_CONFIRMED.encode(), arev, arev)
            view.affinity[block.cidr.version] = [*view.affinity.get(block.cidr.version, []), aff]
    for k, value in ensure.items():
        if view.ensure.get(k) is None:
            view.ensure[k] = KV(k, value.encode(), r.revision_of(k), r.revision_of(k))


def _write_reused(
    store: Backend, view: View, ips: list[str], extra: Extra | None, ensure: Mapping[str, str]
) -> bool:
    """A repeated ADD: the handle keeps its addresses; write the caller's keys (False: the
    handle or an ensured key changed meanwhile, and the view was read again)."""
    puts = [op_put(k, v) for k, v in (extra(ips) if extra else {}).items()]
    compare, creates = _ensure_ops(view, ensure)
    if not puts and not creates:
        return True
    assert view.handle is not None
    compare.append(cmp_mod(view.handle.key, view.handle.mod_revision))
    r = store.txn(compare, puts + creates, view.read_ops())
    if not r.succeeded:
        view.load(r.responses)
    return r.succeeded


def release(
    store: Backend,
    handle: KV | None,
    *,
    guards: Mapping[str, int] | None = None,
    blocks: Mapping[str, KV] | None = None,
    cache: Cache | None = None,
    host: str = "",
) -> list[str]:
    """Release every address of the handle read as ``handle`` and delete the ``guards`` keys
    ({key: mod revision}: each deleted only while still at that revision) in one transaction.

    ``blocks``: block records already read (by key), so they need no second read. Returns the
    addresses released. A guard that changed meanwhile is left alone (a newer sandbox's endpoint);
    a handle that changed is released as it is now.
    """
    guards = dict(guards or {})
    have = dict(blocks or {})
    what = handle.key if handle is not None else "guards"
    for _ in range(MAX_ATTEMPTS):
        if handle is None:
            for k, rev in guards.items():
                store.delete(k, mod_revision=rev)
            return []
        handle_id, bkeys = _handle_blocks(handle)
        unread = [k for k in bkeys if k not in have]
        if unread:
            read = store.txn([], [op_get(k) for k in unread]).responses
            have.update({r[0].key: r[0] for r in read if r})
        # blocks first: where a transaction is a sequence of compare-and-swaps (the Kubernetes
        # API), the writes most likely to meet a concurrent writer go before the others
        compare: list[Cmp] = []
        success: list[Op] = []
        released, written = _free(have, bkeys, handle_id, compare, success)
        compare += [cmp_mod(handle.key, handle.mod_revision)]
        compare += [cmp_mod(k, rev) for k, rev in guards.items()]
        success += [op_delete(handle.key)] + [op_delete(k) for k in guards]
        failure = [op_get(handle.key)] + [op_get(k) for k in guards] + [op_get(k) for k in bkeys]
        r = store.txn(compare, success, failure)
        if r.succeeded:
            if cache is not None and host:
                fresh = [KV(k, v.encode(), r.revision_of(k), c) for k, v, c in written]
                cache.update_blocks(host, fresh)
            return released
        fresh_handle, *rest = r.responses
        fresh_guards, fresh_blocks = rest[: len(guards)], rest[len(guards) :]
        guards = {k: rev for (k, rev), kvs in zip(guards.items(), fresh_guards, strict=True)
                  if kvs and kvs[0].mod_revision == rev}  # fmt: skip
        handle = fresh_handle[0] if fresh_handle else None
        have = {k: kvs[0] for k, kvs in zip(bkeys, fresh_blocks, strict=True) if kvs}
    raise IPAMError(f"{what}: gave up after {MAX_ATTEMPTS} conflicting attempts")


def _handle_blocks(handle: KV) -> tuple[str, list[str]]:
    record = json.loads(handle.value)
    handle_id = record.get("handleID") or handle.key.rsplit("/", 1)[-1]
    return handle_id, [keys.block_key(ipaddress.ip_network(c)) for c in record.get("block") or {}]


def _free(
    have: Mapping[str, KV], bkeys: list[str], handle_id: str,
    compare: list[Cmp], success: list[Op],
) -> tuple[list[str], list[tuple[str, str, int]]]:  # fmt: skip
    """Free the handle's addresses in each block; adds the block compares and puts."""
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
    return released, written
