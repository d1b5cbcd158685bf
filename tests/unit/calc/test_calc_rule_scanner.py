"""RuleScanner and ValidationFilter: model errors reach the graph naming the field and value;
protocol/port/ICMP mapping onto dpapi rules; selector composition; policy types."""

from __future__ import annotations

from typing import Any

import pytest

from calico.calc import rule_scanner, selectors, validation
from calico.dpapi import messages as m
from calico.model import rules, values


def scan(
    rule: dict[str, object], ns: str | None = "ns1"
) -> tuple[m.Rule, list[rule_scanner.IPSetSpec]]:
    return rule_scanner.scan_rule(rules.rule(rule, "spec.ingress[0]"), namespace=ns)


def entity(raw: dict[str, object]) -> values.EntityRule:
    return rules.entity_rule(raw, "spec.ingress[0].source", None, None)


def res(kind: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", **meta}, "spec": spec}


def gnp(spec: dict[str, Any]) -> dict[str, Any]:
    return res("GlobalNetworkPolicy", spec)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "Maybe"}, "spec.ingress[0].action: invalid value 'Maybe'"),
        (
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["9:1"]}},
            "spec.ingress[0].destination.ports[0]: invalid port '9:1'",
        ),
        (
            {"action": "Allow", "destination": {"ports": [80]}},
            "spec.ingress[0].destination.ports: ports need protocol",
        ),
        (
            {"action": "Allow", "protocol": "XYZ"},
            "spec.ingress[0].protocol: invalid protocol 'XYZ'",
        ),
        (
            {"action": "Allow", "source": {"nets": ["10.0.0.300/32"]}},
            "spec.ingress[0].source.nets[0]: invalid CIDR '10.0.0.300/32'",
        ),
        (
            {"action": "Allow", "protocol": "TCP", "icmp": {"type": 8}},
            "spec.ingress[0].icmp: ICMP fields need protocol ICMP or ICMPv6, not 'TCP'",
        ),
        (
            {"action": "Allow", "source": {"selector": "a =="}},
            "spec.ingress[0].source.selector: invalid selector",
        ),
    ],
)
def test_rule_errors_name_the_field(rule: dict[str, object], message: str) -> None:
    """The graph sees the model's own error (the one calicoctl prints), without the resource."""
    with pytest.raises(validation.InvalidResource) as err:
        validation.policy(m.PolicyID(None, "x"), gnp({"ingress": [rule]}))
    assert str(err.value).startswith(message)


def test_protocols_ports_icmp() -> None:
    rule, specs = scan(
        {"action": "Allow", "protocol": 132, "destination": {"ports": [80, "1000:2000", "web"]}}
    )
    assert rule.protocol == "sctp"
    assert rule.dst_ports == ("80", "1000-2000")
    assert [s.port_name for s in specs] == ["web"]
    assert specs[0].protocol == "sctp"
    rule, _ = scan({"action": "Deny", "protocol": "ICMPv6", "icmp": {"type": 128, "code": 0}})
    assert (rule.protocol, rule.icmp_type, rule.icmp_code) == ("ipv6-icmp", 128, 0)
    rule, _ = scan({"action": "Allow", "protocol": 47})
    assert rule.protocol == "47"
    rule, _ = scan({"action": "Log", "protocol": "udplite", "notProtocol": "6"})
    assert (rule.action, rule.protocol, rule.not_protocol) == ("log", "udplite", "tcp")
    rule, _ = scan({"action": "Pass", "protocol": "TCP", "source": {"notPorts": ["22:22"]}})
    assert (rule.action, rule.not_src_ports) == ("pass", ("22",))


def test_namespaced_rule_selectors() -> None:
    pos, neg = selectors.rule_selectors(entity({"selector": "app == 'x'"}), namespace="ns1")
    assert str(pos) == 'projectcalico.org/namespace == "ns1" && app == "x"'
    assert neg is None
    pos, _ = selectors.rule_selectors(entity({"nets": ["10.0.0.0/8"]}), namespace="ns1")
    assert pos is None  # nets alone are not limited to the namespace
    pos, _ = selectors.rule_selectors(entity({"namespaceSelector": "team == 'x'"}), namespace="ns1")
    assert str(pos) == 'has(projectcalico.org/namespace) && pcns.team == "x"'
    pos, _ = selectors.rule_selectors(
        entity({"namespaceSelector": "all()", "selector": "a == 'b'"}), namespace=None
    )
    assert str(pos) == 'has(projectcalico.org/namespace) && a == "b"'
    pos, _ = selectors.rule_selectors(
        entity({"serviceAccounts": {"names": ["sa1"]}}), namespace="ns1"
    )
    assert (
        str(pos)
        == 'projectcalico.org/namespace == "ns1" && projectcalico.org/serviceaccount in {"sa1"}'
    )


def test_policy_types_default() -> None:
    pid = m.PolicyID("ns1", "p")

    def np(spec: dict[str, Any]) -> validation.PolicyData:
        return validation.policy(pid, res("NetworkPolicy", spec, namespace="ns1"))

    only_egress = np({"egress": [{"action": "Allow"}]})
    assert (only_egress.ingress, only_egress.egress) == (False, True)
    empty = np({})
    assert (empty.ingress, empty.egress) == (True, False)
    both = np({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})
    assert (both.ingress, both.egress) == (True, True)
    ignored = np({"types": ["Ingress"], "egress": [{"action": "Allow"}]})
    assert (ignored.ingress, ignored.egress, ignored.policy.outbound_rules) == (True, False, ())
    with pytest.raises(validation.InvalidResource, match=r"spec\.types"):
        np({"types": ["Sideways"]})
    with pytest.raises(validation.InvalidResource, match=r"spec\.order"):
        np({"order": "first"})


def test_interface_names_are_checked() -> None:
    wep = res("WorkloadEndpoint", {"node": "n", "interfaceName": 'cali"; drop'}, namespace="ns")
    with pytest.raises(validation.InvalidResource, match=r"spec\.interfaceName"):
        validation.workload_endpoint("wep:ns/x", "ns", wep)
    hep = res("HostEndpoint", {"node": "n", "interfaceName": "x" * 16})
    with pytest.raises(validation.InvalidResource, match=r"spec\.interfaceName"):
        validation.host_endpoint("hep:x", hep)
    ok = validation.workload_endpoint(
        "wep:ns/x", "ns", res("WorkloadEndpoint", {"interfaceName": "cali12345678901"})
    )
    assert ok.iface == "cali12345678901"


@pytest.mark.parametrize(
    "spec", [{"node": "n", "interfaceName": "*"}, {"node": "n", "expectedIPs": ["10.0.0.1"]}]
)
def test_unsupported_host_endpoints_are_absent(spec: dict[str, Any]) -> None:
    """Valid in the model, not supported by this agent: absent, with the reason."""
    with pytest.raises(validation.InvalidResource, match=r"spec\.interfaceName: .* not supported"):
        validation.host_endpoint("hep:x", res("HostEndpoint", spec))
