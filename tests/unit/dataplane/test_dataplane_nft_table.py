"""NftTable + InternalDataplane against a recording runner: nothing before InSync, a full atomic
replace first, then only what changed; deletion order; a failure makes the next apply full."""

from __future__ import annotations

import pytest

from calico.dataplane import loop, nft_render, nft_table
from calico.dpapi import messages as m
from tests.unit.dataplane import dp_fixtures


def started() -> tuple[dp_fixtures.RecordingRunner, loop.InternalDataplane]:
    runner = dp_fixtures.RecordingRunner()
    dp = dp_fixtures.dataplane(runner)
    for msg in dp_fixtures.messages():
        dp.on_update(msg)
    assert dp.apply()
    return runner, dp


def test_nothing_before_in_sync() -> None:
    runner = dp_fixtures.RecordingRunner()
    dp = dp_fixtures.dataplane(runner)
    for msg in dp_fixtures.messages():
        if not isinstance(msg, m.InSync):
            dp.on_update(msg)
    assert not dp.apply()
    assert runner.scripts == []


def test_first_apply_replaces_table_atomically_then_deltas() -> None:
    runner, dp = started()
    assert runner.scripts[0].startswith(
        "add table inet calico\ndelete table inet calico\ntable inet calico {"
    )
    assert not dp.apply()  # nothing changed: nothing sent
    pol = m.Policy(inbound_rules=(m.Rule(action="deny"),))
    dp.on_update(m.ActivePolicyUpdate(m.PolicyID("default", "b-8080"), pol))
    assert dp.apply()
    delta = runner.scripts[-1].splitlines()
    assert delta[0] == "flush chain inet calico cali-pi-default/b-8080"
    assert all("cali-pi-default/b-8080" in line for line in delta)


def test_ipset_delta_is_element_level() -> None:
    runner, dp = started()
    set_id = next(i for i in dp.ipsets._kinds if dp.ipsets._kinds[i] == m.IPSET_NET)
    dp.on_update(m.IPSetDeltaUpdate(set_id, frozenset({"10.77.0.1/32"}), frozenset()))
    dp.apply()
    assert runner.scripts[-1] == (
        f"table inet calico {{\n  set cali40{set_id} {{ type ipv4_addr; flags interval; "
        "elements = { 10.77.0.1 } }\n}\n"
    )
    dp.on_update(m.IPSetDeltaUpdate(set_id, frozenset(), frozenset({"10.77.0.1/32"})))
    dp.apply()
    assert runner.scripts[-1] == f"delete element inet calico cali40{set_id} {{ 10.77.0.1 }}\n"


def test_overlapping_cidrs_are_collapsed() -> None:
    runner, dp = started()
    dp.on_update(
        m.IPSetUpdate(
            "s-new", m.IPSET_NET, frozenset({"10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32"})
        )
    )
    dp.apply()
    assert (
        "set cali40s-new { type ipv4_addr; flags interval; elements = { 10.1.0.0/16 } }"
        in (runner.scripts[-1])
    )


def test_endpoint_removal_order() -> None:
    runner, dp = started()
    wep_id = next(iter(dp.endpoints._weps))
    iface = dp.endpoints._weps[wep_id].iface
    dp.on_update(m.WorkloadEndpointRemove(wep_id))
    dp.apply()
    lines = runner.scripts[-1].splitlines()
    map_del = lines.index(f'delete element inet calico cali-tw-map {{ "{iface}" }}')
    chain_del = lines.index(f"delete chain inet calico cali-tw-{iface}")
    assert map_del < chain_del


def test_failure_retries_as_full_replace_then_gives_up() -> None:
    runner, dp = started()
    dp.on_update(m.ActiveProfileUpdate("kns.default", m.Profile()))
    runner.fail_next = True
    assert not dp.apply()
    dp._retry_at = None
    assert dp.apply()
    assert runner.scripts[-1].startswith("add table inet calico\ndelete table")
    for _ in range(loop.MAX_FAILURES - 1):
        dp.on_update(
            m.ActiveProfileUpdate("kns.default", m.Profile(inbound_rules=(m.Rule("allow"),)))
        )
        runner.fail_next = True
        dp._retry_at = None
        dp.apply()
    runner.fail_next = True
    dp._retry_at = None
    with pytest.raises(loop.DataplaneFailed):
        dp.apply()


def test_full_replace_carries_rule_counters_over() -> None:
    """The counters read right before a full replace start the new table's identical rules
    (same chain, same comment, same occurrence); changed or new rules start from zero."""
    runner = dp_fixtures.RecordingRunner()
    kernel: list[tuple[str, str, int, int]] = []
    table = nft_table.NftTable(runner, read_counters=lambda: kernel)
    same = nft_render.with_comment("ip saddr 10.0.0.1 counter accept", 0)
    twice = nft_render.with_comment("counter drop")
    changed = nft_render.with_comment("ip saddr 10.0.0.2 counter accept", 1)
    table.set_chain("cali-pi-p", (same, twice, twice, changed))
    table.apply()
    assert "packets" not in runner.scripts[-1]  # nothing to carry: the table did not exist
    comment = nft_table._comment_of
    kernel[:] = [
        ("cali-pi-p", comment(same), 5, 300),
        ("cali-pi-p", comment(twice), 1, 10),
        ("cali-pi-p", comment(twice), 2, 20),
        ("cali-pi-p", comment(nft_render.with_comment("ip saddr 10.9.9.9 counter accept", 1)),
         9, 900),
        ("cali-other", comment(same), 7, 700),
    ]  # fmt: skip
    table.queue_resync()
    table.apply()
    script = runner.scripts[-1]
    assert "ip saddr 10.0.0.1 counter packets 5 bytes 300 accept" in script
    assert script.count("counter packets 1 bytes 10 drop") == 1
    assert script.count("counter packets 2 bytes 20 drop") == 1
    assert "ip saddr 10.0.0.2 counter accept" in script  # its text changed: from zero
    assert table.carried == 3
    # Deltas never read the kernel nor carry anything.
    kernel.clear()
    table.set_chain("cali-pi-p", (same,))
    table.apply()
    assert "packets" not in runner.scripts[-1]
