"""Agent end to end: programs workloads, default allow via profile, a deny policy, unknown iface."""

from __future__ import annotations

import pytest

from calico.dataplane import counters, libnft
from tests.integration.agent.harness import Matrix, Node

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_agent_programs_policy(node: Node) -> None:
    node.add_workload("a", "10.65.0.2", {"app": "a"})
    node.add_workload("b", "10.65.0.3", {"app": "b"})
    node.start_agent()
    mx = Matrix(node)
    mx.expect("a", "b", ok=True)
    mx.expect("b", "a", ok=True)
    mx.expect("a", "b", "udp", 53, ok=True)
    mx.expect("a", "b", "icmp", ok=True)
    mx.check()
    node.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "b-only-8080", "namespace": "default"},
            "spec": {
                "selector": "app == 'b'",
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}
                ],
            },
        }
    )
    mx.expect("a", "b", ok=False)
    mx.expect("a", "b", "tcp", 8080, ok=True)
    mx.expect("a", "b", "udp", 53, ok=False)
    mx.expect("a", "b", "icmp", ok=False)
    mx.check()
    hits = {
        (c.name, c.direction, c.rule): c.packets for c in counters.read(libnft.NftCommand(node.ns))
    }
    assert hits[("default/b-only-8080", "ingress", 0)] > 0
    assert hits[("kns.default", "egress", 0)] > 0


def _http(node: Node, port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    return node.thread.call(fetch)


def test_agent_health_and_metrics(node: Node) -> None:
    import time

    node.add_workload("a", "10.65.0.2", {"app": "a"})
    node.start_agent()
    deadline = time.monotonic() + 15
    while _http(node, 9099, "/readiness")[0] != 200:
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.1)
    assert _http(node, 9099, "/liveness")[0] == 200
    assert _http(node, 9099, "/nope")[0] == 404
    status, text = _http(node, 9091, "/metrics")
    assert status == 200
    assert "felix_active_local_endpoints 1.0" in text
    assert "felix_int_dataplane_apply_time_seconds_count" in text


def test_agent_bad_config_exits_with_the_field(node: Node) -> None:
    import subprocess

    from tests.integration.agent.harness import FELIX

    proc = subprocess.run(
        ["ip", "netns", "exec", node.ns, str(FELIX)],
        env={
            "ETCD_ENDPOINTS": node.etcd.endpoint,
            "FELIX_DEFAULTENDPOINTTOHOSTACTION": "Sometimes",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "FELIX_DEFAULTENDPOINTTOHOSTACTION='Sometimes'" in proc.stderr
    assert "inet calico" not in node.nft("list", "tables", check=True)  # nft must answer
