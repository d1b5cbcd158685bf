"""``calicoctl node run`` / ``node status`` in a namespace: a supervised background calico-node with
its own BIRD, Calico's status table, refusal to start twice, bad input, and stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd_server import EtcdServer
from tests.nsnet import Forwarder

pytestmark = [pytest.mark.etcd, pytest.mark.netns, pytest.mark.bird, pytest.mark.timeout(120)]

BIN = Path(sys.executable).parent


@pytest.fixture
def host(
    make_netns: Callable[[], str], etcd_server: EtcdServer, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    ns = make_netns()
    for cmd in (
        "link add eth0 type veth peer name eth0p",
        "addr add 10.5.0.1/24 dev eth0",
        "link set eth0 up",
        "link set eth0p up",
    ):
        subprocess.run(["ip", "-n", ns, *cmd.split()], check=True)
    fwd = Forwarder(ns, etcd_server.port)
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ETCD_ENDPOINTS": f"http://127.0.0.1:{etcd_server.port}",
        "CALICO_RUN_DIR": str(tmp_path / "run"),
        "CALICO_LOG_DIR": str(tmp_path / "log"),
        "CALICO_NODE_ENGINE": "none",  # the process form (the container form: tests/.../images)
    }
    try:
        yield ns, env
    finally:
        pid_file = tmp_path / "run" / "calico-node.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            time.sleep(0.5)
        fwd.close()


def calicoctl(ns: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, str(BIN / "calicoctl"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_node_run_status_stop(host: tuple[str, dict[str, str]], datastore: Client) -> None:
    ns, env = host
    run_dir = Path(env["CALICO_RUN_DIR"])
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "ghost"},
            "spec": {"bgp": {"ipv4Address": "10.5.0.2/24"}},
        }
    )

    out = calicoctl(ns, env, "node", "status")
    assert out.returncode == 1
    assert "Calico process is not running." in out.stdout

    out = calicoctl(
        ns,
        env,
        "node",
        "run",
        "--name",
        "n1",
        "--ip-autodetection-method",
        "interface=eth0",
        "--as",
        "65010",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Calico node started successfully." in out.stdout
    node = datastore.get("Node", "n1")
    bgp = dict(node["spec"]["bgp"])
    tunnel = bgp.pop("ipv4IPIPTunnelAddr")  # Calico's default pool is IPIP Always
    assert bgp == {"ipv4Address": "10.5.0.1/24", "asNumber": 65010}
    assert (run_dir / "nodename").read_text() == "n1\n"

    _check_status(_status_listing(ns, env, "10.5.0.2"), tunnel)

    ready = subprocess.run(
        ["ip", "netns", "exec", ns, str(BIN / "calico-node"), "--bird-ready"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert ready.returncode == 1
    assert "BIRD is not ready: BGP not established with 10.5.0.2" in ready.stderr

    _check_refuses_a_second_node(ns, env)

    health = json.loads((run_dir / "health.json").read_text())
    assert health["services"]["bird"]["running"]
    assert health["services"]["bgp"]["running"]
    assert health["services"]["allocate-tunnel-addrs"]["running"]
    assert "felix" in health["services"]  # supervised even when the agent keeps failing
    children = [s["pid"] for s in health["services"].values() if s["pid"]]

    _terminate(run_dir)
    assert not any(_alive(p) for p in children)
    out = calicoctl(ns, env, "node", "status")
    assert out.returncode == 1
    assert "Calico process is not running." in out.stdout


def _status_listing(ns: str, env: dict[str, str], peer: str) -> subprocess.CompletedProcess[str]:
    """``calicoctl node status`` once it lists ``peer`` (or the last try after 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = calicoctl(ns, env, "node", "status")
        if peer in out.stdout:
            break
        time.sleep(0.3)
    return out


def _check_status(out: subprocess.CompletedProcess[str], tunnel: str) -> None:
    """Calico's status table: running, the mesh peer 10.5.0.2 not yet up, n1's IPIP address."""
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Calico process is running."
    assert "IPv4 BGP status" in lines
    assert "| PEER ADDRESS |     PEER TYPE     | STATE |" in out.stdout
    row = next(line for line in lines if line.startswith("| 10.5.0.2"))
    assert "| node-to-node mesh | start |" in row
    assert any(s in row for s in ("Active", "Connect", "Idle"))
    assert "Tunnel addresses of node n1" in lines
    assert any(line.startswith(f"| IPIP (tunl0) | {tunnel} ") for line in lines), out.stdout


def _check_refuses_a_second_node(ns: str, env: dict[str, str]) -> None:
    """Neither ``calicoctl node run`` nor calico-node itself starts a second one on the run dir."""
    again = calicoctl(ns, env, "node", "run", "--name", "n1")
    assert again.returncode != 0
    assert "already running" in again.stderr

    direct = subprocess.run(
        ["ip", "netns", "exec", ns, str(BIN / "calico-node")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert direct.returncode == 1
    assert "already running" in direct.stderr


def _terminate(run_dir: Path) -> None:
    """SIGTERM to calico-node: it removes its pid file when it has stopped (within 15 s)."""
    os.kill(int((run_dir / "calico-node.pid").read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (run_dir / "calico-node.pid").exists():
        time.sleep(0.1)
    assert not (run_dir / "calico-node.pid").exists()


def test_node_run_bad_input(host: tuple[str, dict[str, str]], datastore: Client) -> None:
    ns, env = host
    out = calicoctl(ns, env, "node", "run", "--name", "n2", "--as", "abc")
    assert out.returncode != 0
    assert "AS: 'abc'" in out.stderr
    assert datastore.list("Node") == []
    out = calicoctl(ns, env, "node", "run", "--name", "n2", "--dryrun")
    assert out.returncode == 0
    assert "NODENAME=n2" in out.stdout


def test_vxlan_backend_status_and_reported_problems(
    host: tuple[str, dict[str, str]], datastore: Client
) -> None:
    """Backend vxlan: no BIRD, no BGP table; the VXLAN address and MAC; the agent's problems
    (felix-status.json, written here in the agent's format) in the status and calico-node's log."""
    ns, env = host
    run_dir, log_dir = Path(env["CALICO_RUN_DIR"]), Path(env["CALICO_LOG_DIR"])
    env = {
        **env,
        "CALICO_DISABLE_FELIX": "true",  # nobody else writes felix-status.json here
        "CALICO_IPV4POOL_VXLAN": "Always",
        "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
    }
    out = calicoctl(ns, env, "node", "run", "--name", "v1", "--backend", "vxlan")
    assert out.returncode == 0, out.stdout + out.stderr
    (pool,) = datastore.list("IPPool")
    assert (pool["spec"]["ipipMode"], pool["spec"]["vxlanMode"]) == ("Never", "Always")
    spec = datastore.get("Node", "v1")["spec"]
    vxlan, mac = spec["ipv4VXLANTunnelAddr"], spec["vxlanTunnelMACAddr"]
    health = json.loads((run_dir / "health.json").read_text())
    assert sorted(health["services"]) == ["allocate-tunnel-addrs"]

    problem = "IPPool default-ipv4-ippool: VXLAN device vxlan.calico cannot be created (test)"
    tmp = run_dir / "felix-status.json.tmp"
    tmp.write_text(json.dumps({"problems": [problem], "in_sync": True, "applies": 1}))
    os.replace(tmp, run_dir / "felix-status.json")

    out = calicoctl(ns, env, "node", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BGP is not in use on this node" in out.stdout
    assert "IPv4 BGP status" not in out.stdout
    assert any(
        line.startswith(f"| VXLAN (vxlan.calico) | {vxlan} ") and mac in line
        for line in out.stdout.splitlines()
    ), out.stdout
    assert f"Problems reported by calico-felix:\n  - {problem}" in out.stdout

    log = log_dir / "node" / "current"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and problem not in log.read_text():
        time.sleep(0.2)
    assert f"calico-felix reports a problem: {problem}" in log.read_text()


def test_felix_ready_prints_the_agents_problems(tmp_path: Path) -> None:
    """The readiness entry point, against a run dir in the agent's and supervisor's formats."""
    (tmp_path / "health.json").write_text(json.dumps({"services": {"felix": {"running": True}}}))
    problem = "IPPool p: ipipMode Always needs the 'ipip' kernel module, which is missing"
    (tmp_path / "felix-status.json").write_text(
        json.dumps({"problems": [problem], "in_sync": True, "applies": 2})
    )
    env = {**os.environ, "CALICO_RUN_DIR": str(tmp_path)}
    argv = [str(BIN / "calico-node"), "--felix-ready"]
    ready = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert ready.returncode == 1
    assert ready.stderr == f"calico/node is not ready: Felix is not ready: {problem}\n"
    (tmp_path / "felix-status.json").write_text(
        json.dumps({"problems": [], "in_sync": True, "applies": 3})
    )
    ready = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert (ready.returncode, ready.stderr) == (0, "")
