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
from tests.integration.images.conftest import ROOT, podman_run
from tests.nsnet import Forwarder

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
