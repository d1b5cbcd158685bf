"""The renderer's output against the real nft: the golden table passes ``nft -c``; the driver's
full replace and delta transactions apply in a namespace; drift is detected and repaired."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from calico.dataplane import libnft
from calico.dpapi import messages as m
from tests.integration.agent.harness import sh
from tests.unit.dataplane import dp_fixtures, test_dataplane_render

pytestmark = [pytest.mark.netns]


def listing(ns: str) -> str:
    text = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "calico")
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    return "\n".join(sorted(text.splitlines()))  # chain order in a listing is creation order


def test_golden_table_passes_nft_check(make_netns: Callable[[], str]) -> None:
    ns = make_netns()
    sh("ip", "netns", "exec", ns, "nft", "-c", "-f", str(test_dataplane_render.GOLDEN))


def test_driver_transactions_apply_for_real(make_netns: Callable[[], str]) -> None:
    ns = make_netns()
    runner = libnft.NftCommand(ns)
    dp = dp_fixtures.dataplane(runner)  # type: ignore[arg-type]
    msgs = dp_fixtures.messages()
    for msg in msgs:
        dp.on_update(msg)
    assert dp.apply()
    listed = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "calico")
    assert "chain cali-pi-default/http" in listed
    # Deltas: remove every endpoint, policy, profile and set, in the calc's order.
    for msg in msgs:
        match msg:
            case m.WorkloadEndpointUpdate(id=i):
                dp.on_update(m.WorkloadEndpointRemove(i))
            case m.HostEndpointUpdate(id=i):
                dp.on_update(m.HostEndpointRemove(i))
    for msg in msgs:
        match msg:
            case m.ActivePolicyUpdate(id=pid):
                dp.on_update(m.ActivePolicyRemove(pid))
            case m.ActiveProfileUpdate(id=name):
                dp.on_update(m.ActiveProfileRemove(name))
    for msg in msgs:
        if isinstance(msg, m.IPSetUpdate):
            dp.on_update(m.IPSetRemove(msg.id))
    assert dp.apply()
    listed = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "calico")
    assert "cali-pi-" not in listed
    assert "cali-tw-cali" not in listed
    assert "cali40s" not in listed
    # Re-add everything as deltas (not a full replace) and compare with a fresh render.
    for msg in msgs:
        dp.on_update(msg)
    assert dp.apply()
    assert not dp.table.last_script.startswith("add table")
    assert not dp.table.check_drift()
    # The kernel now holds exactly what a full load of the same desired state gives.
    fresh = make_netns()
    sh("ip", "netns", "exec", fresh, "nft", "-f", "-", input=dp.table.render())
    assert listing(ns) == listing(fresh)
    # Someone else edits our table: drift is noticed and a full replace repairs it.
    sh("ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", "calico", "cali-FORWARD")
    assert dp.table.check_drift()
    assert dp.apply()
    assert dp.table.last_script.startswith("add table")
    assert not dp.table.check_drift()


def test_libnftables_binding(make_netns: Callable[[], str]) -> None:
    """The ctypes binding works in-process (checked in a child inside the namespace)."""
    ns = make_netns()
    code = (
        "from calico.dataplane import libnft; r = libnft.LibNftables(); "
        "r.run('add table inet calico'); print(r.run('list tables', json=True))"
    )
    import sys

    out = sh("ip", "netns", "exec", ns, sys.executable, "-c", code)
    assert '"name": "calico"' in out
    bad = sh(
        "ip",
        "netns",
        "exec",
        ns,
        sys.executable,
        "-c",
        "from calico.dataplane import libnft\ntry:\n"
        " libnft.LibNftables().run('add rule inet nope x drop')\n"
        "except libnft.NftError as e:\n print('ERR', e)",
        check=False,
    )
    assert bad.startswith("ERR")


def test_a_context_used_from_another_namespace_refuses(make_netns: Callable[[], str]) -> None:
    """A libnftables context keeps the netlink socket of the namespace it was made in: a thread
    in namespace B using a context made in A would program A. It refuses instead, and A and B are
    left as they were (all of it in a child that starts in namespace A, one of ours)."""
    a, b = make_netns(), make_netns()
    code = (
        "import threading\n"
        "from calico.dataplane import libnft\n"
        "from calico.lib import netns\n"
        "r = libnft.LibNftables()\n"
        "r.run('add table inet calico')\n"  # its own namespace: fine
        "def other():\n"
        f"    netns.enter({b!r})\n"
        "    try:\n"
        "        r.run('delete table inet calico')\n"
        "    except libnft.WrongNamespace as e:\n"
        "        print('REFUSED', e)\n"
        "    libnft.LibNftables().run('add table inet mine')\n"  # one made there: fine
        "t = threading.Thread(target=other); t.start(); t.join()\n"
    )
    import sys

    out = sh("ip", "netns", "exec", a, sys.executable, "-c", code)
    assert out.startswith("REFUSED"), out
    assert "table inet calico" in sh("ip", "netns", "exec", a, "nft", "list", "tables")
    in_b = sh("ip", "netns", "exec", b, "nft", "list", "tables")
    assert in_b.split() == ["table", "inet", "mine"]
