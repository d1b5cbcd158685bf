"""Random histories through the whole pipeline into a real kernel: the calc oracle's random
datastore batches -> CalcGraph -> InternalDataplane -> nft deltas in a namespace. After every
batch the delta transaction must be accepted, and the kernel's table must equal a fresh full load
of the same desired state (hypothesis; the delta ordering is where nft says EBUSY)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico.calc.graph import CalcGraph
from calico.dataplane import libnft
from tests.integration.agent.harness import sh
from tests.unit.calc import states
from tests.unit.calc.test_calc_resync_oracle import STEP
from tests.unit.dataplane import dp_fixtures

pytestmark = [pytest.mark.netns]


def listing(ns: str) -> list[str]:
    text = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "calico")
    return sorted(re.sub(r"counter packets \d+ bytes \d+", "counter", text).splitlines())


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.lists(STEP, min_size=1, max_size=4), min_size=1, max_size=6))
def test_random_histories_apply_as_deltas(
    make_netns: Callable[[], str], batches: list[list[tuple[dict[str, Any], bool]]]
) -> None:
    ns, fresh = make_netns(), make_netns()
    dp = dp_fixtures.dataplane(libnft.NftCommand(ns))  # type: ignore[arg-type]
    graph = CalcGraph("node1")
    graph.on_in_sync()
    for batch in batches:
        for obj, delete in batch:
            graph.on_update(states.key_of(obj), None if delete else obj)
        for msg in graph.flush():
            dp.on_update(msg)
        dp.apply()
        assert dp.failures == 0, dp.table.last_script
        sh(
            "ip",
            "netns",
            "exec",
            fresh,
            "nft",
            "-f",
            "-",
            input="add table inet calico\ndelete table inet calico\n" + dp.table.render(),
        )
        assert listing(ns) == listing(fresh)
