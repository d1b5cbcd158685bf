"""Handle records: ``/calico/ipam/v2/handle/<id>`` -> ``{"handleID", "block": {cidr: count}}``.

A handle says which blocks hold its addresses, so releasing by handle reads only those blocks.
The count is raised before the block write that allocates and lowered after the one that frees
(see client.py); every change is a compare-and-swap, retried on conflict.
"""

from __future__ import annotations

import json

from calico.datastore.etcd import EtcdClient
from calico.ipam import keys
from calico.ipam.block import IPNetwork
from calico.ipam.errors import IPAMError

MAX_CAS_RETRIES = 100


def change(etcd: EtcdClient, handle_id: str, cidr: IPNetwork, delta: int) -> None:
    """Add ``delta`` to the handle's count for ``cidr`` (create it; delete it at zero), by CAS."""
    key = keys.handle_key(handle_id)
    name = str(cidr)
    if delta > 0:  # a new handle is the common case: one round trip
        record = {"handleID": handle_id, "block": {name: delta}}
        if etcd.create(key, json.dumps(record)) is not None:
            return
    for _ in range(MAX_CAS_RETRIES):
        kv = etcd.get(key)
        if kv is None:
            if delta <= 0:
                return
            record = {"handleID": handle_id, "block": {name: delta}}
            if etcd.create(key, json.dumps(record)) is not None:
                return
            continue
        record = json.loads(kv.value)
        blocks: dict[str, int] = record.setdefault("block", {})
        count = blocks.get(name, 0) + delta
        if count > 0:
            blocks[name] = count
        else:
            blocks.pop(name, None)
        if not blocks:
            if etcd.delete(key, mod_revision=kv.mod_revision):
                return
        elif etcd.update(key, json.dumps(record), kv.mod_revision) is not None:
            return
    raise IPAMError(f"handle {handle_id}: gave up after {MAX_CAS_RETRIES} conflicting updates")


def blocks(etcd: EtcdClient, handle_id: str) -> dict[str, int]:
    """{block cidr: number of the handle's addresses in it}; empty when the handle is unknown."""
    kv = etcd.get(keys.handle_key(handle_id))
    return dict(json.loads(kv.value).get("block") or {}) if kv else {}
