"""calicoctl explain's endpoint lookup: NS/POD, endpoint names, IPs, and what it says when the
argument names nothing (unknown endpoint, pod on no node, IP in no pool, IP nobody has)."""

from __future__ import annotations

from typing import Any

import pytest

from calico.cli import endpoint_lookup as el

Res = dict[str, Any]


def wep(
    ns: str, name: str, pod: str, node: str | None, nets: list[str], endpoint: str = "eth0"
) -> Res:
    spec: Res = {"pod": pod, "endpoint": endpoint, "ipNetworks": nets}
    if node:
        spec["node"] = node
    return {"kind": "WorkloadEndpoint", "metadata": {"name": name, "namespace": ns}, "spec": spec}


WORLD: dict[str, list[Res]] = {
    "WorkloadEndpoint": [
        wep("shop", "node2-k8s-db-eth0", "db", "node2", ["10.65.2.4/32", "fd00::4/128"]),
        wep("shop", "node2-k8s-db-net1", "db", "node2", ["10.65.2.5/32"], endpoint="net1"),
        wep("dev", "node1-k8s-tester-eth0", "tester", "node1", ["10.65.1.3/32"]),
        wep("dev", "nowhere-k8s-lost-eth0", "lost", None, ["10.65.1.9/32"]),
        wep("default", "bare", "bare", "node1", ["10.65.1.7/32"]),
    ],
    "HostEndpoint": [
        {
            "kind": "HostEndpoint",
            "metadata": {"name": "node1-eth0"},
            "spec": {"node": "node1", "interfaceName": "eth0", "expectedIPs": ["10.99.0.11"]},
        },
    ],
    "IPPool": [
        {
            "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": "10.65.0.0/16"},
        }
    ],
}


def lister(kind: str, ns: str | None) -> list[Res]:
    return [r for r in WORLD[kind] if ns is None or r["metadata"].get("namespace") == ns]


def test_pods_endpoints_and_ips() -> None:
    db = el.lookup("shop/db", lister)
    assert (db.kind, db.name, db.node) == ("WorkloadEndpoint", "shop/node2-k8s-db-eth0", "node2")
    assert db.addresses == ("10.65.2.4", "fd00::4")
    assert db.address(6) == "fd00::4"
    assert el.lookup("shop/node2-k8s-db-net1", lister).addresses == ("10.65.2.5",)
    assert el.lookup("10.65.2.5", lister).name == "shop/node2-k8s-db-net1"
    assert el.lookup("fd00::4", lister).name == "shop/node2-k8s-db-eth0"
    hep = el.lookup("node1-eth0", lister)
    assert (hep.kind, hep.name, hep.node, hep.addresses) == (
        "HostEndpoint", "node1-eth0", "node1", ("10.99.0.11",))  # fmt: skip
    assert el.lookup("10.99.0.11", lister).kind == "HostEndpoint"
    assert el.lookup("bare", lister).name == "default/bare"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("shop/ghost", "shop/ghost: no pod ghost with a network endpoint in namespace shop"),
        ("ghost", "ghost: no HostEndpoint or WorkloadEndpoint (namespace default) named ghost"),
        ("dev/lost", "dev/lost: pod lost in namespace dev is on no node"),
        ("8.8.8.8", "8.8.8.8: IP 8.8.8.8 is in no IP pool and no endpoint has it"),
        (
            "10.65.9.9",
            "10.65.9.9: no endpoint has IP 10.65.9.9 (it is in IP pool default-ipv4-ippool",
        ),
        ("/x", "/x: expected NAMESPACE/POD, an endpoint name or an IP"),
    ],
)
def test_what_was_not_found_is_named(arg: str, message: str) -> None:
    with pytest.raises(el.EndpointNotFound) as err:
        el.lookup(arg, lister)
    assert str(err.value).startswith(message)
