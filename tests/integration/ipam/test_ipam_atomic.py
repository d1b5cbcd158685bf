"""One-transaction IPAM (calico.ipam.atomic) and EtcdClient.txn against a real etcd."""

from __future__ import annotations

import ipaddress
import json
import threading
from typing import Any

import pytest

from calico.datastore.backend import KV
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient, cmp_absent, cmp_mod, op_delete, op_get, op_put
from calico.datastore.etcd_server import EtcdServer
from calico.ipam import atomic, keys
from calico.ipam.client import IPAMClient, IPAMConfig, IPAMError, PoolExhausted

pytestmark = pytest.mark.etcd


def stored(etcd: EtcdClient, key: str) -> KV:
    """The record at ``key``, which the test expects to be there."""
    kv = etcd.get(key)
    assert kv is not None, f"nothing stored at {key}"
    return kv


class Counting(EtcdClient):
    """An EtcdClient that counts round trips (every request goes through ``_post``)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.posts = 0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.posts += 1
        return super()._post(path, body)


def make_pool(ds: Client, name: str, cidr: str, block_size: int, **spec: Any) -> dict[str, Any]:
    return ds.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": block_size, **spec},
        },
        validate=False,
    )


def test_txn_compares_and_branches(etcd: EtcdClient) -> None:
    rev = etcd.put("/t/a", "1")
    r = etcd.txn(
        [cmp_mod("/t/a", rev), cmp_absent("/t/b")],
        [op_put("/t/b", "2"), op_get("/t/", prefix=True), op_delete("/t/a")],
        [op_get("/t/a")],
    )
    assert r.succeeded
    assert [kv.key for kv in r.responses[1]] == ["/t/a", "/t/b"]
    assert r.responses[0] == []
    assert r.responses[2] == []
    assert etcd.get("/t/a") is None
    # a failed compare runs the failure branch and changes nothing
    r = etcd.txn([cmp_absent("/t/b")], [op_put("/t/c", "x")], [op_get("/t/b")])
    assert not r.succeeded
    assert r.responses[0][0].value == b"2"
    assert etcd.get("/t/c") is None


def test_assign_writes_the_ordinary_records_and_extra_in_one_txn(
    etcd_server: EtcdServer, datastore: Client
) -> None:
    make_pool(datastore, "p", "10.70.0.0/24", 26)
    etcd = Counting(etcd_server.endpoint)
    ipam = IPAMClient(etcd)
    ipam.auto_assign(handle_id="first", host="node1")  # claims the block the ordinary way
    cache = atomic.Cache()
    ips, reused = atomic.assign(
        ipam.backend, handle_id="net.c1", host="node1", attrs={"node": "node1"},
        extra=lambda got: {"/wep/c1": json.dumps(got)}, cache=cache,
    )  # fmt: skip
    assert not reused
    assert len(ips) == 1
    [block] = ipam.host_blocks("node1")
    handle = stored(etcd, keys.handle_key("net.c1"))
    assert json.loads(handle.value) == {"handleID": "net.c1", "block": {str(block): 1}}
    wep = stored(etcd, "/wep/c1")
    assert json.loads(wep.value) == ips
    blk = stored(etcd, keys.block_key(block))
    assert wep.mod_revision == handle.mod_revision == blk.mod_revision  # one transaction
    info = ipam.ip_info(ips[0])
    assert info is not None
    assert info["handle_id"] == "net.c1"
    assert info["attributes"] == {"node": "node1"}
    # with the view remembered, the next allocation is one round trip
    before = etcd.posts
    more, _ = atomic.assign(ipam.backend, handle_id="net.c2", host="node1", cache=cache)
    assert etcd.posts - before == 1
    assert more != ips
    # a repeated ADD keeps its address and still writes the extra keys
    again, reused = atomic.assign(
        ipam.backend, handle_id="net.c1", host="node1", extra=lambda got: {"/wep/c1": "again"},
        cache=cache,
    )  # fmt: skip
    assert (again, reused) == (ips, True)
    assert stored(etcd, "/wep/c1").value == b"again"


def test_remembered_view_never_double_allocates_or_uses_a_disabled_pool(
    etcd: EtcdClient, datastore: Client
) -> None:
    pool = make_pool(datastore, "p", "10.71.0.0/24", 28)
    ipam = IPAMClient(etcd)
    cache = atomic.Cache()
    got = atomic.assign(ipam.backend, handle_id="a0", host="n", cache=cache)[0]
    # other writers (the ordinary client, another process) take addresses from the same block
    got += ipam.auto_assign(handle_id="o1", host="n")
    got += atomic.assign(EtcdClient(etcd.endpoints_text()), handle_id="b0",
                         host="n")[0]  # fmt: skip
    got += atomic.assign(ipam.backend, handle_id="a1", host="n", cache=cache)[0]
    assert len(set(got)) == len(got) == 4
    # the pool is disabled: the remembered view must not be used to allocate from it
    pool["spec"]["disabled"] = True
    datastore.update(pool, validate=False)
    with pytest.raises(PoolExhausted):
        atomic.assign(ipam.backend, handle_id="a2", host="n", cache=cache)
    assert etcd.get(keys.handle_key("a2")) is None


def test_full_blocks_claim_more_and_the_cache_follows(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.72.0.0/28", 30)  # four blocks of four
    ipam = IPAMClient(etcd)
    cache = atomic.Cache()
    ips = [
        atomic.assign(ipam.backend, handle_id=f"h{i}", host="n", cache=cache)[0][0]
        for i in range(9)
    ]
    assert len(set(ips)) == 9
    assert len(ipam.host_blocks("n")) == 3
    for i in range(9):
        handle = etcd.get(keys.handle_key(f"h{i}"))
        assert atomic.release(ipam.backend, handle, cache=cache, host="n") == [ips[i]]
        assert etcd.get(keys.handle_key(f"h{i}")) is None
    assert all(b.in_use == 0 for b in ipam.blocks(4))
    again = atomic.assign(ipam.backend, handle_id="z", host="n", cache=cache)[0]
    assert any(ipaddress.ip_address(again[0]) in b for b in ipam.host_blocks("n"))
    assert len(ipam.host_blocks("n")) == 3  # the host's own blocks again, no new claim


def test_release_with_guards(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.73.0.0/24", 26)
    ipam = IPAMClient(etcd)
    ips, _ = atomic.assign(ipam.backend, handle_id="h", host="n", extra=lambda got: {"/wep/h": "x"})
    wep = stored(etcd, "/wep/h")
    handle = etcd.get(keys.handle_key("h"))
    assert atomic.release(ipam.backend, handle, guards={"/wep/h": wep.mod_revision}) == ips
    assert etcd.get("/wep/h") is None
    assert ipam.ip_info(ips[0]) is None
    # a guard that changed since it was read is left alone; the addresses are still released
    ips, _ = atomic.assign(
        ipam.backend, handle_id="h2", host="n", extra=lambda got: {"/wep/h2": "x"}
    )
    old = stored(etcd, "/wep/h2").mod_revision
    etcd.put("/wep/h2", "someone else's")
    assert (
        atomic.release(ipam.backend, etcd.get(keys.handle_key("h2")), guards={"/wep/h2": old})
        == ips
    )
    assert stored(etcd, "/wep/h2").value == b"someone else's"
    assert ipam.ip_info(ips[0]) is None
    # no handle: only the guards
    assert (
        atomic.release(ipam.backend, None, guards={"/wep/h2": stored(etcd, "/wep/h2").mod_revision})
        == []
    )
    assert etcd.get("/wep/h2") is None


def test_concurrent_assigns_with_a_shared_cache(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.74.0.0/24", 26)
    cache = atomic.Cache()
    out: list[str] = []
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        ipam = IPAMClient(EtcdClient(etcd.endpoints_text()))
        try:
            for i in range(10):
                out.extend(
                    atomic.assign(ipam.backend, handle_id=f"w{w}.{i}", host="n", cache=cache)[0]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(out) == len(set(out)) == 60
    in_use = sum(b.in_use for b in IPAMClient(etcd).blocks(4))
    assert in_use == 60


def test_a_claim_is_one_transaction_with_no_pending_state(
    etcd: EtcdClient, datastore: Client
) -> None:
    make_pool(datastore, "p", "10.75.0.0/24", 26)
    ips, _ = atomic.assign(etcd, handle_id="h", host="n", extra=lambda got: {"/wep/h": "x"})
    [block] = IPAMClient(etcd).host_blocks("n")
    aff = stored(etcd, keys.affinity_key("n", block))
    blk = stored(etcd, keys.block_key(block))
    handle = stored(etcd, keys.handle_key("h"))
    assert json.loads(aff.value) == {"state": "confirmed", "deleted": False}
    assert aff.mod_revision == blk.mod_revision == handle.mod_revision
    assert aff.mod_revision == stored(etcd, "/wep/h").mod_revision
    assert json.loads(blk.value)["affinity"] == "host:n"
    assert ips[0] in [str(a) for a in block]


def test_nothing_is_written_when_assignment_fails(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.76.0.0/30", 30)
    IPAMClient(etcd).set_config(IPAMConfig(strict_affinity=True))
    atomic.assign(etcd, handle_id="a", host="n1", num_v4=4)
    before = etcd.revision()
    with pytest.raises(PoolExhausted, match="no more free IPv4 addresses"):
        atomic.assign(etcd, handle_id="b", host="n2", extra=lambda got: {"/wep/b": "x"},
                      ensure={"/profile/net": "p"})  # fmt: skip
    assert etcd.revision() == before


def test_reuse_or_add_to_a_handle_and_ensured_keys(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.77.0.0/24", 26)
    ips, reused = atomic.assign(etcd, handle_id="h", host="n", ensure={"/profile/net": "v1"})
    assert not reused
    assert stored(etcd, "/profile/net").value == b"v1"
    etcd.put("/profile/net", "edited")  # an ensured key is created when absent, never rewritten
    again, reused = atomic.assign(etcd, handle_id="h", host="n", ensure={"/profile/net": "v1"},
                                  extra=lambda got: {"/wep/h": json.dumps(got)})  # fmt: skip
    assert (again, reused) == (ips, True)
    assert stored(etcd, "/profile/net").value == b"edited"
    assert json.loads(stored(etcd, "/wep/h").value) == ips
    ipam = IPAMClient(etcd)
    more = ipam.auto_assign(handle_id="h", host="n", num_v4=2)  # Calico's AutoAssign adds
    assert sorted(ipam.ips_by_handle("h")) == sorted(ips + more)
    [block] = ipam.host_blocks("n")
    assert json.loads(stored(etcd, keys.handle_key("h")).value)["block"] == {str(block): 3}
    assert sorted(ipam.release_by_handle("h")) == sorted(ips + more)


def test_assign_ip_and_release_by_address_keep_handles_exact(
    etcd: EtcdClient, datastore: Client
) -> None:
    make_pool(datastore, "p", "10.78.0.0/24", 26)
    ipam = IPAMClient(etcd)
    ipam.assign_ip("10.78.0.70", handle_id="tun", host="n")  # claims 10.78.0.64/26 for n
    ipam.assign_ip("10.78.0.71", handle_id="tun", host="n")
    with pytest.raises(IPAMError, match="already allocated"):
        ipam.assign_ip("10.78.0.70", handle_id="x", host="n")
    assert ipam.host_blocks("n") == [ipaddress.ip_network("10.78.0.64/26")]
    assert json.loads(stored(etcd, keys.handle_key("tun")).value)["block"] == {"10.78.0.64/26": 2}
    assert ipam.release_ips(["10.78.0.70", "10.78.0.99"]) == ["10.78.0.99"]
    assert json.loads(stored(etcd, keys.handle_key("tun")).value)["block"] == {"10.78.0.64/26": 1}
    assert ipam.release_ips(["10.78.0.71"]) == []
    assert etcd.get(keys.handle_key("tun")) is None
    assert ipam.ips_by_handle("tun") == []
