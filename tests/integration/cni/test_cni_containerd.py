"""Issue #16: containerd's CRI plugin drives our plugin as a kubelet would (the Kubernetes path).

containerd runs in a box (the node's network namespace + a private mount namespace with tmpfs
over /run/containerd and /run/netns, see ``runtimes``) on its own root, state and socket, the
native snapshotter, runc, and a CNI conf dir holding a conflist whose only plugin is ours. A small
CRI client (``cri``) runs a pod sandbox (namespace and name from the sandbox config, as the kubelet
sends them): the pod gets a pool address, answers from the node, and its WorkloadEndpoint is the
Kubernetes one; StopPodSandbox releases everything and ``calicoctl ipam check`` is clean.
Skipped, with the reason, when containerd, runc or busybox-static is not installed.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from calico.cli.main import cli
from calico.datastore.client import Client, NotFound
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import Node
from tests.integration.cni.runtimes import Box, conflist, docker_archive, missing, write_json
from tests.nsnet import ping

WHY_NOT = missing("containerd", "ctr", "runc", "/bin/busybox")
pytestmark = [
    pytest.mark.netns,
    pytest.mark.etcd,
    pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT),
]
PAUSE = "docker.io/library/calt-pause:1"


def _config(d: Path, bin_dir: Path, conf_dir: Path) -> Path:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = f"""version = 2
root = "{d}/root"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[{cri}]
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
[{cri}.containerd]
  snapshotter = "native"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{bin_dir}"
  conf_dir = "{conf_dir}"
  max_conf_num = 1
"""
    path = d / "config.toml"
    path.write_text(text)
    return path


class Containerd:
    """containerd in a box; ``close`` stops it and anything left in the box's mount namespace."""

    def __init__(self, box: Box, d: Path, config: Path) -> None:
        self.box = box
        self.socket = str(d / "containerd.sock")
        for mount_point in ("/run/containerd", "/run/netns"):
            box.run("mkdir", "-p", mount_point)
            box.run("mount", "-t", "tmpfs", "calt-ctrd", mount_point)  # only inside the box
        self.log = open(d / "containerd.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(box.argv("containerd", "--config", str(config)),
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        for _ in range(500):
            if os.path.exists(self.socket):
                return
            time.sleep(0.02)
        raise AssertionError(f"containerd did not start: {(d / 'containerd.log').read_text()}")

    def ctr(self, *args: str) -> str:
        return self.box.run("ctr", "--address", self.socket, "--namespace", "k8s.io", *args).stdout

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        mnt = os.stat(f"/proc/{self.box.holder.pid}/ns/mnt").st_ino
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            if pid == self.box.holder.pid:
                continue
            try:
                if os.stat(f"/proc/{pid}/ns/mnt").st_ino == mnt:  # a shim left behind
                    os.kill(pid, signal.SIGKILL)
            except OSError:  # gone meanwhile, or not ours to inspect
                pass
        self.log.close()


def test_cri_pod_sandbox_through_containerd(
    make_node: Callable[[str], Node],
    pool: dict[str, Any],
    etcd_server: EtcdServer,
    datastore: Client,
    etcd: EtcdClient,
    tmp_path: Path,
) -> None:
    from tests.integration.cni.cri import RuntimeService

    node = make_node("node1")
    conf_dir = tmp_path / "net.d"
    plugin = {"type": "calico", "etcd_endpoints": node.endpoint, "nodename": "node1",
              "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"}}  # fmt: skip
    write_json(conf_dir / "10-calico.conflist", conflist("k8s-pod-network", plugin))
    # containerd's CRI always brings the pod's lo up with Debian's loopback plugin (pod netns only)
    (node.bin_dir / "loopback").symlink_to("/usr/lib/cni/loopback")
    short = Path(tempfile.mkdtemp(prefix="calt-ctrd-"))  # unix socket paths must stay short
    box = Box(node.netns)
    ctrd = cri = None
    sandbox = ""
    try:
        ctrd = Containerd(box, short, _config(short, node.bin_dir, conf_dir))
        image = docker_archive(tmp_path, "calt-pause:1", ["/bin/sleep", "86400"])
        ctrd.ctr("images", "import", "--snapshotter", "native", str(image))
        cri = RuntimeService(ctrd.socket)
        sandbox = cri.run_pod_sandbox(name="web-1", namespace="shop", uid="u-123",
                                      log_dir=str(short / "logs"))  # fmt: skip
        ip = cri.pod_ip(sandbox)
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(pool["spec"]["cidr"])
        assert ping(node.netns, ip)
        wep = datastore.get("WorkloadEndpoint", "node1-k8s-web--1-eth0", "shop")
        assert wep["spec"]["orchestrator"] == "k8s"
        assert wep["spec"]["pod"] == "web-1"
        assert wep["spec"]["containerID"] == sandbox
        assert wep["spec"]["profiles"] == ["kns.shop"]
        assert wep["spec"]["ipNetworks"] == [f"{ip}/32"]
        cri.stop_pod_sandbox(sandbox)
        with pytest.raises(NotFound):
            datastore.get("WorkloadEndpoint", "node1-k8s-web--1-eth0", "shop")
        assert IPAMClient(etcd).ip_info(ip) is None
        cri.remove_pod_sandbox(sandbox)
        sandbox = ""
        res = CliRunner().invoke(cli, ["ipam", "check"],
                                 env={"ETCD_ENDPOINTS": etcd_server.endpoint})  # fmt: skip
        assert res.exit_code == 0, res.output
    finally:
        if cri is not None:
            if sandbox:
                for step in (cri.stop_pod_sandbox, cri.remove_pod_sandbox):
                    try:
                        step(sandbox)
                    except Exception:  # the test's own failure is the one to report
                        pass
            cri.close()
        if ctrd is not None:
            ctrd.close()
        box.close()
        shutil.rmtree(short, ignore_errors=True)
