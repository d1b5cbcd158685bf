"""``calicoctl node run`` in container form with a real podman, inside a network namespace we made:
``podman run --net=host`` there gives the container our namespace's network, never the root's.

calicoctl runs under ``nsenter --net=/run/netns/<ns>`` rather than ``ip netns exec``: the latter
also remounts /sys for the namespace, which drops the cgroup mounts runc needs ("no cgroup mount
found in mountinfo"); nsenter changes the network namespace only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd_server import EtcdServer
from calico_images import spec
from tests.integration.cni.conftest import Node
from tests.integration.images.conftest import ROOT, install_payload, podman_run
from tests.nsnet import Forwarder, ping

pytestmark = [pytest.mark.etcd, pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(300)]
BIN = Path(sys.executable).parent


def test_node_run_starts_the_node_container_in_our_namespace(
    podman_images: dict[str, str],
    make_netns: Callable[[], str],
    etcd_server: EtcdServer,
    datastore: Client,
    tmp_path: Path,
) -> None:
    ns = make_netns()
    subprocess.run(["ip", "-n", ns, "-batch", "-"], check=True, text=True, input=(
        "link add eth0 type veth peer name eth0p\naddr add 10.5.0.1/24 dev eth0\n"
        "link set eth0 up\nlink set eth0p up\n"))  # fmt: skip
    fwd = Forwarder(ns, etcd_server.port)
    run_dir = tmp_path / "run"
    env = {
        **podman_images,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ETCD_ENDPOINTS": f"http://127.0.0.1:{etcd_server.port}",
        "CALICO_RUN_DIR": str(run_dir),
        "CALICO_LOG_DIR": str(tmp_path / "log"),
    }

    def calicoctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", str(BIN / "calicoctl"), *args],
                              env=env, capture_output=True, text=True, timeout=180,
                              check=False)  # fmt: skip

    try:
        image = spec.BY_NAME["node"].ref(spec.project_version(ROOT))
        dry = calicoctl("node", "run", "--name", "n1", "--engine", "podman", "--dryrun")
        assert dry.returncode == 0, dry.stderr
        assert "--net=host" in dry.stdout
        assert dry.stdout.rstrip().endswith(image)

        out = calicoctl("node", "run", "--name", "n1", "--engine", "podman", "--timeout", "120",
                        "--ip-autodetection-method", "interface=eth0")  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Calico node started successfully." in out.stdout
        # the container's host network is our namespace: it found eth0's address there
        node = datastore.get("Node", "n1")
        assert node["spec"]["bgp"]["ipv4Address"] == "10.5.0.1/24"
        state = podman_run(env, "inspect", "--format", "{{.State.Status}}", "calico-node")
        assert state.stdout.strip() == "running"
        # --pid=host: the pid file holds a host pid, so node status works as for the process form
        pid = int((run_dir / "calico-node.pid").read_text())
        assert b"calico-node" in Path(f"/proc/{pid}/cmdline").read_bytes()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = calicoctl("node", "status")
            if status.returncode == 0:
                break
            time.sleep(0.5)
        assert status.stdout.startswith("Calico process is running."), status.stdout + status.stderr
        health = json.loads((run_dir / "health.json").read_text())
        assert health["services"]["bird"]["running"]

        again = calicoctl("node", "run", "--name", "n1", "--engine", "podman")
        assert again.returncode != 0
        assert "already running" in again.stderr

        stop = podman_run(env, "stop", "-t", "20", "calico-node")
        assert stop.returncode == 0, stop.stderr
        assert not (run_dir / "calico-node.pid").exists()  # calico-node shut down cleanly
    finally:
        podman_run(env, "rm", "-f", "-t", "0", "calico-node")
        fwd.close()


def test_node_run_without_the_image_uses_the_process_form_and_says_so(
    podman: dict[str, str], tmp_path: Path
) -> None:
    env = {**podman, "PATH": f"{BIN}:{os.environ['PATH']}", "ETCD_ENDPOINTS": "http://127.0.0.1:1"}
    out = subprocess.run([str(BIN / "calicoctl"), "node", "run", "--name", "n2",
                          "--node-image", "calico-py/node:0.0.0-absent", "--dryrun"],
                         env=env, capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "podman has no image calico-py/node:0.0.0-absent" in out.stderr
    assert "Running calico-node as a host process" in out.stderr
    assert "NODENAME=n2" in out.stdout  # today's dry run: the environment and the command


def test_node_container_that_fails_start_up_is_removed_and_its_error_shown(
    podman_images: dict[str, str], make_netns: Callable[[], str], tmp_path: Path
) -> None:
    ns = make_netns()
    env = {**podman_images, "PATH": f"{BIN}:{os.environ['PATH']}",
           "ETCD_ENDPOINTS": "http://127.0.0.1:2379", "CALICO_RUN_DIR": str(tmp_path / "run"),
           "CALICO_LOG_DIR": str(tmp_path / "log")}  # fmt: skip
    try:
        out = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", str(BIN / "calicoctl"), "node",
                              "run", "--name", "n3", "--engine", "podman", "--as", "abc"],
                             env=env, capture_output=True, text=True, timeout=180,
                             check=False)  # fmt: skip
        assert out.returncode != 0
        assert "calico-node stopped during start-up" in out.stderr
        assert "AS: 'abc'" in out.stderr  # calico-node's own message, from the container's log
        gone = podman_run(env, "inspect", "--format", "{{.State.Status}}", "calico-node")
        assert gone.returncode != 0  # removed: no restart loop left behind
    finally:
        podman_run(env, "rm", "-f", "-t", "0", "calico-node")


def test_host_plugins_hand_calls_to_the_cni_server_in_the_node_container(
    podman_images: dict[str, str],
    make_netns: Callable[[], str],
    etcd_server: EtcdServer,
    datastore: Client,
    tmp_path: Path,
) -> None:
    """The hosted install's shape: plugins installed on the host by install-cni, calico-node (with
    its CNI server) in a container with its own mount namespace. A pod's ADD through the host's
    launcher is served by that server, which reaches the pod's netns (mounted only on the host)
    through the root directory the launcher passes."""
    node_ns, pod_ns = make_netns(), make_netns()
    subprocess.run(["ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                   check=True)  # fmt: skip
    uplink = (
        "link add eth0 type veth peer name uplink0\nlink set eth0 up\nlink set uplink0 up\n"
        "addr add 10.5.0.1/24 dev eth0\nroute add default via 10.5.0.254 dev eth0 onlink\n"
    )
    subprocess.run(["ip", "-n", node_ns, "-batch", "-"], check=True, text=True, input=uplink)
    fwd = Forwarder(node_ns, etcd_server.port)
    run_dir, log_dir, bin_dir = tmp_path / "run", tmp_path / "log", tmp_path / "opt/cni/bin"
    socket_template = str(run_dir / "cni-{netns}.sock")
    install_payload(tmp_path, {"CNI_BIN_DIR": str(bin_dir), "CNI_NET_DIR": str(tmp_path / "net.d"),
                               "CALICO_CNI_SOCKET": socket_template})  # fmt: skip
    env = {**podman_images, "PATH": f"{BIN}:{os.environ['PATH']}",
           "ETCD_ENDPOINTS": f"http://127.0.0.1:{etcd_server.port}",
           "CALICO_RUN_DIR": str(run_dir), "CALICO_LOG_DIR": str(log_dir),
           "CALICO_CNI_SERVER": "true", "CALICO_CNI_SOCKET": socket_template}  # fmt: skip
    node = Node("n1", node_ns, bin_dir, f"http://127.0.0.1:{etcd_server.port}", fwd)
    node.extra_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        out = subprocess.run(["nsenter", f"--net=/run/netns/{node_ns}", str(BIN / "calicoctl"),
                              "node", "run", "--name", "n1", "--engine", "podman",
                              "--ip-autodetection-method", "interface=eth0", "--timeout", "120"],
                             env=env, capture_output=True, text=True, timeout=180,
                             check=False)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        deadline = time.monotonic() + 30
        while not list(run_dir.glob("cni-*.sock")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(run_dir.glob("cni-*.sock")), "the CNI server did not start"
        conf = node.conf()
        r = node.run("ADD", conf, container_id="c1", netns=f"/var/run/netns/{pod_ns}")
        assert r.rc == 0, r.stdout + r.stderr
        assert r.out is not None
        ip = r.out["ips"][0]["address"].split("/")[0]
        assert ping(node_ns, ip)
        served = (log_dir / "cni" / "current").read_text()
        assert "served calico ADD c1 rc=0" in served, served
        r = node.run("DEL", conf, container_id="c1", netns=f"/var/run/netns/{pod_ns}")
        assert r.rc == 0, r.stdout + r.stderr
        assert "served calico DEL c1 rc=0" in (log_dir / "cni" / "current").read_text()
    finally:
        podman_run(env, "stop", "-t", "20", "calico-node")
        podman_run(env, "rm", "-f", "-t", "0", "calico-node")
        fwd.close()
