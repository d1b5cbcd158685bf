"""The images ``make images`` built: podman loads and runs them, containerd imports and runs them,
and the cni image installs working plugins into a host directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_images import docker_archive, spec
from tests.integration.images.conftest import ROOT, archive, podman_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
VERSION = spec.project_version(ROOT)


def ref(name: str) -> str:
    return spec.BY_NAME[name].ref(VERSION)


def test_archives_name_their_images_and_share_layers() -> None:
    configs = {}
    for image in spec.IMAGES:
        manifest, config = docker_archive.read_manifest(archive(image.name))
        assert manifest[0]["RepoTags"] == [image.ref(VERSION)]
        assert config["config"]["Cmd"] == list(image.config.cmd)
        configs[image.name] = config["rootfs"]["diff_ids"]
    # node = debian + node-debs + app; kube-controllers = the same debian and app blobs
    assert configs["kube-controllers"] == [configs["node"][0], configs["node"][2]]
    assert len(configs["cni"]) == 1


def test_podman_runs_each_image(podman_images: dict[str, str]) -> None:
    env = podman_images
    out = podman_run(env, "run", "--rm", "--net=none", ref("node"), "calico-node", "--help")
    assert out.returncode == 0, out.stderr
    assert "--felix-ready" in out.stdout
    out = podman_run(env, "run", "--rm", "--net=none", ref("node"), "calicoctl", "version")
    assert f"Client Version:    v{VERSION}" in out.stdout
    # (ipset also asks the kernel, which an unprivileged container may not: only its version)
    out = podman_run(env, "run", "--rm", "--net=none", ref("node"), "sh", "-c",
                     "bird --version; nft --version; ip -V; ipset --version")  # fmt: skip
    text = out.stdout + out.stderr
    for wanted in ("BIRD version 2.", "nftables v1.", "iproute2-", "ipset v7."):
        assert wanted in text, text
    out = podman_run(env, "run", "--rm", "--net=none", ref("kube-controllers"),
                     "calico-kube-controllers", "--help")  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = podman_run(env, "run", "--rm", "--net=none", ref("cni"), "/usr/bin/install-cni", "--help")
    assert out.returncode == 0, out.stderr
    assert "--host-root" in out.stdout


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A containerd of our own (temp root, state and socket; no CRI): the ``ctr`` argv prefix."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("containerd") is None or shutil.which("runc") is None:
        pytest.skip("containerd and runc are not installed (apt-get install containerd runc)")
    d = tmp_path_factory.mktemp("ctrd")
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{d}/opt"\n'
    )
    log = open(d / "containerd.log", "wb")  # noqa: SIM115 (open while the daemon runs)
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    ctr = ["ctr", "-a", str(sock)]
    deadline = time.monotonic() + 30
    while subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"containerd did not start: {(d / 'containerd.log').read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield ctr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ctr(ctr: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ctr, *argv], capture_output=True, text=True, timeout=120, check=False)


def test_ctr_imports_and_runs_the_images(containerd: list[str], tmp_path: Path) -> None:
    for image in spec.IMAGES:
        out = _ctr(containerd, "images", "import", str(archive(image.name)))
        assert out.returncode == 0, out.stderr
    listed = _ctr(containerd, "images", "ls", "-q").stdout.split()
    for image in spec.IMAGES:
        assert f"docker.io/{image.ref(VERSION)}" in listed
    # ctr run without --net-host: a network namespace of its own with only lo
    out = _ctr(containerd, "run", "--rm", f"docker.io/{ref('node')}", "calt-node-help",
               "calico-node", "--help")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--bird-ready" in out.stdout


def test_cni_image_installs_plugins_that_run_on_the_host(
    containerd: list[str], tmp_path: Path
) -> None:
    """install-cni in the image writes into a host dir; the plugin then runs on the host with the
    Python runtime it brought (the compiled launcher's fallback included)."""
    out = _ctr(containerd, "images", "import", str(archive("cni")))
    assert out.returncode == 0, out.stderr
    bin_dir, net_dir = tmp_path / "opt/cni/bin", tmp_path / "etc/cni/net.d"
    bin_dir.mkdir(parents=True)
    net_dir.mkdir(parents=True)
    mounts = []
    for d in (bin_dir, net_dir):
        mounts += ["--mount", f"type=bind,src={d},dst=/host{d},options=rbind:rw"]
    out = _ctr(containerd, "run", "--rm", *mounts, "--env", f"CNI_BIN_DIR={bin_dir}",
               "--env", f"CNI_NET_DIR={net_dir}", "--env", "KUBERNETES_NODE_NAME=n1",
               f"docker.io/{ref('cni')}", "calt-install-cni")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"wrote {net_dir}/10-calico.conflist" in out.stdout
    conf = json.loads((net_dir / "10-calico.conflist").read_text())
    assert conf["plugins"][0]["nodename"] == "n1"
    for name in ("calico", "calico-ipam", ".calico-py", "loopback", "portmap"):
        assert (bin_dir / name).exists(), name
    for plugin in ("calico", "calico-ipam", ".calico-py"):
        run = subprocess.run([str(bin_dir / plugin)], input=b'{"cniVersion": "1.0.0"}',
                             env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
                             capture_output=True, timeout=60, check=False)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "1.0.0" in json.loads(run.stdout)["supportedVersions"]
