"""Fixtures for the policy controller: a fake Kubernetes API server and controller factory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.controllers.manager import ControllerConfig, KubeControllers
from calico.datastore.config import DatastoreConfig
from calico.datastore.etcd_server import EtcdServer
from tests.fakekube import FakeKube


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    fake = FakeKube(bookmark_interval=3600).start()
    yield fake
    fake.stop()


@pytest.fixture
def make_controller(
    fake_kube: FakeKube, etcd_server: EtcdServer, tmp_path: Path
) -> Iterator[Callable[..., KubeControllers]]:
    """Factory: start a controller against ``fake_kube`` and the test etcd (stopped at teardown)."""
    started: list[KubeControllers] = []
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")

    def make(**kw: Any) -> KubeControllers:
        kw.setdefault("resync_period", 3600.0)
        kw.setdefault("listen", ("127.0.0.1", 0))
        kw.setdefault("workers", 2)
        config = ControllerConfig(
            datastore=DatastoreConfig(endpoints=etcd_server.endpoint),
            kubeconfig=str(kw.pop("kubeconfig", kubeconfig)),
            **kw,
        )
        ctl = KubeControllers(config)
        ctl.start()
        started.append(ctl)
        assert ctl.wait_ready(20), ctl.status()
        return ctl

    yield make
    for ctl in started:
        ctl.stop()


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Retry ``check`` (an assertion-raising callable) until it passes; re-raise the last one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)
