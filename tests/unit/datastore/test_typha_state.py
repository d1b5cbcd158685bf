"""The Typha client's contract over a chain of connections (snapshot + deltas, reconnects to
servers that lag), checked case by case and against a model of the datastore's history."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.datastore.syncer import SyncStatus, Update
from calico.datastore.typha_state import ClientState, Output

W, R, S = SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC


class Consumer:
    """What the agent would hold: applies every batch, records every delivery."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.updates: list[Update] = []
        self.statuses: list[SyncStatus] = []

    def take(self, out: Output) -> Output:
        for u in out.updates:
            self.updates.append(u)
            if u.value is None:
                assert u.key in self.state, f"delete of {u.key}, never delivered"
                del self.state[u.key]
            else:
                self.state[u.key] = u.value
        self.statuses += out.statuses
        return out


def test_first_connection_passes_pages_through_then_in_sync() -> None:
    c, s = Consumer(), ClientState()
    c.take(s.start())
    c.take(s.connected())
    assert c.take(s.on_updates([("/a", 5, {"v": 1})])).updates == [Update("/a", {"v": 1}, 5)]
    c.take(s.on_status("resync-in-progress", 5))  # the server is still listing
    assert c.statuses == [W, R]
    c.take(s.on_updates([("/b", 6, {"v": 2}), ("/a", 5, {"v": 1})]))  # a replay is dropped
    c.take(s.on_status("in-sync", 6))
    assert c.statuses == [W, R, S]
    assert [u.key for u in c.updates] == ["/a", "/b"]


def test_a_reconnect_hands_over_only_the_differences_in_one_batch() -> None:
    c, s = Consumer(), ClientState()
    c.take(s.start())
    c.take(s.connected())
    c.take(s.on_updates([("/same", 1, 1), ("/changed", 2, 2), ("/gone", 3, 3)]))
    c.take(s.on_status("in-sync", 3))
    c.take(s.disconnected())
    assert c.statuses == [W, R, S]  # InSync once: an outage does not leave it
    c.take(s.connected())
    held = [("/same", 1, 1), ("/changed", 7, 22), ("/new", 8, 8)]
    assert c.take(s.on_updates(held)).updates == []  # held until the server is in sync
    out = c.take(s.on_status("in-sync", 9))
    assert out.updates == [
        Update("/changed", 22, 7),
        Update("/new", 8, 8),
        Update("/gone", None, 9),
    ]
    assert c.statuses == [W, R, S]
    assert s.resyncs == 1
    c.take(s.on_updates([("/later", 10, 10)]))
    assert c.state == {"/same": 1, "/changed": 22, "/new": 8, "/later": 10}


def test_a_lagging_server_never_takes_the_consumer_back_in_time() -> None:
    c, s = Consumer(), ClientState()
    c.take(s.start())
    c.take(s.connected())
    c.take(s.on_updates([("/k", 10, "new"), ("/fresh", 12, "f")]))
    c.take(s.on_status("in-sync", 12))
    c.take(s.disconnected())
    c.take(s.connected())  # a server that has only seen revision 9
    c.take(s.on_updates([("/k", 8, "old")]))
    out = c.take(s.on_status("in-sync", 9))
    assert out.updates == []  # /k older than delivered; /fresh beyond the server: pending
    assert s.pending == {"/fresh": 12}
    c.take(s.on_updates([("/k", 10, "new"), ("/fresh", 12, "f")]))  # it catches up: nothing new
    assert s.pending == {}
    c.take(s.on_progress(20))
    assert c.state == {"/k": "new", "/fresh": "f"}
    assert len(c.updates) == 2


def test_a_pending_key_the_server_never_brings_back_is_deleted_once_it_is_past_it() -> None:
    c, s = Consumer(), ClientState()
    c.take(s.start())
    c.take(s.connected())
    c.take(s.on_updates([("/k", 12, "v")]))
    c.take(s.on_status("in-sync", 12))
    c.take(s.disconnected())
    c.take(s.connected())
    c.take(s.on_status("in-sync", 11))  # behind: /k pending
    assert c.take(s.on_progress(11)).updates == []
    assert c.take(s.on_progress(13)).updates == [Update("/k", None, 13)]
    assert c.state == {}


def test_losing_the_server_before_in_sync_waits_again() -> None:
    c, s = Consumer(), ClientState()
    c.take(s.start())
    c.take(s.connected())
    c.take(s.on_updates([("/a", 1, 1)]))
    c.take(s.disconnected())
    c.take(s.connected())
    c.take(s.on_updates([("/b", 2, 2)]))
    c.take(s.on_status("in-sync", 2))
    assert c.statuses == [W, R, W, R, S]
    assert c.state == {"/b": 2}  # /a was gone by the second snapshot


def test_prefixes_filter_what_is_delivered() -> None:
    c, s = Consumer(), ClientState(["/calico/a/"])
    c.take(s.start())
    c.take(s.connected())
    c.take(s.on_updates([("/calico/a/1", 1, 1), ("/calico/b/1", 2, 2)]))
    assert c.state == {"/calico/a/1": 1}


# ---- the model ----------------------------------------------------------------------------------

KEYS = ["/k/a", "/k/b", "/k/c", "/k/d"]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, bool]]:
    """(key, deleted) per revision 1..n; a delete only of a present key."""
    present: set[str] = set()
    out = []
    for _ in range(draw(st.integers(0, 25))):
        key = draw(st.sampled_from(KEYS))
        delete = key in present and draw(st.booleans())
        (present.discard if delete else present.add)(key)
        out.append((key, delete))
    return out


def state_at(history: list[tuple[str, bool]], pos: int) -> dict[str, tuple[int, Any]]:
    state: dict[str, tuple[int, Any]] = {}
    for rev, (key, delete) in enumerate(history[:pos], start=1):
        if delete:
            del state[key]
        else:
            state[key] = (rev, {"rev": rev})
    return state


@settings(max_examples=300, deadline=None)
@given(data=st.data(), history=histories())
def test_any_chain_of_servers_at_any_lag_delivers_the_history_exactly_once(
    data: st.DataObject, history: list[tuple[str, bool]]
) -> None:
    n = len(history)
    c, s = Consumer(), ClientState()
    c.take(s.start())
    sessions = data.draw(st.integers(1, 4))
    for i in range(sessions):
        start = data.draw(st.integers(0, n))
        end = n if i == sessions - 1 else data.draw(st.integers(start, n))
        c.take(s.connected())
        snap = [(k, rev, v) for k, (rev, v) in state_at(history, start).items()]
        cut = data.draw(st.integers(0, len(snap)))
        c.take(s.on_updates(snap[:cut]))
        c.take(s.on_updates(snap[cut:]))
        c.take(s.on_status("in-sync", start))
        for rev in range(start + 1, end + 1):
            key, delete = history[rev - 1]
            c.take(s.on_updates([(key, rev, None if delete else {"rev": rev})]))
            if data.draw(st.booleans()):
                c.take(s.on_progress(rev))
        c.take(s.on_progress(end))
        if i < sessions - 1:
            c.take(s.disconnected())
    assert c.state == {k: v for k, (_, v) in state_at(history, n).items()}
    puts = [(u.key, u.revision) for u in c.updates if u.value is not None]
    assert len(puts) == len(set(puts)), "a (key, revision) delivered twice"
    last: dict[str, int] = {}
    for u in c.updates:  # a key never goes back to an older revision
        if u.value is not None:
            assert u.revision > last.get(u.key, 0)
            last[u.key] = u.revision
    assert c.statuses[-1] is S
    assert c.statuses.count(S) == 1
