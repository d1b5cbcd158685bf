"""calico.cli.printers: calicoctl's table columns per kind, YAML/JSON list shapes."""

from __future__ import annotations

import json

import pytest
import yaml

from calico.cli import printers
from calico.model import kinds


def pool(name: str, cidr: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "nodeSelector": "all()", "ipipMode": "Never", "vxlanMode": "Never",
                 "natOutgoing": False, "disabled": False, **spec},
    }  # fmt: skip


def test_ippool_ps_and_wide_tables() -> None:
    pools = [pool("default-ipv4-ippool", "192.168.0.0/16", natOutgoing=True), pool("p2", "10/8")]
    assert printers.table("IPPool", pools) == (
        "NAME                  CIDR             SELECTOR\n"
        "default-ipv4-ippool   192.168.0.0/16   all()\n"
        "p2                    10/8             all()\n"
    )
    wide = printers.table("IPPool", pools, wide=True).splitlines()
    assert wide[0].split() == ["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED",
                               "SELECTOR"]  # fmt: skip
    assert wide[1].split() == ["default-ipv4-ippool", "192.168.0.0/16", "true", "Never", "Never",
                               "false", "all()"]  # fmt: skip


def test_node_wide_shows_address_and_as_with_default_in_parentheses() -> None:
    nodes = [
        {"kind": "Node", "metadata": {"name": "n1"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 65001}}},
        {"kind": "Node", "metadata": {"name": "n2"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.2/24"}}},
    ]  # fmt: skip
    out = printers.table("Node", nodes, wide=True, default_asn=lambda: "64513").splitlines()
    assert out[0].split() == ["NAME", "ASN", "IPV4", "IPV6"]
    assert out[1].split() == ["n1", "65001", "10.0.0.1/24"]
    assert out[2].split() == ["n2", "(64513)", "10.0.0.2/24"]
    assert printers.table("Node", nodes).splitlines() == ["NAME", "n1", "n2"]


def test_every_kind_has_ps_and_wide_columns() -> None:
    cols = printers.columns()
    for name in kinds.KINDS:
        ps, wide = printers.HEADINGS[name]
        assert set(ps) <= set(cols[name]), name
        assert set(wide) <= set(cols[name]), name
        assert printers.table(name, []).strip()  # headings even when empty


def test_custom_columns_and_unknown_column() -> None:
    out = printers.table("IPPool", [pool("a", "10.0.0.0/8")], custom=["CIDR", "NAME"])
    assert out.splitlines()[1].split() == ["10.0.0.0/8", "a"]
    with pytest.raises(ValueError, match="unknown column 'BOGUS'"):
        printers.table("IPPool", [], custom=["BOGUS"])


def test_bgp_peer_node_column_defaults_to_global() -> None:
    peer = {"kind": "BGPPeer", "metadata": {"name": "p"},
            "spec": {"peerIP": "10.0.0.9", "asNumber": 64512}}  # fmt: skip
    assert printers.table("BGPPeer", [peer]).splitlines()[1].split() == [
        "p", "10.0.0.9", "(global)", "64512"]  # fmt: skip


def test_list_shapes_yaml_and_json() -> None:
    items = [pool("a", "10.0.0.0/8")]
    typed = printers.as_list(items, "IPPool")
    assert typed["kind"] == "IPPoolList"
    assert typed["apiVersion"] == "projectcalico.org/v3"
    assert printers.as_list(items)["kind"] == "List"
    assert yaml.safe_load(printers.to_yaml(typed))["items"] == items
    assert json.loads(printers.to_json(typed))["items"] == items
    text = printers.to_yaml(items[0])
    assert text.index("apiVersion") < text.index("kind") < text.index("metadata") < text.index(
        "spec")  # fmt: skip
