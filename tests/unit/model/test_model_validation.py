"""Table-driven tests for calico.model.validation: defaults, normalization, and errors that name
the resource, the field and the offending value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from calico.model import validation
from calico.model.validation import ValidationError, validate


def res(
    kind: str, name: str = "x", spec: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec or {},
    }


def rule(**kw: Any) -> dict[str, Any]:
    return {"action": "Allow", **kw}


def gnp(**spec: Any) -> dict[str, Any]:
    return res("GlobalNetworkPolicy", "allow-dns", spec)


# ---- defaults and normalization ------------------------------------------------------------


def test_ippool_defaults() -> None:
    out = validate(res("IPPool", "p", {"cidr": "10.1.2.3/16"}))
    assert out["spec"] == {
        "cidr": "10.1.0.0/16",
        "blockSize": 26,
        "ipipMode": "Never",
        "vxlanMode": "Never",
        "natOutgoing": False,
        "disabled": False,
        "nodeSelector": "all()",
    }


def test_ippool_v6_default_block_size() -> None:
    assert validate(res("IPPool", "p", {"cidr": "fd00::/64"}))["spec"]["blockSize"] == 122


def test_ippool_keeps_given_values() -> None:
    spec = {"cidr": "10.0.0.0/8", "blockSize": 24, "ipipMode": "CrossSubnet", "natOutgoing": True}
    out = validate(res("IPPool", "p", spec))["spec"]
    assert (out["blockSize"], out["ipipMode"], out["natOutgoing"]) == (24, "CrossSubnet", True)


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, ["Ingress"]),
        ({"ingress": [rule()]}, ["Ingress"]),
        ({"egress": [rule()]}, ["Egress"]),
        ({"ingress": [rule()], "egress": [rule()]}, ["Ingress", "Egress"]),
        ({"types": ["Egress"]}, ["Egress"]),
        ({"types": ["Ingress"], "egress": [rule()]}, ["Ingress"]),  # egress rules kept, ignored
    ],
)
def test_policy_types_inferred(spec: dict[str, Any], types: list[str]) -> None:
    assert validate(gnp(**spec))["spec"]["types"] == types
    np = res("NetworkPolicy", "np", spec)
    assert validate(np)["spec"]["types"] == types


def test_order_optional_and_float_kept() -> None:
    assert "order" not in validate(gnp())["spec"]
    assert validate(gnp(order=10.5))["spec"]["order"] == 10.5


def test_namespaced_kind_defaults_namespace() -> None:
    assert validate(res("NetworkPolicy", "np"))["metadata"]["namespace"] == "default"
    assert validate(res("NetworkSet", "ns", namespace="prod"))["metadata"]["namespace"] == "prod"


def test_validate_does_not_mutate_input() -> None:
    obj = res("IPPool", "p", {"cidr": "10.1.2.3/16"})
    before = copy.deepcopy(obj)
    validate(obj)
    assert obj == before


def test_as_number_dotted_form_and_protocol_case() -> None:
    out = validate(res("BGPPeer", "peer", {"peerIP": "10.0.0.9", "asNumber": "1.10"}))
    assert out["spec"]["asNumber"] == 65546
    out = validate(gnp(ingress=[rule(protocol="tcp", destination={"ports": [80, "1000:2000"]})]))
    assert out["spec"]["ingress"][0]["protocol"] == "TCP"


def test_nets_normalized() -> None:
    out = validate(res("GlobalNetworkSet", "gns", {"nets": ["10.0.0.5", "10.1.2.3/16"]}))
    assert out["spec"]["nets"] == ["10.0.0.5/32", "10.1.0.0/16"]


VALID = [
    res("Node", "node1", {"bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 65001}}),
    res("Node", "node2", {"bgp": {"ipv4Address": "10.0.0.2", "ipv6Address": "fd00::2/64"}}),
    res("BGPPeer", "rr", {"peerIP": "10.0.0.9", "asNumber": 64512, "node": "node1"}),
    res("BGPPeer", "sel", {"peerSelector": "rr == 'true'", "nodeSelector": "all()"}),
    res("BGPConfiguration", "default", {"logSeverityScreen": "Info", "asNumber": 64513,
                                        "nodeToNodeMeshEnabled": False}),
    res("FelixConfiguration", "default", {
        "logSeverityScreen": "Warning", "defaultEndpointToHostAction": "Accept",
        "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}],
        "iptablesRefreshInterval": "90s", "routeRefreshInterval": "1m30s",
        "healthEnabled": True, "healthPort": 9099, "prometheusMetricsEnabled": True,
        "prometheusMetricsPort": 9091, "reportingInterval": "0"}),
    res("ClusterInformation", "default", {"clusterGUID": "abc", "calicoVersion": "v3.3.0",
                                          "clusterType": "k8s,bgp", "datastoreReady": True}),
    res("WorkloadEndpoint", "node1-k8s-web--7d9f-eth0", {
        "orchestrator": "k8s", "node": "node1", "pod": "web-7d9f", "endpoint": "eth0",
        "interfaceName": "cali12345678901", "ipNetworks": ["192.168.1.5/32"],
        "mac": "ee:ee:ee:ee:ee:ee", "profiles": ["kns.default"],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}, namespace="default"),
    res("HostEndpoint", "h1", {"node": "node1", "interfaceName": "eth0",
                               "expectedIPs": ["10.0.0.1"], "profiles": ["p1"]}),
    res("HostEndpoint", "h2", {"node": "node1", "expectedIPs": ["10.0.0.1"]}),
    res("Profile", "kns.default", {"ingress": [rule()], "egress": [rule()],
                                   "labelsToApply": {"pcns.name": "default"}}),
    res("GlobalNetworkPolicy", "icmp", {"ingress": [rule(protocol="ICMP",
                                                         icmp={"type": 8, "code": 0})]}),
    res("GlobalNetworkPolicy", "pdnat", {"preDNAT": True, "applyOnForward": True,
                                         "ingress": [rule(action="Deny")]}),
    res("NetworkPolicy", "np", {"selector": "role == 'db'", "ingress": [rule(
        source={"selector": "role == 'web'", "namespaceSelector": "has(x)",
                "nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]},
        protocol="TCP", destination={"ports": ["http", 5432], "notPorts": [1]})]}),
    res("GlobalNetworkPolicy", "named", {"egress": [rule(protocol=17, destination={
        "ports": [53]}), rule(action="Log"), rule(action="Pass")]}),
]  # fmt: skip


@pytest.mark.parametrize("obj", VALID, ids=lambda o: f"{o['kind']}-{o['metadata']['name']}")
def test_valid_resources(obj: dict[str, Any]) -> None:
    out = validate(obj)
    assert out["kind"] == obj["kind"]
    assert validate(out) == out  # normalizing twice changes nothing


# ---- errors: each names the resource, the field and the value ------------------------------

INVALID: list[tuple[dict[str, Any], str, str]] = [
    # (resource, field path, text that must appear: usually the bad value)
    (gnp(ingress=[rule(protocol="TCP", destination={"ports": [53, 70000]})]),
     "spec.ingress[0].destination.ports[1]", "70000"),
    (gnp(ingress=[rule(protocol="TCP", destination={"ports": ["5:3"]})]),
     "spec.ingress[0].destination.ports[0]", "5:3"),
    (gnp(ingress=[rule(protocol="TCP", destination={"ports": ["Bad_Name"]})]),
     "spec.ingress[0].destination.ports[0]", "Bad_Name"),
    (gnp(ingress=[rule(protocol="ICMP", destination={"ports": [80]})]),
     "spec.ingress[0].destination.ports", "ICMP"),
    (gnp(ingress=[rule(destination={"ports": [80]})]),
     "spec.ingress[0].destination.ports", "None"),
    (gnp(egress=[rule(protocol="TCPX")]), "spec.egress[0].protocol", "TCPX"),
    (gnp(egress=[rule(protocol=256)]), "spec.egress[0].protocol", "256"),
    (gnp(egress=[rule(action="allow")]), "spec.egress[0].action", "allow"),
    (gnp(egress=[{"protocol": "TCP"}]), "spec.egress[0].action", "required"),
    (gnp(ingress=[rule(protocol="ICMP", icmp={"type": 255})]), "spec.ingress[0].icmp.type", "255"),
    (gnp(ingress=[rule(protocol="ICMP", icmp={"type": 8, "code": 256})]),
     "spec.ingress[0].icmp.code", "256"),
    (gnp(ingress=[rule(protocol="ICMP", icmp={"code": 1})]), "spec.ingress[0].icmp.code", "type"),
    (gnp(ingress=[rule(protocol="TCP", icmp={"type": 8})]), "spec.ingress[0].icmp", "TCP"),
    (gnp(ingress=[rule(source={"nets": ["10.0.0.0/33"]})]),
     "spec.ingress[0].source.nets[0]", "10.0.0.0/33"),
    (gnp(ingress=[rule(ipVersion=6, source={"nets": ["10.0.0.0/8"]})]),
     "spec.ingress[0].source.nets[0]", "10.0.0.0/8"),
    (gnp(ingress=[rule(source={"selector": "a == "})]), "spec.ingress[0].source.selector", "a =="),
    (gnp(ingress=[rule(source={"bogus": 1})]), "spec.ingress[0].source.bogus", "bogus"),
    (gnp(selector="has(", ingress=[]), "spec.selector", "has("),
    (gnp(types=["Ingres"]), "spec.types[0]", "Ingres"),
    (gnp(types=["Ingress", "Ingress"]), "spec.types", "duplicate"),
    (gnp(order="first"), "spec.order", "first"),
    (gnp(preDNAT=True, doNotTrack=True, applyOnForward=True), "spec.preDNAT", "doNotTrack"),
    (gnp(doNotTrack=True), "spec.applyOnForward", "doNotTrack"),
    (gnp(preDNAT=True, applyOnForward=True, egress=[rule()]), "spec.egress", "preDNAT"),
    (gnp(ingressRules=[]), "spec.ingressRules", "ingressRules"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/40"}), "spec.cidr", "10.0.0.0/40"),
    (res("IPPool", "p", {}), "spec.cidr", "None"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "blockSize": 19}), "spec.blockSize", "19"),
    (res("IPPool", "p", {"cidr": "fd00::/64", "blockSize": 26}), "spec.blockSize", "26"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/28", "blockSize": 26}), "spec.cidr", "10.0.0.0/28"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "ipipMode": "Sometimes"}), "spec.ipipMode",
     "Sometimes"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "vxlanMode": "always"}), "spec.vxlanMode",
     "always"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "Always"}),
     "spec.vxlanMode", "both"),
    (res("IPPool", "p", {"cidr": "fd00::/64", "ipipMode": "Always"}), "spec.ipipMode", "IPv6"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "disabled": "yes"}), "spec.disabled", "yes"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "nodeSelector": "x ="}), "spec.nodeSelector",
     "x ="),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16", "natoutgoing": True}), "spec.natoutgoing",
     "natoutgoing"),
    (res("IPPool", "Bad_Name", {"cidr": "10.0.0.0/16"}), "metadata.name", "Bad_Name"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16"}, namespace="x"), "metadata.namespace", "x"),
    (res("IPPool", "p", {"cidr": "10.0.0.0/16"}, labels={"a": "b c"}), "metadata.labels[a]",
     "b c"),
    (res("NetworkPolicy", "np", {}, namespace="Prod"), "metadata.namespace", "Prod"),
    (res("Node", "n", {"bgp": {"ipv4Address": "10.0.0.300/24"}}), "spec.bgp.ipv4Address",
     "10.0.0.300/24"),
    (res("Node", "n", {"bgp": {"ipv4Address": "fd00::1/64"}}), "spec.bgp.ipv4Address",
     "fd00::1/64"),
    (res("Node", "n", {"bgp": {"asNumber": -1}}), "spec.bgp.asNumber", "-1"),
    (res("Node", "n", {"bgp": {"asNumber": "65536.1"}}), "spec.bgp.asNumber", "65536.1"),
    (res("BGPPeer", "b", {"peerIP": "10.0.0.1.2", "asNumber": 1}), "spec.peerIP", "10.0.0.1.2"),
    (res("BGPPeer", "b", {"peerIP": "10.0.0.1"}), "spec.asNumber", "required"),
    (res("BGPPeer", "b", {"asNumber": 1}), "spec.peerIP", "required"),
    (res("BGPPeer", "b", {"peerIP": "10.0.0.1", "asNumber": 1, "node": "n", "nodeSelector": "a"}),
     "spec.nodeSelector", "node"),
    (res("BGPPeer", "b", {"peerSelector": "a =="}), "spec.peerSelector", "a =="),
    (res("BGPConfiguration", "default", {"logSeverityScreen": "Loud"}),
     "spec.logSeverityScreen", "Loud"),
    (res("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": "no"}),
     "spec.nodeToNodeMeshEnabled", "no"),
    (res("BGPConfiguration", "node.n1", {"asNumber": 65000}), "spec.asNumber", "default"),
    (res("FelixConfiguration", "default", {"defaultEndpointToHostAction": "Reject"}),
     "spec.defaultEndpointToHostAction", "Reject"),
    (res("FelixConfiguration", "default", {"iptablesRefreshInterval": "90"}),
     "spec.iptablesRefreshInterval", "90"),
    (res("FelixConfiguration", "default", {"failsafeInboundHostPorts": [{"protocol": "TCP",
                                                                         "port": 70000}]}),
     "spec.failsafeInboundHostPorts[0].port", "70000"),
    (res("FelixConfiguration", "default", {"failsafeOutboundHostPorts": [{"protocol": "ICMP",
                                                                          "port": 1}]}),
     "spec.failsafeOutboundHostPorts[0].protocol", "ICMP"),
    (res("FelixConfiguration", "default", {"healthPort": "9099"}), "spec.healthPort", "9099"),
    (res("FelixConfiguration", "default", {"prometheusMetricsEnabled": 1}),
     "spec.prometheusMetricsEnabled", "1"),
    (res("FelixConfiguration", "default", {"logSeverityScreeen": "Info"}),
     "spec.logSeverityScreeen", "logSeverityScreeen"),
    (res("ClusterInformation", "other", {}), "metadata.name", "other"),
    (res("HostEndpoint", "h", {"interfaceName": "eth0"}), "spec.node", "None"),
    (res("HostEndpoint", "h", {"node": "n"}), "spec.interfaceName", "expectedIPs"),
    (res("HostEndpoint", "h", {"node": "n", "expectedIPs": ["10.0.0.256"]}),
     "spec.expectedIPs[0]", "10.0.0.256"),
    (res("HostEndpoint", "h", {"node": "n", "interfaceName": "eth0",
                               "ports": [{"name": "web", "protocol": "TCP", "port": 0}]}),
     "spec.ports[0].port", "0"),
    (res("WorkloadEndpoint", "w", {"ipNetworks": ["192.168.1.300/32"]}), "spec.ipNetworks[0]",
     "192.168.1.300/32"),
    (res("WorkloadEndpoint", "w", {"mac": "ee:ee"}), "spec.mac", "ee:ee"),
    (res("WorkloadEndpoint", "w", {"interfaceName": "a-very-long-interface-name"}),
     "spec.interfaceName", "a-very-long-interface-name"),
    (res("Profile", "p", {"labelsToApply": {"bad key!": "v"}}), "spec.labelsToApply[bad key!]",
     "bad key!"),
    (res("GlobalNetworkSet", "g", {"nets": ["nope"]}), "spec.nets[0]", "nope"),
    ({"apiVersion": "v1", "kind": "IPPool", "metadata": {"name": "p"}}, "apiVersion", "v1"),
    ({"kind": "Pod", "metadata": {"name": "p"}}, "kind", "Pod"),
    ({"kind": "ippool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16"}}, "kind",
     "ippool"),
    ({"kind": "IPPool", "metadata": {}}, "metadata.name", "None"),
    ({"kind": "IPPool", "metadata": {"name": "p"}, "spec": [1]}, "spec", "[1]"),
    ({"kind": "IPPool", "metadata": {"name": "p"}, "spce": {}}, "spce", "spce"),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "field", "value"), INVALID, ids=lambda v: str(v)[:40])
def test_invalid_resources_name_field_and_value(
    obj: dict[str, Any], field: str, value: str
) -> None:
    with pytest.raises(ValidationError) as info:
        validate(obj)
    msg = str(info.value)
    assert msg.startswith(validation.describe(obj) + ": "), msg
    assert f" {field}: " in msg, msg
    assert value in msg, msg
    assert info.value.field == field


def test_message_format_matches_the_documented_example() -> None:
    obj = gnp(ingress=[rule(protocol="TCP", destination={"ports": [53, "70000"]})])
    with pytest.raises(ValidationError) as info:
        validate(obj)
    assert str(info.value) == (
        "GlobalNetworkPolicy(allow-dns): spec.ingress[0].destination.ports[1]: invalid port '70000'"
    )


def test_namespaced_resource_is_described_with_its_namespace() -> None:
    obj = res("NetworkPolicy", "np", {"order": "x"}, namespace="prod")
    with pytest.raises(ValidationError, match=r"^NetworkPolicy\(prod/np\): spec.order: "):
        validate(obj)


def test_not_a_mapping() -> None:
    with pytest.raises(ValidationError, match="must be a mapping"):
        validate(["not", "a", "dict"])  # type: ignore[arg-type]


def test_every_felix_parameter_the_agent_reads_is_a_valid_field() -> None:
    """A FelixConfiguration field the agent reads must not be rejected as unknown here."""
    agent_config = pytest.importorskip("calico.agent.config")
    from calico.model import felixconfig

    env_only = {"felixHostname"}  # FELIX_FELIXHOSTNAME: not a FelixConfiguration field in Calico
    fields = {p.field for p in agent_config.PARAMS} - env_only
    assert fields <= set(felixconfig.FIELDS), fields - set(felixconfig.FIELDS)
