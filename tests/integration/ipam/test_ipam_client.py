"""IPAMClient against a real etcd: affinity, claims, borrowing, exhaustion, release, concurrency."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from calico.datastore.backend import KV
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.ipam import keys, report
from calico.ipam.client import IPAMClient, IPAMConfig, IPAMError, PoolExhausted

pytestmark = pytest.mark.etcd


def stored(etcd: EtcdClient, key: str) -> KV:
    """The record at ``key``, which the test expects to be there."""
    kv = etcd.get(key)
    assert kv is not None, f"nothing stored at {key}"
    return kv


def make_pool(ds: Client, name: str, cidr: str, block_size: int, **spec: Any) -> None:
    ds.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": block_size, **spec},
        },
        validate=False,
    )


def test_claims_affine_block_with_calico_layout(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.70.0.0/24", 26)
    ipam = IPAMClient(etcd)
    ips = ipam.auto_assign(handle_id="net.c1", host="node1", attrs={"node": "node1"})
    assert len(ips) == 1
    [block] = ipam.host_blocks("node1")
    assert ips[0] in [str(a) for a in block]
    aff = etcd.get(keys.affinity_key("node1", block))
    assert aff is not None
    assert json.loads(aff.value)["state"] == "confirmed"
    raw = json.loads(stored(etcd, keys.block_key(block)).value)
    assert raw["affinity"] == "host:node1"
    assert raw["attributes"] == [{"handle_id": "net.c1", "secondary": {"node": "node1"}}]
    handle = json.loads(stored(etcd, keys.handle_key("net.c1")).value)
    assert handle == {"handleID": "net.c1", "block": {str(block): 1}}
    # the same host keeps using its block; another host gets its own
    more = ipam.auto_assign(handle_id="net.c2", host="node1")
    assert ipam.host_blocks("node1") == [block]
    other = ipam.auto_assign(handle_id="net.c3", host="node2")
    [block2] = ipam.host_blocks("node2")
    assert block2 != block
    assert other[0] not in ips + more
    info = ipam.ip_info(ips[0])
    assert info is not None
    assert info["handle_id"] == "net.c1"
    assert info["affinity"] == "host:node1"


def test_full_block_claims_next_then_borrows_then_exhausts(
    etcd: EtcdClient, datastore: Client
) -> None:
    make_pool(datastore, "small", "10.71.0.0/29", 30)  # two blocks of four
    ipam = IPAMClient(etcd)
    a = ipam.auto_assign(handle_id="a", host="n1", num_v4=5)
    assert len(set(a)) == 5
    assert len(ipam.host_blocks("n1")) == 2  # filled one, claimed the other
    # n2 finds no free block, so it borrows from n1's blocks (strictAffinity is off)
    b = ipam.auto_assign(handle_id="b", host="n2", num_v4=2)
    assert set(b).isdisjoint(a)
    assert ipam.host_blocks("n2") == []
    # nothing left: a clear error, and nothing half-assigned
    with pytest.raises(PoolExhausted, match="no more free IPv4 addresses"):
        ipam.auto_assign(handle_id="c", host="n3", num_v4=2)
    assert ipam.ips_by_handle("c") == []
    assert ipam.release_ips([b[0], b[0]]) == [b[0]]  # the second one was no longer allocated
    assert ipam.ip_info(b[0]) is None
    assert len(ipam.auto_assign(handle_id="d", host="n3", num_v4=2)) == 2  # the last two
    with pytest.raises(PoolExhausted):
        ipam.auto_assign(handle_id="e", host="n3", num_v4=1)


def test_strict_affinity_never_borrows(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "small", "10.72.0.0/30", 30)
    ipam = IPAMClient(etcd)
    ipam.set_config(IPAMConfig(strict_affinity=True))
    ipam.auto_assign(handle_id="a", host="n1")
    with pytest.raises(PoolExhausted):
        ipam.auto_assign(handle_id="b", host="n2")


def test_pool_selection(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "off", "10.73.0.0/24", 26, disabled=True)
    make_pool(datastore, "zone-a", "10.74.0.0/24", 26, nodeSelector="zone == 'a'")
    make_pool(datastore, "v6", "fd74::/120", 122)
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "na", "labels": {"zone": "a"}},
            "spec": {},
        },
        validate=False,
    )
    ipam = IPAMClient(etcd)
    [v4, v6] = ipam.auto_assign(handle_id="h1", host="na", num_v4=1, num_v6=1)
    assert v4.startswith("10.74.")
    assert v6.startswith("fd74::")
    with pytest.raises(PoolExhausted, match="no enabled IPv4 pool"):
        ipam.auto_assign(handle_id="h2", host="nb")  # not in zone a; the other pool is disabled
    assert ipam.ips_by_handle("h2") == []
    with pytest.raises(IPAMError, match="is disabled"):
        ipam.auto_assign(handle_id="h3", host="na", pools=["10.73.0.0/24"])
    with pytest.raises(IPAMError, match="does not exist"):
        ipam.auto_assign(handle_id="h3", host="na", pools=["10.99.0.0/24"])
    assert ipam.auto_assign(handle_id="h4", host="na", pools=["zone-a"])[0].startswith("10.74.")
    assert sorted(ipam.release_by_handle("h1")) == sorted([v4, v6])
    assert etcd.get(keys.handle_key("h1")) is None


def test_usage_and_check(etcd: EtcdClient, datastore: Client) -> None:
    make_pool(datastore, "p", "10.75.0.0/24", 26)
    ipam = IPAMClient(etcd)
    [ip1] = ipam.auto_assign(handle_id="h1", host="n1")
    [ip2] = ipam.auto_assign(handle_id="h2", host="n1")
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": "n1-cni-x-eth0", "namespace": "default"},
            "spec": {"ipNetworks": [f"{ip1}/32", "10.75.0.200/32"]},
        },
        validate=False,
    )
    [pool] = report.usage(ipam)
    assert (pool.cidr, pool.size, pool.in_use) == ("10.75.0.0/24", 256, 2)
    assert [(b.affinity, b.in_use) for b in pool.blocks] == [("host:n1", 2)]
    chk = report.check(ipam)
    assert [a.ip for a in chk.leaked] == [ip2]
    assert chk.unallocated_in_use == [("10.75.0.200", "default/n1-cni-x-eth0")]
    assert not chk.ok


def test_concurrent_assign_many_hosts(etcd_server: EtcdServer, datastore: Client) -> None:
    make_pool(datastore, "p", "10.76.0.0/24", 28)  # 16 blocks of 16
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = EtcdClient([etcd_server.endpoint])
        ipam = IPAMClient(client)
        try:
            for j in range(6):
                handle = f"w{i}.{j}"
                results[handle] = ipam.auto_assign(handle_id=handle, host=f"host{i % 3}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ips = [ip for got in results.values() for ip in got]
    assert len(ips) == 48
    assert len(set(ips)) == 48, "an address was handed out twice"
    ipam = IPAMClient(EtcdClient([etcd_server.endpoint]))
    assert sum(b.in_use for b in ipam.blocks()) == 48
    for handle in results:
        ipam.release_by_handle(handle)
    assert sum(b.in_use for b in ipam.blocks()) == 0
    assert etcd_server is not None
