"""The lab's Kubernetes watch (the kube-controllers' informers behind a thread-safe reader) and
scheduler against the fake API server (HTTP on 127.0.0.1).

KubeWatch: one list, then watch events only (a dropped watch resumes at its resourceVersion without
listing again); 410 Gone lists again and the cache loses what was deleted meanwhile; every change
wakes the caller. Scheduler: least-pods placement with round-robin ties, and the Binding POST (409
when already bound).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_lab import scheduler
from calico_lab.kubewatch import KubeWatch
from tests.fakekube import FakeKube

pytestmark = pytest.mark.timeout(60)


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
    }


def _until(fn: Callable[[], bool], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeKube, Any]]:
    from lightkube import Client, KubeConfig

    with FakeKube() as kube:
        kube.create("namespaces", {"metadata": {"name": "x"}})
        client = Client(KubeConfig.from_file(kube.write_kubeconfig(tmp_path / "kubeconfig")))
        yield kube, client


def _names(watch: KubeWatch) -> list[str]:
    return [o["metadata"]["name"] for o in watch.items("Pod")]


def test_watch_lists_once_then_follows_watch_and_resumes(
    fake: tuple[FakeKube, Any], tmp_path: Path
) -> None:
    kube, _ = fake
    kube.create("pods", _pod("a"))
    changes = threading.Semaphore(0)
    watch = KubeWatch(
        str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        on_change=changes.release,
        kinds=("Namespace", "Pod"),
    ).start()
    try:
        assert watch.wait_synced(10)
        assert changes.acquire(timeout=1)
        assert _names(watch) == ["a"]
        assert [o["metadata"]["name"] for o in watch.items("Namespace")] == ["x"]
        kube.create("pods", _pod("b"))
        _until(lambda: _names(watch) == ["a", "b"], "pod b in the cache")
        kube.patch("pods", "a", {"metadata": {"labels": {"k": "v"}}}, "x")
        _until(lambda: watch.items("Pod")[0]["metadata"].get("labels") == {"k": "v"}, "a's label")
        kube.drop_watches()  # cut mid-stream: resume at the last resourceVersion, no list
        kube.delete("pods", "b", "x")
        _until(lambda: _names(watch) == ["a"], "b to go after the watch resumed")
        assert watch.informers["Pod"].lists == 1
        assert kube.list_count("pods") == 1
        assert kube.watch_count("pods") >= 2

        kube.stop()  # while away: a deleted, c made, history compacted -> 410, list again
        kube.delete("pods", "a", "x")
        kube.create("pods", _pod("c"))
        kube.compact()
        while changes.acquire(timeout=0):
            pass
        kube.start()
        _until(lambda: _names(watch) == ["c"], "the re-list after 410")
        assert watch.informers["Pod"].lists == 2
        assert changes.acquire(timeout=1)
    finally:
        watch.stop()


def test_scheduler_least_pods_then_round_robin() -> None:
    sched = scheduler.Scheduler(["node1", "node2", "node3"])
    sched.observe(
        [
            _pod("p", nodeName="node1"),
            _pod("q", nodeName="node1"),
            _pod("r", nodeName="node3"),
            _pod("elsewhere", nodeName="other"),
            {**_pod("done", nodeName="node2"), "status": {"phase": "Succeeded"}},
        ]
    )
    assert [sched.pick() for _ in range(5)] == ["node2", "node3", "node2", "node3", "node1"]
    with pytest.raises(ValueError, match="no nodes"):
        scheduler.Scheduler([]).pick()


def test_which_pods_the_lab_schedules() -> None:
    assert scheduler.wants_scheduling(_pod("a"))
    assert scheduler.wants_scheduling(_pod("a", schedulerName="default-scheduler"))
    assert scheduler.wants_scheduling(_pod("a", schedulerName="calico-lab"))
    assert not scheduler.wants_scheduling(_pod("a", schedulerName="my-scheduler"))
    assert not scheduler.wants_scheduling(_pod("a", nodeName="node1"))
    assert not scheduler.wants_scheduling(_pod("a", hostNetwork=True))
    gone = _pod("a")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not scheduler.wants_scheduling(gone)


def test_bind_posts_a_binding_and_409_means_already_bound(fake: tuple[FakeKube, Any]) -> None:
    kube, client = fake
    pod = kube.create("pods", _pod("a"))
    before = int(pod["metadata"]["resourceVersion"])
    assert scheduler.bind(client, pod, "node2") is True
    bound = kube.get("pods", "a", "x")
    assert bound["spec"]["nodeName"] == "node2"
    assert int(bound["metadata"]["resourceVersion"]) > before
    assert {"type": "PodScheduled", "status": "True"} in bound["status"]["conditions"]
    assert kube.bindings() == ["/api/v1/namespaces/x/pods/a/binding"]
    assert scheduler.bind(client, pod, "node1") is False  # already bound: not moved
    assert kube.get("pods", "a", "x")["spec"]["nodeName"] == "node2"
    other = kube.create("pods", _pod("b"))
    kube.delete("pods", "b", "x")
    kube.create("pods", _pod("b"))  # same name, new uid: the old uid's binding must not land
    assert scheduler.bind(client, other, "node1") is False
    assert "nodeName" not in kube.get("pods", "b", "x")["spec"]
