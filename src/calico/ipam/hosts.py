"""Remove a host from IPAM (Calico's ``RemoveIPAMHost``): release every block affinity it holds.

For each block affine to the host (from its affinity keys, both families), one transaction
compared against the block's revision: an **empty** block is deleted with its affinity key; a
block that still holds addresses (another host borrowed from it, or the caller did not release
this host's own first) keeps them and loses its affinity (``affinity: null``: any host may now
borrow from it or the next claim may take it over) and the affinity key goes. A block whose
``affinity`` names another host already (a stale key) just loses the key. Then whatever is left
under ``/calico/ipam/v2/host/<host>/`` is deleted. Every step is idempotent: run again after a
failure, it finishes the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calico.datastore.backend import Backend, Op, cmp_mod, op_delete, op_put
from calico.ipam import keys
from calico.ipam.block import Block, affinity_for
from calico.ipam.errors import IPAMError

MAX_CAS_RETRIES = 100


@dataclass(slots=True)
class HostRelease:
    deleted_blocks: list[str] = field(default_factory=list)  # empty: gone
    kept_blocks: list[str] = field(default_factory=list)  # in use: affinity cleared


def remove_host(store: Backend, host: str) -> HostRelease:
    """Release every block affinity of ``host`` and delete its IPAM host keys."""
    out = HostRelease()
    for version in (4, 6):
        kvs, _ = store.get_prefix(keys.host_affinity_prefix(host, version))
        for kv in kvs:
            _release_affinity(store, host, kv.key, out)
    store.delete_prefix(f"{keys.HOST_PREFIX}{host}/")
    return out


def _release_affinity(store: Backend, host: str, affinity_key: str, out: HostRelease) -> None:
    cidr = keys.cidr_from_key(affinity_key)
    block_key = keys.block_key(cidr)
    for _ in range(MAX_CAS_RETRIES):
        kv = store.get(block_key)
        if kv is None or Block.from_json(kv.value).affinity != affinity_for(host):
            store.delete(affinity_key)  # no block, or not ours: only the stale key goes
            return
        block = Block.from_json(kv.value)
        success: list[Op]
        if block.in_use == 0:
            success = [op_delete(block_key), op_delete(affinity_key)]
        else:
            block.affinity = None
            success = [op_put(block_key, block.to_json()), op_delete(affinity_key)]
        if store.txn([cmp_mod(block_key, kv.mod_revision)], success).succeeded:
            (out.deleted_blocks if block.in_use == 0 else out.kept_blocks).append(str(cidr))
            return
    raise IPAMError(f"block {cidr}: gave up after {MAX_CAS_RETRIES} conflicting updates")
