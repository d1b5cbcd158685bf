"""WorkQueue semantics: coalescing, in-flight exclusion, earliest add time, backoff, shutdown."""

from __future__ import annotations

import threading
import time

from calico.controllers.workqueue import WorkQueue


def test_adds_coalesce_and_keep_the_earliest_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", 10.0)
    q.add("b", 11.0)
    q.add("a", 12.0)
    q.add("a", 9.0)
    assert q.depth() == 2
    assert q.get(0) == ("a", 9.0)
    assert q.get(0) == ("b", 11.0)
    assert q.get(0.01) is None


def test_key_added_while_processing_is_requeued_after_done_not_before() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", 1.0)
    item = q.get(0)
    assert item is not None
    q.add("a", 2.0)
    assert q.get(0.01) is None  # never handed to a second worker while in flight
    assert not q.idle()
    q.done("a")
    assert q.get(0) == ("a", 2.0)
    q.done("a")
    assert q.idle()


def test_retry_backs_off_exponentially_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
    q.add("a")
    q.get(0)
    delays = [q.retry("a") for _ in range(4)]
    assert delays == [0.01, 0.02, 0.04, 0.04]
    assert q.failures("a") == 4
    q.done("a")
    start = time.monotonic()
    assert q.get(1) is not None
    assert time.monotonic() - start >= 0.005
    q.forget("a")
    assert q.failures("a") == 0


def test_other_keys_flow_while_one_backs_off() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=5.0)
    q.add("bad")
    q.get(0)
    q.retry("bad")
    q.done("bad")
    q.add("good")
    item = q.get(0.1)
    assert item is not None
    assert item[0] == "good"
    assert q.depth() == 1  # "bad" still waiting for its backoff


def test_shutdown_wakes_blocked_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(2)
    assert got == [None]


def test_get_many_takes_due_keys_up_to_the_limit_and_holds_them_in_flight() -> None:
    q: WorkQueue[str] = WorkQueue()
    for i, key in enumerate("abcde"):
        q.add(key, float(i))
    q.add_after("late", 60)
    batch = q.get_many(3, 0)
    assert batch == [("a", 0.0), ("b", 1.0), ("c", 2.0)]
    q.add("a", 7.0)  # in flight: marked, not handed out again until done
    assert q.get_many(10, 0) == [("d", 3.0), ("e", 4.0)]  # "late" is not due
    assert q.get_many(10, 0.01) == []
    for key in "bcde":
        q.done(key)
    q.done("a")
    assert q.get_many(10, 0) == [("a", 7.0)]


def test_get_many_waits_for_the_first_key_and_returns_empty_on_shutdown() -> None:
    q: WorkQueue[str] = WorkQueue()
    threading.Timer(0.05, q.add, args=("x",)).start()
    assert [k for k, _ in q.get_many(5, 5)] == ["x"]
    threading.Timer(0.05, q.shutdown).start()
    assert q.get_many(5) == []
