"""Calico's IPAM key layout in etcd (``/calico/ipam/v2/...``) and the small records stored there.

* block:    ``/calico/ipam/v2/assignment/ipv4/block/192.168.12.64-26``  (value: Block JSON)
* affinity: ``/calico/ipam/v2/host/<host>/ipv4/block/192.168.12.64-26``
  (value: ``{"state": "confirmed"|"pending", "deleted": false}``)
* handle:   ``/calico/ipam/v2/handle/<handle-id>``
  (value: ``{"handleID": ..., "block": {cidr: n}}``)
* config:   ``/calico/ipam/v2/config``
  (value: ``{"strictAffinity": bool, "autoAllocateBlocks": bool}``)

Other components (the BGP renderer: "which blocks does this host own") read these keys directly,
so the layout is a contract: change it only together with them.
"""

from __future__ import annotations

import ipaddress

from calico.ipam.block import IPNetwork

IPAM_PREFIX = "/calico/ipam/v2/"
HANDLE_PREFIX = IPAM_PREFIX + "handle/"
HOST_PREFIX = IPAM_PREFIX + "host/"
CONFIG_KEY = IPAM_PREFIX + "config"

AFFINITY_CONFIRMED = '{"state":"confirmed","deleted":false}'
AFFINITY_PENDING = '{"state":"pending","deleted":false}'


def cidr_text(cidr: IPNetwork) -> str:
    """``10.0.0.64/26`` -> ``10.0.0.64-26`` (the key form)."""
    return f"{cidr.network_address}-{cidr.prefixlen}"


def block_prefix(version: int) -> str:
    return f"{IPAM_PREFIX}assignment/ipv{version}/block/"


def block_key(cidr: IPNetwork) -> str:
    return block_prefix(cidr.version) + cidr_text(cidr)


def host_affinity_prefix(host: str, version: int) -> str:
    return f"{HOST_PREFIX}{host}/ipv{version}/block/"


def affinity_key(host: str, cidr: IPNetwork) -> str:
    return host_affinity_prefix(host, cidr.version) + cidr_text(cidr)


def handle_key(handle_id: str) -> str:
    return HANDLE_PREFIX + handle_id


def cidr_from_key(key: str) -> IPNetwork:
    """The block CIDR at the end of a block or affinity key."""
    last = key.rsplit("/", 1)[-1]
    net, _, plen = last.rpartition("-")
    return ipaddress.ip_network(f"{net}/{plen}")


def parse_affinity_key(key: str) -> tuple[str, IPNetwork] | None:
    """(host, block cidr) for an affinity key, else None."""
    if not key.startswith(HOST_PREFIX):
        return None
    parts = key[len(HOST_PREFIX) :].split("/")
    if len(parts) != 4 or parts[2] != "block":
        return None
    return parts[0], cidr_from_key(key)
