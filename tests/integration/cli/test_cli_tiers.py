"""``calicoctl`` and tiers against a real etcd: create/apply/get/delete tier, policies in tiers,
and every kind of bad input (a clear error naming the field and value, exit 1, nothing written)."""

from __future__ import annotations

import json

import pytest
import yaml

from calico.datastore.client import BUILT_IN_TIERS, Client, NotFound, NotSupported
from calico.datastore.etcd import EtcdClient
from calico.model import tiers
from tests.integration.cli.test_cli_resources import RESOURCES, Ctl, ctl, shared_etcd, store

__all__ = ["ctl", "shared_etcd", "store"]  # the fixtures, shared with test_cli_resources

TIER = {"apiVersion": "projectcalico.org/v3", "kind": "Tier",
        "metadata": {"name": "platform"}, "spec": {"order": 100}}  # fmt: skip


def gnp(name: str, tier: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"selector": "all()", "ingress": [{"action": "Pass"}]}
    if tier:
        spec["tier"] = tier
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def docs(*objs: object) -> str:
    return yaml.safe_dump_all(objs)


def keys(store: EtcdClient) -> list[str]:
    return sorted(kv.key for kv in store.get_prefix(RESOURCES)[0])


def test_tier_lifecycle(ctl: Ctl, store: EtcdClient) -> None:
    # A tier and a policy in it, in one file, policy first: tiers are written first.
    out = ctl.ok("apply", "-f", "-", stdin=docs(gnp("platform.gate", "platform"), TIER))
    assert out == "Successfully applied 2 resource(s)\n"
    assert "/calico/resources/v3/projectcalico.org/tiers/platform" in keys(store)
    stored = json.loads(ctl.ok("get", "tier", "platform", "-o", "json"))
    assert stored["spec"] == {"order": 100, "defaultAction": "Deny"}  # the default, stored
    ctl.ok("create", "-f", "-", stdin=docs({**TIER, "metadata": {"name": "app"},
                                            "spec": {"defaultAction": "Pass"}}))  # fmt: skip
    rows = [ln.split() for ln in ctl.ok("get", "tiers", "-o", "wide").splitlines()]
    assert rows == [
        ["NAME", "ORDER", "DEFAULTACTION"],
        ["platform", "100", "Deny"],
        ["app", "Pass"],
    ]  # fmt: skip  (by order, unordered last)
    wide = [ln.split() for ln in ctl.ok("get", "gnp", "-o", "wide").splitlines()]
    assert wide == [["NAME", "TIER", "ORDER", "SELECTOR"], ["platform.gate", "platform", "all()"]]
    # A tier holding a policy cannot be deleted; nothing changes.
    before = keys(store)
    err = ctl.fails("delete", "tier", "platform")
    assert "Cannot delete a non-empty tier" in err
    assert "GlobalNetworkPolicy(platform.gate)" in err
    assert keys(store) == before
    # Deleting the policy and the tier in one go works (the policy goes first).
    out = ctl.ok("delete", "-f", "-", stdin=docs(TIER, gnp("platform.gate", "platform")))
    assert out == "Successfully deleted 2 resource(s)\n"
    assert not any("platform" in k for k in keys(store))


def test_built_in_tiers(ctl: Ctl, store: EtcdClient) -> None:
    assert set(BUILT_IN_TIERS) == set(tiers.BUILT_IN)
    for name, (order, action) in tiers.BUILT_IN.items():
        ctl.ok("apply", "-f", "-", stdin=docs({**TIER, "metadata": {"name": name},
               "spec": {"order": order, "defaultAction": action}}))  # fmt: skip
        err = ctl.fails("delete", "tier", name)
        assert f"Cannot delete {name} tier" in err
    assert len([k for k in keys(store) if "/tiers/" in k]) == 3
    # A fixed value cannot change.
    err = ctl.fails("apply", "-f", "-", stdin=docs({**TIER, "metadata": {"name": "default"},
                                                    "spec": {"order": 5}}))  # fmt: skip
    assert "spec.order: default tier order must be 1000000, got 5" in err
    # Policies in built-in tiers need no Tier resource (calico-node makes them).
    ctl.ok("create", "-f", "-", stdin=docs(gnp("kube-admin.x", "kube-admin"), gnp("plain")))


def test_bad_input_writes_nothing(ctl: Ctl, store: EtcdClient) -> None:
    cases = [
        (docs(gnp("ghost.p", "ghost")), "spec.tier: tier 'ghost' does not exist"),
        (
            docs(TIER, gnp("gate", "platform")),
            "metadata.name: Incorrectly formatted policy name gate",
        ),
        (docs({**TIER, "spec": {"order": -1}}), "spec.order: must be a number >= 0, got -1"),
        (docs({**TIER, "spec": {"order": "first"}}), "spec.order: must be a number, got 'first'"),
        (
            docs({**TIER, "spec": {"defaultAction": "Allow"}}),
            "spec.defaultAction: invalid value 'Allow' (want one of Deny, Pass)",
        ),
        (
            docs(TIER, gnp("ok.p", "ok"), gnp("a.b")),
            "Incorrectly formatted policy name a.b",
        ),
    ]
    for verb in ("create", "apply"):
        for text, message in cases:
            err = ctl.fails(verb, "-f", "-", stdin=text)
            assert message in err, (verb, text, err)
            assert keys(store) == [], (verb, text)


def test_client_enforces_the_rules_for_every_writer(ctl: Ctl, store: EtcdClient) -> None:
    client = Client(store)
    with pytest.raises(NotFound, match=r"spec\.tier: tier 'ghost' does not exist"):
        client.create(gnp("ghost.p", "ghost"))
    client.create(TIER)
    client.create(gnp("platform.p", "platform"))
    held = r"Cannot delete a non-empty tier \(it holds GlobalNetworkPolicy\(platform.p\)\)"
    with pytest.raises(NotSupported, match=held):
        client.delete("Tier", "platform")
    with pytest.raises(NotSupported, match="Cannot delete default tier"):
        client.delete("Tier", "default")
    client.delete("GlobalNetworkPolicy", "platform.p")
    client.delete("Tier", "platform")
    assert keys(store) == []
