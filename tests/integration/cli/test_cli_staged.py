"""``calicoctl`` and staged policies against a real etcd: create/get, bad input rejected as for
the real kinds (nothing written), ``policy promote`` in one transaction (Set, Delete, the
Kubernetes kind), ``policy impact`` and ``flows`` over flow records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico.datastore.etcd import EtcdClient
from tests.integration.cli.test_cli_resources import RESOURCES, Ctl, ctl, shared_etcd, store

__all__ = ["ctl", "shared_etcd", "store"]

pytestmark = [pytest.mark.etcd]


def snp(name: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "StagedNetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": {"team": "a"}},
            "spec": spec}  # fmt: skip


def docs(*objs: object) -> str:
    return yaml.safe_dump_all(objs)


def keys(store: EtcdClient) -> list[str]:
    return sorted(kv.key for kv in store.get_prefix(RESOURCES)[0])


DENY_80: dict[str, Any] = {
    "selector": "app == 'db'",
    "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [80]}}],
}


def test_staged_kinds_are_stored_and_listed(ctl: Ctl, store: EtcdClient) -> None:
    sknp = {"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]}}  # fmt: skip
    sgnp = {"apiVersion": "projectcalico.org/v3", "kind": "StagedGlobalNetworkPolicy",
            "metadata": {"name": "old"}, "spec": {"stagedAction": "Delete"}}  # fmt: skip
    ctl.ok("apply", "-f", "-", stdin=docs(snp("deny-80", **DENY_80), sknp, sgnp))
    stored = json.loads(ctl.ok("get", "snp", "deny-80", "-n", "shop", "-o", "json"))
    assert stored["spec"]["stagedAction"] == "Set"  # the default, stored as Calico does
    assert stored["spec"]["types"] == ["Ingress"]
    rows = [ln.split() for ln in ctl.ok("get", "stagednetworkpolicies", "-A").splitlines()]
    assert rows == [["NAMESPACE", "NAME", "TIER"], ["shop", "deny-80", "default"]]
    assert json.loads(ctl.ok("get", "sgnp", "old", "-o", "json"))["spec"] == {
        "stagedAction": "Delete"
    }
    assert "stagedkubernetesnetworkpolicies/shop/db" in "\n".join(keys(store))


BAD_PORT = snp("x", ingress=[{"action": "Allow", "protocol": "TCP",
                              "destination": {"ports": [70000]}}])  # fmt: skip
BAD_K8S = {"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
           "metadata": {"name": "k", "namespace": "shop"},
           "spec": {"ingress": [{"ports": [{"port": 0}]}]}}  # fmt: skip
BAD = [
    (BAD_PORT, "StagedNetworkPolicy(shop/x): spec.ingress[0].destination.ports[0]: invalid port"),
    (snp("x", stagedAction="Remove"), "spec.stagedAction: invalid value 'Remove'"),
    (
        snp("x", stagedAction="Delete", selector="all()"),
        "spec.selector: Spec fields, except Tier, should all be zero-value",
    ),
    (snp("x", tier="ghost"), "Incorrectly formatted policy name x"),
    (snp("ghost.x", tier="ghost"), "spec.tier: tier 'ghost' does not exist"),
    (BAD_K8S, "spec.ingress[0].ports[0].port: 0 is out of range 1-65535"),
]


@pytest.mark.parametrize(("doc", "message"), BAD)
def test_bad_staged_policies_are_rejected_like_real_ones(
    ctl: Ctl, store: EtcdClient, doc: dict[str, Any], message: str
) -> None:
    err = ctl.fails("apply", "-f", "-", stdin=docs(doc, snp("fine", **DENY_80)))
    assert message in err, err
    assert keys(store) == []  # nothing written, not even the good one


def test_promote_set_is_one_transaction(ctl: Ctl, store: EtcdClient) -> None:
    ctl.ok("apply", "-f", "-", stdin=docs(snp("deny-80", order=5, **DENY_80)))
    before = store.revision()
    out = ctl.ok("policy", "promote", "deny-80", "-n", "shop")
    assert "Successfully promoted StagedNetworkPolicy(shop/deny-80)" in out
    assert "created NetworkPolicy(shop/deny-80)" in out
    assert store.revision() == before + 1  # the put and the delete: one revision
    assert keys(store) == [RESOURCES + "v3/projectcalico.org/networkpolicies/shop/deny-80"]
    np = json.loads(ctl.ok("get", "networkpolicy", "deny-80", "-n", "shop", "-o", "json"))
    assert np["spec"]["order"] == 5
    assert np["spec"]["ingress"] == DENY_80["ingress"]
    assert "stagedAction" not in np["spec"]
    assert np["metadata"]["labels"] == {"team": "a"}
    assert np["metadata"]["uid"]
    # Staging a change to it and promoting replaces it, keeping its identity.
    ctl.ok("apply", "-f", "-", stdin=docs(snp("deny-80", order=7, **DENY_80)))
    out = ctl.ok("policy", "promote", "deny-80", "-n", "shop")
    assert "replaced NetworkPolicy(shop/deny-80)" in out
    again = json.loads(ctl.ok("get", "networkpolicy", "deny-80", "-n", "shop", "-o", "json"))
    assert again["spec"]["order"] == 7
    assert again["metadata"]["uid"] == np["metadata"]["uid"]


def test_promote_delete_and_kubernetes_kind(ctl: Ctl, store: EtcdClient) -> None:
    gnp = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": "old"}, "spec": {"selector": "all()"}}  # fmt: skip
    sgnp = {"apiVersion": "projectcalico.org/v3", "kind": "StagedGlobalNetworkPolicy",
            "metadata": {"name": "old"}, "spec": {"stagedAction": "Delete"}}  # fmt: skip
    sknp = {"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                     "ingress": [{"ports": [{"port": 5432}]}]}}  # fmt: skip
    ctl.ok("apply", "-f", "-", stdin=docs(gnp, sgnp, sknp))
    assert "deleted GlobalNetworkPolicy old" in ctl.ok("policy", "promote", "old")
    out = ctl.ok("policy", "promote", "db", "-n", "shop")
    assert "created NetworkPolicy(shop/knp.default.db)" in out
    assert keys(store) == [RESOURCES + "v3/projectcalico.org/networkpolicies/shop/knp.default.db"]
    knp = json.loads(ctl.ok("get", "networkpolicy", "knp.default.db", "-n", "shop", "-o", "json"))
    assert knp["spec"]["ingress"][0]["destination"] == {"ports": [5432]}


def test_promote_and_impact_bad_input(ctl: Ctl, store: EtcdClient) -> None:
    assert "no staged policy named nope" in ctl.fails("policy", "promote", "nope")
    assert "no staged policy named nope" in ctl.fails("policy", "impact", "nope", "--flows", "-")
    # Its tier deleted under it (bypassing calicoctl): refused, nothing changed.
    tier = {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t"},
            "spec": {"order": 1}}  # fmt: skip
    ctl.ok("apply", "-f", "-", stdin=docs(tier, snp("t.p", tier="t", **DENY_80)))
    store.delete(RESOURCES + "v3/projectcalico.org/tiers/t")
    before = keys(store)
    assert "tier 't' does not exist" in ctl.fails("policy", "promote", "t.p", "-n", "shop")
    assert keys(store) == before


def record(action: str, staged: str | None, src: str, port: int, **kw: Any) -> dict[str, Any]:
    return {
        "start_time": 1.0, "end_time": 2.0, "host": "node1", "reporter": "dst",
        "action": action, "proto": "tcp", "source_ip": "10.0.0.1", "source_port": kw.get("sp", 1),
        "source_name": src, "source_namespace": "dev", "source_type": "wep",
        "dest_ip": "10.0.0.2", "dest_port": port, "dest_name": "db", "dest_namespace": "shop",
        "dest_type": "wep", "packets": 2, "bytes": 120,
        "policy": {"by": "rule", "tier": "default", "policy": "shop/x", "rule": 0},
        "staged": None if staged is None else {
            "action": staged, "policies": ["shop/staged:deny-80"],
            "point": {"by": "rule", "tier": "default", "policy": "shop/staged:deny-80", "rule": 0}},
    }  # fmt: skip


def test_impact_and_flows_over_records(ctl: Ctl, store: EtcdClient, tmp_path: Path) -> None:
    ctl.ok("apply", "-f", "-", stdin=docs(snp("deny-80", **DENY_80)))
    recs = [
        record("allow", "deny", "tester", 80, sp=1),
        record("allow", "deny", "tester", 80, sp=2),
        record("allow", "allow", "frontend", 80),
        record("deny", "allow", "frontend", 443),
        record("deny", None, "other", 22),
    ]
    path = tmp_path / "flows.log"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = json.loads(
        ctl.ok(
            "policy",
            "impact",
            "deny-80",
            "-n",
            "shop",
            "--flows",
            str(path),
            "--since",
            "1000000000h",
            "-o",
            "json",
        )
    )
    assert out["allowed_to_denied"]["flows"] == 2
    assert out["allowed_to_denied"]["packets"] == 4
    assert out["allowed_to_denied"]["endpoints"][0]["source"] == "dev/tester"
    assert out["denied_to_allowed"]["flows"] == 1
    assert out["unchanged_flows"] == 1
    text = ctl.ok("policy", "impact", "deny-80", "-n", "shop", "--flows", str(path), "--since",
                  "1000000000h")  # fmt: skip
    assert "allowed -> denied: 2 flows, 4 packets" in text
    assert "dev/tester -> shop/db tcp/80" in text
    # calicoctl flows reads the same file
    table = ctl.ok("flows", "--file", str(path), "--action", "deny")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["TIME", "NODE", "REPORTER", "ACTION"]
    assert len(lines) == 3
    assert all(" deny " in ln for ln in lines[1:])
    assert "default/shop/x rule 0" in table
    as_json = [json.loads(ln) for ln in ctl.ok("flows", "--file", str(tmp_path), "-o", "json")
               .splitlines()]  # fmt: skip
    assert as_json == recs
    assert "--since: invalid duration" in ctl.fails("flows", "--file", str(path), "--since", "x")
    assert "no flow logs at" in ctl.fails("flows", "--file", str(tmp_path / "none.log"))
    assert "this is node" in ctl.fails("flows", "--node", "elsewhere")
