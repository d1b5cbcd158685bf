"""The CNI server runs one call at a time per container (a DEL waits for that container's ADD),
different containers in parallel, and forgets idle containers; the test hook pauses only when the
call's environment asks for it, at the named point."""

from __future__ import annotations

import threading
import time

from calico.cni import testhook
from calico.cni.server import ContainerLocks


def _run(locks: ContainerLocks, key: tuple[str, str], log: list[str], name: str) -> None:
    with locks.held(key):
        log.append(f"{name} in")
        time.sleep(0.2)
        log.append(f"{name} out")


def test_calls_of_one_container_run_one_at_a_time() -> None:
    locks = ContainerLocks()
    log: list[str] = []
    add = threading.Thread(target=_run, args=(locks, ("c1", "eth0"), log, "ADD"))
    add.start()
    time.sleep(0.05)
    delete = threading.Thread(target=_run, args=(locks, ("c1", "eth0"), log, "DEL"))
    delete.start()
    add.join()
    delete.join()
    assert log == ["ADD in", "ADD out", "DEL in", "DEL out"]
    assert len(locks) == 0  # idle containers are forgotten


def test_other_containers_run_in_parallel() -> None:
    locks = ContainerLocks()
    log: list[str] = []
    threads = [
        threading.Thread(target=_run, args=(locks, (f"c{i}", "eth0"), log, f"c{i}"))
        for i in range(4)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start < 0.6  # not 4 x 0.2 s
    assert len(locks) == 0


def test_the_test_hook_is_off_unless_asked_for() -> None:
    start = time.monotonic()
    testhook.pause({}, "after-ipam")
    testhook.pause({testhook.VARIABLE: "after-veth:1"}, "after-ipam")  # another point
    testhook.pause({testhook.VARIABLE: "after-ipam:x"}, "after-ipam")  # not a number
    assert time.monotonic() - start < 0.1
    testhook.pause({testhook.VARIABLE: "after-ipam:0.2"}, "after-ipam")
    assert time.monotonic() - start >= 0.2
