"""RuleScanner: field-naming errors, protocol/port/ICMP conversion, selector composition."""

from __future__ import annotations

import pytest

from calico.calc import rule_scanner, selectors, validation
from calico.dpapi import messages as m


def scan(
    rule: dict[str, object], ns: str | None = "ns1"
) -> tuple[m.Rule, list[rule_scanner.IPSetSpec]]:
    return rule_scanner.scan_rule(rule, "spec.ingress[0]", namespace=ns)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "Maybe"}, "spec.ingress[0].action: 'Maybe'"),
        (
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["9:1"]}},
            "spec.ingress[0].destination.ports[0]: '9:1' is not a port range",
        ),
        ({"action": "Allow", "destination": {"ports": [80]}}, "ports need protocol"),
        (
            {"action": "Allow", "protocol": "XYZ"},
            "spec.ingress[0].protocol: unknown protocol 'XYZ'",
        ),
        (
            {"action": "Allow", "source": {"nets": ["10.0.0.300/32"]}},
            "spec.ingress[0].source.nets[0]: '10.0.0.300/32' is not a CIDR",
        ),
        ({"action": "Allow", "protocol": "TCP", "icmp": {"type": 8}}, "needs protocol ICMP"),
        (
            {"action": "Allow", "source": {"selector": "a =="}},
            "spec.ingress[0].source: bad selector",
        ),
    ],
)
def test_rule_errors_name_the_field(rule: dict[str, object], message: str) -> None:
    with pytest.raises(
        rule_scanner.RuleError,
        match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\("),
    ):
        scan(rule)


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


def test_namespaced_rule_selectors() -> None:
    pos, neg = selectors.rule_selectors({"selector": "app == 'x'"}, namespace="ns1")
    assert str(pos) == 'projectcalico.org/namespace == "ns1" && app == "x"'
    assert neg is None
    pos, _ = selectors.rule_selectors({"nets": ["10.0.0.0/8"]}, namespace="ns1")
    assert pos is None  # nets alone are not limited to the namespace
    pos, _ = selectors.rule_selectors({"namespaceSelector": "team == 'x'"}, namespace="ns1")
    assert str(pos) == 'has(projectcalico.org/namespace) && pcns.team == "x"'
    pos, _ = selectors.rule_selectors(
        {"namespaceSelector": "all()", "selector": "a == 'b'"}, namespace=None
    )
    assert str(pos) == 'has(projectcalico.org/namespace) && a == "b"'
    pos, _ = selectors.rule_selectors({"serviceAccounts": {"names": ["sa1"]}}, namespace="ns1")
    assert (
        str(pos)
        == 'projectcalico.org/namespace == "ns1" && projectcalico.org/serviceaccount in {"sa1"}'
    )


def test_policy_types_default() -> None:
    pid = m.PolicyID("ns1", "p")
    only_egress = validation.policy(pid, {"spec": {"egress": [{"action": "Allow"}]}})
    assert (only_egress.ingress, only_egress.egress) == (False, True)
    empty = validation.policy(pid, {"spec": {}})
    assert (empty.ingress, empty.egress) == (True, False)
    both = validation.policy(
        pid, {"spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}
    )
    assert (both.ingress, both.egress) == (True, True)
    with pytest.raises(validation.InvalidResource, match=r"spec\.types"):
        validation.policy(pid, {"spec": {"types": ["Sideways"]}})
    with pytest.raises(validation.InvalidResource, match=r"spec\.order"):
        validation.policy(pid, {"spec": {"order": "first"}})


def test_interface_names_are_checked() -> None:
    bad = {"spec": {"node": "n", "interfaceName": 'cali"; drop'}}
    with pytest.raises(validation.InvalidResource, match=r"spec\.interfaceName"):
        validation.workload_endpoint("wep:ns/x", "ns", bad)
    with pytest.raises(validation.InvalidResource, match=r"spec\.interfaceName"):
        validation.host_endpoint("hep:x", {"spec": {"interfaceName": "x" * 16}})
    ok = validation.workload_endpoint(
        "wep:ns/x", "ns", {"spec": {"interfaceName": "cali12345678901"}}
    )
    assert ok.iface == "cali12345678901"
