"""A Kubernetes watch that goes silent without closing (a wedged API server or proxy: no events,
no bookmarks, no end, whatever ``timeoutSeconds`` said) is noticed within a bound by
calico-kube-controllers and by the lab's kubewatch, and resumed from its resourceVersion without
a re-list; the change made meanwhile arrives. The fake API server (tests/fakekube) does the
silencing; everything else is the product.

The short form runs with small timeouts (the bound scales with them); the long form also runs the
shipped defaults (``timeoutSeconds`` 30-36 s, grace 5 s: bound ~41 s) and reports what it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.controllers.manager import KubeControllers
from calico.datastore.client import Client
from calico_lab.kubewatch import KubeWatch
from tests.chaos.figures import Figures, long_form
from tests.fakekube import FakeKube
from tests.integration.controllers import oracle
from tests.integration.controllers.conftest import (  # noqa: F401 - fixtures
    fake_kube,
    make_controller,
)

pytestmark = [pytest.mark.etcd, pytest.mark.chaos, pytest.mark.timeout(300)]


def _stalls(ctl: KubeControllers, kind: str) -> float:
    return sum(
        s.value
        for m in ctl.metrics.watch_restarts.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels == {"kind": kind, "reason": "stalled"}
    )


def _stored(datastore: Client, name: str) -> Callable[[], bool]:
    """For _wait: the NetworkPolicy ``name`` is in the datastore."""
    return lambda: any(p["metadata"]["name"] == name for p in datastore.list("NetworkPolicy"))


def _wait(check: Callable[[], bool], within: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within}s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_kube_controllers_leave_a_silent_watch(
    fake_kube: FakeKube,  # noqa: F811
    datastore: Client,
    make_controller: Callable[..., KubeControllers],  # noqa: F811
    figures: Figures,
) -> None:
    timeout, grace = 2.0, 1.0
    bound = timeout * 1.2 + grace  # the watch opened just before the silence, at the latest
    fake_kube.create("namespaces", oracle.ns("a"))
    fake_kube.create("networkpolicies", oracle.policy("a", "p0", app="web"))
    ctl = make_controller(server_timeout=timeout, watch_grace=grace)
    _wait(lambda: any(p["metadata"]["name"] == "knp.default.p0" for p in datastore.list(
        "NetworkPolicy")), 20)  # fmt: skip
    lists = fake_kube.list_count("networkpolicies")
    for round_ in range(3 if long_form() else 1):
        fake_kube.silence_watches()
        figures.fault("every open watch of the API server goes silent (connection kept open)")
        fake_kube.create("networkpolicies", oracle.policy("a", f"during-{round_}", app="db"))
        figures.op("NetworkPolicy created while silent")
        took = _wait(
            _stored(datastore, f"knp.default.during-{round_}"),
            within=bound + 10,
        )
        figures.detection_s.append(round(took, 2))
    figures.converge_s = list(figures.detection_s)
    figures.events_lost = 0
    assert _stalls(ctl, "NetworkPolicy") >= 1  # left because it was silent, not by chance
    assert fake_kube.list_count("networkpolicies") == lists  # resumed, not re-listed
    figures.notes.append(f"timeoutSeconds {timeout}-{timeout * 1.2:.1f} s, grace {grace} s")


def test_lab_kubewatch_leaves_a_silent_watch(
    fake_kube: FakeKube,  # noqa: F811
    figures: Figures,
    tmp_path: Path,
) -> None:
    timeout, grace = 2.0, 1.0
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    changes: list[float] = []
    watch = KubeWatch(
        str(kubeconfig), on_change=lambda: changes.append(1), server_timeout=timeout, grace=grace
    ).start()
    try:
        assert watch.wait_synced(20)
        fake_kube.create("namespaces", oracle.ns("b"))
        _wait(lambda: any(n["metadata"]["name"] == "b" for n in watch.items("Namespace")), 10)
        fake_kube.silence_watches()
        figures.fault("every open watch goes silent (connection kept open)")
        fake_kube.create("namespaces", oracle.ns("during"))
        took = _wait(
            lambda: any(n["metadata"]["name"] == "during" for n in watch.items("Namespace")),
            within=timeout * 1.2 + grace + 10,
        )
        figures.detection_s.append(round(took, 2))
        assert watch.informers["Namespace"].stalls >= 1
        assert watch.informers["Namespace"].lists == 1
    finally:
        watch.stop()
    figures.events_lost = 0


@pytest.mark.skipif(not long_form(), reason="long form only (make chaos): waits up to ~41 s")
def test_shipped_defaults_bound_a_silent_watch(
    fake_kube: FakeKube,  # noqa: F811
    figures: Figures,
    tmp_path: Path,
) -> None:
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    watch = KubeWatch(str(kubeconfig), on_change=lambda: None).start()  # defaults: 30 s, 5 s
    try:
        assert watch.wait_synced(20)
        fake_kube.silence_watches()
        figures.fault("every open watch goes silent, shipped defaults (30-36 s + 5 s)")
        fake_kube.create("namespaces", oracle.ns("during"))
        took = _wait(
            lambda: any(n["metadata"]["name"] == "during" for n in watch.items("Namespace")),
            within=36 + 5 + 15,
        )
        figures.detection_s.append(round(took, 2))
    finally:
        watch.stop()
    figures.events_lost = 0
