"""calico.model.validation.parse: the typed values the agent consumes, their JSON rendering (what
``validate`` returns), and the fast paths of the field parsers against their references."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico.model import fields, validation, values
from calico.model.validation import ValidationError


def res(kind: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", **meta}, "spec": spec}


def test_policy_parses_to_typed_values() -> None:
    obj = res(
        "NetworkPolicy",
        {
            "order": 10,
            "selector": "app == 'db'",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "tcp",
                    "source": {"nets": ["10.0.0.5"], "selector": "role == 'web'"},
                    "destination": {"ports": [80, "8000:8080", "http", "443:443"]},
                },
                {"action": "Deny", "protocol": 1, "icmp": {"type": 8}, "notProtocol": "17"},
            ],
        },
        namespace="prod",
    )
    got = validation.parse_as(obj, values.Policy)
    assert (got.kind, got.name, got.namespace) == ("NetworkPolicy", "x", "prod")
    pol = got.spec
    assert (pol.types, pol.order, pol.selector) == (("Ingress",), 10, "app == 'db'")
    allow, deny = pol.ingress
    assert allow.protocol == "TCP"
    assert allow.source == values.EntityRule(nets=("10.0.0.5/32",), selector="role == 'web'")
    assert allow.destination is not None
    assert allow.destination.ports == (
        values.Port(80, 80),
        values.Port(8000, 8080),
        values.Port(name="http"),
        values.Port(443, 443),
    )
    assert (deny.protocol, deny.not_protocol, deny.icmp) == (1, 17, values.ICMPMatch(8, None))
    assert deny.source is None  # not given: matches everything


def test_endpoint_and_profile_values() -> None:
    wep = res(
        "WorkloadEndpoint",
        {
            "node": "n1",
            "interfaceName": "cali0",
            "ipNetworks": ["10.0.0.1", "fd00::1/128"],
            "profiles": ["kns.a"],
            "ports": [{"name": "web", "protocol": "udp", "port": 53}],
        },
        labels={"app": "a"},
    )
    got = validation.parse_as(wep, values.WorkloadEndpoint)
    assert got.namespace == "default"
    assert got.labels == (("app", "a"),)
    assert got.spec.ip_networks == ("10.0.0.1/32", "fd00::1/128")
    assert got.spec.ports == (values.NamedPort("web", "UDP", 53),)
    prof = validation.parse_as(
        res("Profile", {"labelsToApply": {"b": "2", "a": "1"}}), values.Profile
    )
    assert prof.spec.labels_to_apply == (("a", "1"), ("b", "2"))


def test_parse_as_names_the_kind_when_the_spec_type_differs() -> None:
    with pytest.raises(ValidationError, match=r"^Profile\(x\): kind: Profile is not a Policy kind"):
        validation.parse_as(res("Profile", {}), values.Policy)


def test_render_is_canonical_and_keeps_entity_presence() -> None:
    obj = res(
        "GlobalNetworkPolicy",
        {
            "selector": None,
            "applyOnForward": False,
            "ingress": [
                {"action": "Allow", "protocol": None, "source": {}, "destination": {"nets": []}},
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["22:22"]}},
            ],
        },
    )
    assert validation.validate(obj)["spec"] == {
        "types": ["Ingress"],
        "ingress": [
            {"action": "Allow", "source": {}, "destination": {}},
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [22]}},
        ],
    }


def test_parse_and_validate_do_not_share_or_mutate_input() -> None:
    obj = res("WorkloadEndpoint", {"node": "n"}, labels={"a": "b"}, annotations={"k": "v"})
    parsed = validation.parse(obj)
    out = validation.validate(obj)
    out["metadata"]["labels"]["a"] = "changed"
    out["metadata"]["annotations"]["k"] = "changed"
    assert obj["metadata"] == {"name": "x", "labels": {"a": "b"}, "annotations": {"k": "v"}}
    assert parsed.to_json()["metadata"]["labels"] == {"a": "b"}


@given(
    st.one_of(
        st.tuples(*[st.integers(0, 300)] * 4, st.integers(0, 40)).map(
            lambda t: "{}.{}.{}.{}/{}".format(*t)
        ),
        st.from_regex(r"\A[0-9./]{1,18}\Z"),
        st.ip_addresses(v=4).map(str),
        st.text(max_size=20),
    )
)  # fmt: skip
def test_cidr_fast_path_agrees_with_ipaddress(text: str) -> None:
    try:
        want: str | None = str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        want = None
    try:
        got: str | None = fields.cidr(text, "p")
    except fields.FieldError:
        got = None
    assert got == want


@pytest.mark.parametrize(
    ("text", "secs"),
    [("90s", 90.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("0", 0.0), ("2.5m", 150.0)],
)
def test_durations_in_seconds(text: str, secs: float) -> None:
    assert fields.seconds(text, "p") == pytest.approx(secs)
    assert fields.duration(text, "p") == text


@pytest.mark.parametrize("text", ["90", "1d", "-1s", "s", "", 90])
def test_bad_durations_name_the_value(text: object) -> None:
    with pytest.raises(fields.FieldError, match=f"invalid duration {text!r}"):
        fields.seconds(text, "p")


@pytest.mark.parametrize("name", ["eth0\n", "a+b", "a:b", "a@b", "x" * 16, ""])
def test_interface_names_the_dataplane_cannot_use_are_rejected(name: str) -> None:
    with pytest.raises(fields.FieldError, match="invalid interface name"):
        fields.interface_name(name, "spec.interfaceName")


@pytest.mark.parametrize("value", ["\u00b2", "8\u0660", "\u0661:2"])
def test_non_ascii_digits_are_field_errors_not_crashes(value: str) -> None:
    with pytest.raises(fields.FieldError):
        fields.port_match(value, "p")
    with pytest.raises(fields.FieldError):
        fields.protocol(value, "p")
