"""The Kubernetes datastore's key ↔ object mapping (calico.datastore.kube_map) and its manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico.datastore.backend import Refused
from calico.datastore.kube_map import (
    CONTAINER_ID,
    CRD_KINDS,
    IPAM_KINDS,
    POD_IPS,
    mapper_for,
    mappers_under,
    split_wep_name,
)
from calico.k8s.names import workload_endpoint_name

ROOT = Path(__file__).resolve().parents[3]
V3 = "/calico/resources/v3/projectcalico.org/"


def test_wep_names_split_back_into_their_segments() -> None:
    for node, pod in [("n1", "p"), ("node-1", "web-0"), ("a--b", "c-d-e")]:
        assert split_wep_name(workload_endpoint_name(node, pod)) == [node, "k8s", pod, "eth0"]


def test_every_key_family_has_its_collection() -> None:
    cases = {
        V3 + "ippools/p": ("crd.projectcalico.org/v1", "ippools", (None, "p")),
        V3 + "networkpolicies/ns/allow": ("crd.projectcalico.org/v1", "networkpolicies",
                                          ("ns", "allow")),
        V3 + "networkpolicies/ns/knp.default.deny": ("networking.k8s.io/v1", "networkpolicies",
                                                     ("ns", "deny")),
        V3 + "profiles/kns.ns1": ("v1", "namespaces", (None, "ns1")),
        V3 + "profiles/ksa.ns1.sa": ("v1", "serviceaccounts", ("ns1", "sa")),
        V3 + "nodes/n1": ("v1", "nodes", (None, "n1")),
        V3 + "workloadendpoints/ns1/n--1-k8s-web-eth0": ("v1", "pods", ("ns1", "web")),
        "/calico/ipam/v2/assignment/ipv4/block/10.0.0.64-26": (
            "crd.projectcalico.org/v1", "ipamblocks", (None, "10-0-0-64-26")),
        "/calico/ipam/v2/assignment/ipv6/block/fd00::-122": ("crd.projectcalico.org/v1",
                                                             "ipamblocks", (None, "fd00---122")),
        "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.64-26": ("crd.projectcalico.org/v1",
                                                            "blockaffinities",
                                                            (None, "n1-10-0-0-64-26")),
        "/calico/ipam/v2/handle/K8s-Pod-Network.abc": ("crd.projectcalico.org/v1", "ipamhandles",
                                                       (None, "k8s-pod-network.abc")),
        "/calico/ipam/v2/config": ("crd.projectcalico.org/v1", "ipamconfigs", (None, "default")),
    }  # fmt: skip
    for key, (gv, plural, where) in cases.items():
        m = mapper_for(key)
        got = (m.collection.group_version, m.collection.plural, m.locate(key))
        assert got == (gv, plural, where), key
    with pytest.raises(Refused, match="no Kubernetes resource"):
        mapper_for("/calico/felix/v1/host/x")


def test_records_round_trip_through_their_objects() -> None:
    block = {"cidr": "10.0.0.64/26", "affinity": "host:n1", "strictAffinity": False,
             "allocations": [0, None], "unallocated": [1], "attributes": [], "deleted": False,
             "sequenceNumber": 0}  # fmt: skip
    key = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.64-26"
    m = mapper_for(key)
    obj = {**m.body(key, json.dumps(block).encode()), "metadata": {"name": "x"}}
    assert m.record(obj) == (key, json.dumps(block, separators=(",", ":"), sort_keys=True).encode())
    akey = "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.64-26"
    am = mapper_for(akey)
    aobj = am.body(akey, b'{"state":"confirmed","deleted":false}')
    assert aobj["spec"] == {"state": "confirmed", "node": "n1", "cidr": "10.0.0.64/26",
                            "deleted": "false"}  # fmt: skip
    assert am.record(aobj) == (akey, b'{"state":"confirmed","deleted":false}')


def test_a_pod_is_an_endpoint_once_annotated() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "web", "namespace": "ns1", "labels": {"app": "w"},
                        "resourceVersion": "7", "annotations": {}},
           "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                    "containers": [{"ports": [{"name": "http", "containerPort": 80}]}]},
           }  # fmt: skip
    key = V3 + "workloadendpoints/ns1/" + workload_endpoint_name("n1", "web")
    m = mapper_for(key)
    assert m.record(pod) is None  # no address yet: no endpoint
    wep = {"spec": {"pod": "web", "ipNetworks": ["10.0.0.65/32", "fd00::5/128"],
                    "containerID": "c1"}}  # fmt: skip
    patch = m.body(key, json.dumps(wep).encode())
    pod["metadata"]["annotations"] = {k: v for k, v in patch["metadata"]["annotations"].items()
                                      if v is not None}  # fmt: skip
    assert pod["metadata"]["annotations"][POD_IPS] == "10.0.0.65,fd00::5"
    got_key, raw = m.record(pod) or ("", b"")
    value = json.loads(raw)
    assert got_key == key
    assert value["spec"]["ipNetworks"] == ["10.0.0.65/32", "fd00::5/128"]
    assert value["spec"]["containerID"] == "c1"
    assert value["spec"]["profiles"] == ["kns.ns1", "ksa.ns1.sa"]
    assert value["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
    assert value["metadata"]["labels"]["app"] == "w"
    assert all(v is None for v in m.removal(key)["metadata"]["annotations"].values())
    assert CONTAINER_ID in m.removal(key)["metadata"]["annotations"]


def test_read_only_records_are_refused_with_the_reason() -> None:
    with pytest.raises(Refused, match="Namespaces"):
        mapper_for(V3 + "profiles/kns.x").body(V3 + "profiles/kns.x", b"{}")
    key = V3 + "networkpolicies/ns/knp.default.x"
    with pytest.raises(Refused, match="Kubernetes NetworkPolicies"):
        mapper_for(key).body(key, b"{}")


def test_a_prefix_finds_every_collection_under_it() -> None:
    plurals = {m.collection.plural for m in mappers_under("/calico/ipam/v2/")}
    assert plurals == {"ipamblocks", "blockaffinities", "ipamhandles", "ipamconfigs"}
    assert {m.collection.plural for m in mappers_under(V3 + "profiles/")} == {
        "namespaces", "serviceaccounts"}  # fmt: skip


def test_the_crd_manifest_defines_every_kind_the_mapping_uses() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests/kdd/crds.yaml").read_text()) if d]
    got = {(d["spec"]["names"]["plural"], d["spec"]["names"]["kind"],
            d["spec"]["scope"] == "Namespaced") for d in docs}  # fmt: skip
    want = set(CRD_KINDS) | {(p, k, False) for p, k in IPAM_KINDS}
    assert got == want
    assert {d["metadata"]["name"] for d in docs} == {
        f"{p}.crd.projectcalico.org" for p, _, _ in want
    }
    rbac = [d for d in yaml.safe_load_all((ROOT / "manifests/kdd/rbac.yaml").read_text()) if d]
    node_rules = next(d for d in rbac if d["kind"] == "ClusterRole"
                      and d["metadata"]["name"] == "calico-node")["rules"]  # fmt: skip
    crd_rule = next(r for r in node_rules if r["apiGroups"] == ["crd.projectcalico.org"])
    assert set(crd_rule["resources"]) == {p for p, _, _ in want}
    ds = [d for d in yaml.safe_load_all((ROOT / "manifests/kdd/calico.yaml").read_text()) if d]
    node = next(d for d in ds if d["kind"] == "DaemonSet")
    env = {
        e["name"]: e.get("value") for e in node["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["DATASTORE_TYPE"] == "kubernetes"
    assert not any(k.startswith("ETCD_") for k in env)
