"""Regression tests for what the fuzz tests (tests/chaos/test_fuzz_*.py) found: each input once
raised an exception nothing expected (a traceback, or CNI code 999), was accepted with a
misleading message, or converted into a resource Calico's validation refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico.cni.netconf import ERR_INVALID_CONFIG, CNIError, parse_conf
from calico.k8s.conversion import ConversionError, convert_network_policy
from calico.model import fields
from calico.model.validation import ValidationError, validate


@pytest.mark.parametrize("port", ["²", "٣", "1:²", "²:5"])
def test_a_non_ascii_digit_is_not_a_port_number(port: str) -> None:
    with pytest.raises(fields.FieldError, match="invalid port"):
        fields.port(port, "spec.ports[0]")


@pytest.mark.parametrize("value", [False, 0, [], {}])
def test_a_falsy_peer_ip_is_named_not_called_missing(value: Any) -> None:
    peer = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p"},
            "spec": {"peerIP": value, "asNumber": 64512}}  # fmt: skip
    with pytest.raises(ValidationError, match=r"spec\.peerIP: invalid IP address") as exc:
        validate(peer)
    assert repr(value) in str(exc.value)


def _np(**changes: Any) -> dict[str, Any]:
    np: dict[str, Any] = {
        "metadata": {"name": "np", "namespace": "default"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]},
    }
    for path, value in changes.items():
        target: Any = np  # a dict or, below a numeric step, a list
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        target[keys[-1]] = value
    return np


def test_an_invalid_kubernetes_name_is_refused_by_the_conversion() -> None:
    with pytest.raises(ConversionError, match=r"metadata.name ':' is not a valid Kubernetes name"):
        convert_network_policy(_np(metadata={"name": ":", "namespace": "default"}))
    with pytest.raises(ConversionError, match=r"metadata.namespace 'Bad_NS'"):
        convert_network_policy(_np(metadata={"name": "np", "namespace": "Bad_NS"}))


def test_ip_block_except_must_be_a_list() -> None:
    np = _np()
    np["spec"]["ingress"] = [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": True}}]}]
    conv = convert_network_policy(np)
    assert "ipBlock.except: must be a list, got True" in str(conv.problems[0])
    validate(conv.policy)


def test_a_port_name_may_start_with_a_digit() -> None:
    np = _np()
    np["spec"]["ingress"] = [{"ports": [{"port": "0a"}, {"port": 80}, {"port": 81}]}]
    conv = convert_network_policy(np)
    assert not conv.problems
    validate(conv.policy)
    ingress = conv.policy["spec"]["ingress"]
    assert ingress[0]["destination"]["ports"] == ["0a", "80:81"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("etcd_endpoints", True, "etcd_endpoints: expected a string, got True"),
        ("etcd_endpoints", "ftp://x:1", "etcd_endpoints: etcd endpoint 'ftp://x:1'"),
        ("etcd_cert_file", 5, "etcd_cert_file: expected a string, got 5"),
    ],
)
def test_cni_config_types_are_checked_up_front(key: str, value: Any, message: str) -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "calico", key: value}
    with pytest.raises(CNIError) as exc:
        parse_conf(json.dumps(conf).encode(), {})
    assert exc.value.code == ERR_INVALID_CONFIG
    assert message in exc.value.msg
