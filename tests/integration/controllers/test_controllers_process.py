"""The ``calico-kube-controllers`` command, its health/metrics endpoint, and conversion problems
reported as a log line plus a Kubernetes Event."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.controllers.manager import KubeControllers
from calico.datastore.client import Client, NotFound
from calico.datastore.etcd_server import EtcdServer, free_port
from tests.fakekube import FakeKube
from tests.integration.controllers import oracle
from tests.integration.controllers.conftest import eventually

pytestmark = pytest.mark.etcd

Factory = Callable[..., KubeControllers]
BIN = Path(sys.executable).parent / "calico-kube-controllers"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_conversion_problems_become_events_and_log_lines(
    fake_kube: FakeKube,
    datastore: Client,
    make_controller: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_kube.create("namespaces", oracle.ns("a"))
    caplog.set_level(logging.ERROR, logger="calico.controllers.events")
    make_controller()
    # A rule that cannot be converted: dropped (fail closed), the rest written, an Event posted.
    fake_kube.create(
        "networkpolicies",
        {
            "metadata": {"name": "half-bad", "namespace": "a"},
            "spec": {
                "podSelector": {},
                "ingress": [{"ports": [{"protocol": "ICMP"}]}, {"ports": [{"port": 443}]}],
            },
        },
    )
    # A policy-level problem: nothing written at all.
    fake_kube.create(
        "networkpolicies",
        {
            "metadata": {"name": "all-bad", "namespace": "a"},
            "spec": {
                "podSelector": {
                    "matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]
                }
            },
        },
    )

    def events() -> list[dict[str, str]]:
        evs = fake_kube.list("events", "a")
        assert len(evs) == 2
        return evs

    evs = {e["involvedObject"]["name"]: e for e in eventually(events)}
    assert evs["half-bad"]["type"] == "Warning"
    assert evs["half-bad"]["reason"] == "CalicoConversionFailed"
    assert "unsupported protocol 'ICMP'" in evs["half-bad"]["message"]
    assert evs["half-bad"]["involvedObject"]["kind"] == "NetworkPolicy"
    assert "unsupported operator 'Gt'" in evs["all-bad"]["message"]
    pol = datastore.get("NetworkPolicy", "knp.default.half-bad", "a")
    assert pol["spec"]["ingress"] == [
        {"action": "Allow", "protocol": "TCP", "source": {}, "destination": {"ports": [443]}}
    ]
    with pytest.raises(NotFound):
        datastore.get("NetworkPolicy", "knp.default.all-bad", "a")
    assert any("spec.ingress[0].ports[0].protocol" in r.getMessage() for r in caplog.records)
    # A resync meets the same problems again: no duplicate Events.
    ctl_events = len(fake_kube.list("events", "a"))
    fake_kube.patch("namespaces", "a", {"metadata": {"labels": {"x": "y"}}})
    time.sleep(0.3)
    assert len(fake_kube.list("events", "a")) == ctl_events


def test_health_and_metrics_endpoint(fake_kube: FakeKube, make_controller: Factory) -> None:
    fake_kube.create("namespaces", oracle.ns("a"))
    fake_kube.create("networkpolicies", oracle.policy("a", "p"))
    ctl = make_controller()
    assert ctl.health is not None
    base = f"http://127.0.0.1:{ctl.health.port}"
    assert ctl.health.server_address[0] == "127.0.0.1"
    code, body = _get(base + "/healthz")
    assert code == 200
    assert json.loads(body)["live"] is True
    code, body = _get(base + "/readyz")
    assert code == 200
    assert json.loads(body)["informers"]["NetworkPolicy"]["synced"] is True

    def metrics() -> str:
        code, text = _get(base + "/metrics")
        assert code == 200
        assert (
            'calico_kube_controllers_datastore_writes_total{kind="NetworkPolicy",op="create"}'
            in text
        )
        return text

    text = eventually(metrics)
    for name in (
        "calico_kube_controllers_sync_errors_total",
        "calico_kube_controllers_event_to_write_seconds_bucket",
        'calico_kube_controllers_k8s_objects{kind="Namespace"} 1.0',
        "calico_kube_controllers_in_sync 1.0",
    ):
        assert name in text


def test_command_runs_converges_and_stops_on_sigterm(
    fake_kube: FakeKube, etcd_server: EtcdServer, datastore: Client, tmp_path: Path
) -> None:
    fake_kube.create("namespaces", oracle.ns("a", env="prod"))
    fake_kube.create("networkpolicies", oracle.policy("a", "p"))
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(fake_kube.write_kubeconfig(tmp_path / "kc")),
        "ETCD_ENDPOINTS": etcd_server.endpoint,
        "HEALTH_LISTEN": f"127.0.0.1:{port}",
        "ENABLED_CONTROLLERS": "policy,namespace",
    }
    proc = subprocess.Popen([str(BIN)], env=env, stderr=subprocess.PIPE, text=True)
    try:

        def ready() -> None:
            check = subprocess.run(
                [str(BIN), "check-health", "--ready", "--listen", f"127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 0, check.stderr

        eventually(ready)

        def converged() -> None:
            try:
                datastore.get("Profile", "kns.a")
                datastore.get("NetworkPolicy", "knp.default.p", "a")
            except NotFound as exc:
                raise AssertionError(str(exc)) from None

        eventually(converged, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "started" in err


def test_command_rejects_bad_configuration(tmp_path: Path) -> None:
    env = {**os.environ, "ENABLED_CONTROLLERS": "policy,bogus", "ETCD_ENDPOINTS": "http://x:1"}
    out = subprocess.run(
        [str(BIN)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 2
    assert "unknown controller(s) ['bogus']" in out.stderr
    down = subprocess.run(
        [str(BIN), "check-health", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert down.returncode == 1
