"""Property: the model is the one parser. Whatever validation accepts, the agent's calculation
graph programs (the policy or profile is sent with one dpapi rule per resource rule of the
directions it applies to, each of the right action, protocol, ICMP, nets and ports); whatever
validation rejects, the graph treats as absent (``graph.invalid`` names the field, nothing sent).

Write side here: ``calico.cli.loading`` followed by ``validation.validate``, exactly the checks
``calicoctl create/apply`` runs before it connects to etcd (it then writes the validated object
with ``validate=False``). This unit test runs many examples in a second; the same property through
the real ``calicoctl apply`` and a real etcd is ``tests/integration/cli/test_cli_calc_agree.py``.
The graph is fed both the object as written (what a raw etcd write would hold) and as stored.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, event, given, settings

from calico.cli import loading
from calico.model import validation
from tests import policy_strategies as ps


def write_side(obj: dict[str, Any]) -> dict[str, Any] | None:
    """What calicoctl would store, or None when it rejects the resource."""
    try:
        return loading._check(copy.deepcopy(obj), namespace=None, full=True)
    except (validation.ValidationError, ValueError):
        return None


def assert_programs(stored: dict[str, Any], fed: dict[str, Any]) -> None:
    graph, out = ps.program(fed)
    assert not graph.invalid, graph.invalid
    got = ps.programmed(stored, out)
    assert got is not None, f"accepted but not programmed: {stored}"
    want_in, want_out = ps.expected_directions(stored)
    assert (len(got[0]), len(got[1])) == (len(want_in), len(want_out))
    for raw, rule in zip(want_in + want_out, got[0] + got[1], strict=True):
        ps.check_rule(raw, rule)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ps.policy_resource())
def test_calc_programs_exactly_what_validation_accepts(obj: dict[str, Any]) -> None:
    stored = write_side(obj)
    event(f"{obj['kind']} {'accepted' if stored else 'rejected'}")
    if stored is None:
        graph, out = ps.program(obj)
        assert ps.key_of(obj) in graph.invalid
        # Nothing of it is programmed; the endpoint's profile, when that is what was rejected,
        # is sent empty (allows nothing: fail closed).
        assert ps.programmed(obj, out) in (None, ((), ()) if obj["kind"] == "Profile" else None)
        return
    assert_programs(stored, stored)
    assert_programs(stored, obj)  # the raw form, as a direct etcd write would hold it
