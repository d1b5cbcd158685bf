"""Property: whatever a Kubernetes NetworkPolicy converts to, the model accepts unchanged (so the
controller never writes something calicoctl would reject, and never loops rewriting it), and the
agent's calculation graph programs it with one rule per converted rule."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from calico.k8s import conversion
from calico.model import validation
from tests import policy_strategies as ps

names = st.from_regex(r"\A[a-z0-9]([-a-z0-9._]{0,10}[a-z0-9])?\Z")
# The test endpoint has app=web, role=db: those keys and values come up often, so many converted
# policies select it and their rules are checked as programmed.
keys = st.one_of(
    st.sampled_from(["app", "role"]),
    names,
    st.tuples(st.sampled_from(["example.com", "a.b"]), names).map("/".join),
)
label_values = st.one_of(
    st.sampled_from(["web", "db"]),
    st.just(""),
    names,
    st.from_regex(r"\A[A-Za-z0-9][-A-Za-z0-9_.]{0,8}\Z"),
)
bad = st.sampled_from(["-a", "a b", "x" * 64, "a/b/c", "/x", "it's", "a\n"])


def sometimes_bad(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return ps.mostly(valid, bad, 15)


expression = st.one_of(
    st.fixed_dictionaries(
        {
            "key": sometimes_bad(keys),
            "operator": st.sampled_from(["In", "NotIn"]),
            "values": st.lists(sometimes_bad(label_values), min_size=1, max_size=3),
        }
    ),
    st.fixed_dictionaries(
        {"key": sometimes_bad(keys), "operator": st.sampled_from(["Exists", "DoesNotExist"])}
    ),
)
label_selector = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(
            sometimes_bad(keys), sometimes_bad(label_values), max_size=3
        ),
        "matchExpressions": st.lists(expression, max_size=2),
    },
)
cidr = st.one_of(ps.v4_nets(), ps.v6_nets(), st.sampled_from(["10.0.0.300/8", "nope"]))
ip_block = cidr.flatmap(
    lambda c: st.fixed_dictionaries(
        {"cidr": st.just(c)}, optional={"except": st.lists(cidr.map(lambda _: c), max_size=1)}
    )
)
peer = st.one_of(
    st.fixed_dictionaries({"podSelector": label_selector}),
    st.fixed_dictionaries({"namespaceSelector": label_selector}),
    st.fixed_dictionaries({"podSelector": label_selector, "namespaceSelector": label_selector}),
    st.fixed_dictionaries({"ipBlock": ip_block}),
)
k8s_port = st.fixed_dictionaries(
    {},
    optional={
        "protocol": ps.mostly(st.sampled_from(["TCP", "UDP", "SCTP"]), st.just("ICMP")),
        "port": st.one_of(
            st.integers(0, 70000),
            st.integers(1, 65535).map(str),
            st.from_regex(r"\A[a-z]([-a-z0-9]{0,13}[a-z0-9])?\Z"),
            st.sampled_from(["a--b", "Http", "http\n", "x" * 16]),
        ),
        "endPort": st.integers(1, 70000),
    },
)


def rule(peer_field: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={peer_field: st.lists(peer, max_size=2), "ports": st.lists(k8s_port, max_size=3)},
    )


network_policy = st.fixed_dictionaries(
    {
        "metadata": st.just({"name": "pol", "namespace": ps.NAMESPACE}),
        "spec": st.fixed_dictionaries(
            {"podSelector": label_selector},
            optional={
                "policyTypes": st.lists(
                    st.sampled_from(["Ingress", "Egress"]), max_size=2, unique=True
                ),
                "ingress": st.lists(rule("from"), max_size=3),
                "egress": st.lists(rule("to"), max_size=3),
            },
        ),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_policy)
def test_conversion_output_is_what_the_model_accepts_and_the_agent_programs(
    np: dict[str, Any],
) -> None:
    try:
        result = conversion.convert_network_policy(np)
    except conversion.ConversionError:
        event("policy-level conversion error")
        return
    event(f"{len(result.problems)} rule(s) dropped" if result.problems else "converted whole")
    policy = result.policy
    assert validation.validate(copy.deepcopy(policy)) == policy
    # The graph programs it: it selects the test endpoint only when its podSelector does.
    graph, out = ps.program(policy)
    assert not graph.invalid, graph.invalid
    got = ps.programmed(policy, out)
    event("selects the endpoint" if got is not None else "selects nothing here")
    if got is not None:
        want_in, want_out = ps.expected_directions(policy)
        assert (len(got[0]), len(got[1])) == (len(want_in), len(want_out))
        for raw, programmed in zip(want_in + want_out, got[0] + got[1], strict=True):
            ps.check_rule(raw, programmed)
