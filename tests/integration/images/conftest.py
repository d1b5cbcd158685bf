"""Fixtures for the image tests: the archives ``make images`` wrote, and a podman with its own
storage and settings under a temp dir (the machine's podman store and config are left alone)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import calico
from calico.cni import install_cni
from calico_images import cni_bundle, spec

ROOT = Path(__file__).resolve().parents[3]
ARCHIVES = ROOT / "build" / "images"
# engines here cannot raise rlimits (no CAP_SYS_RESOURCE): containers get these lower ones
ULIMITS = ("nofile=1024:1024", "nproc=4096:4096")
DEBIAN_PYTHON = Path("/usr/bin/python3.11")  # Debian's: what the cni image carries


def install_payload(d: Path, env: dict[str, str]) -> list[str]:
    """Build a CNI payload as the image's (from this machine's Debian python3.11 and this
    checkout's calico package) under ``d``, and install-cni it with ``env`` (host root ``/``)."""
    if not (DEBIAN_PYTHON.exists() and Path("/usr/lib/python3.11/os.py").exists()):
        pytest.skip("needs Debian's python3.11 (/usr/bin/python3.11, /usr/lib/python3.11)")
    payload = d / "payload"
    site = Path(calico.__file__).resolve().parent.parent.relative_to("/")
    libs = cni_bundle.build_runtime(Path("/"), payload / cni_bundle.RUNTIME_DIR,
                                    site_packages=str(site))  # fmt: skip
    assert {"libc.so.6", "libssl.so.3", cni_bundle.LOADER} <= set(libs)
    cni_bundle.check(payload / cni_bundle.RUNTIME_DIR)  # imports the plugins, on its own
    cni_bundle.compile_launcher(payload, bin_dir=env["CNI_BIN_DIR"], log=d / "cc.log")
    return install_cni.install(env, host_root=Path("/"), payload=payload, sa_dir=d / "no-sa")


def archive(name: str) -> Path:
    """build/images/<name>.tar, or a skip saying how to make it."""
    path = ARCHIVES / spec.BY_NAME[name].archive
    if not path.exists():
        pytest.skip(f"{path} is missing: run `make images` first")
    return path


def _unmount_below(path: Path) -> None:
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment for a podman whose storage, runtime state and events live in a temp dir."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman runc)")
    d = tmp_path_factory.mktemp("podman")
    (d / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/graph"\nrunroot = "{d}/run"\n'
    )
    ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
    (d / "containers.conf").write_text(
        f"[containers]\ndefault_ulimits = [{ulimits}]\n"
        f'[engine]\ntmp_dir = "{d}/tmp"\nevents_logger = "file"\n'
        f'events_logfile_path = "{d}/events.log"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(d / "storage.conf"),
        "CONTAINERS_CONF": str(d / "containers.conf"),
    }
    yield env
    for argv in (["podman", "rm", "-af", "-t", "0"], ["podman", "rmi", "-af"]):
        subprocess.run(argv, env=env, capture_output=True, check=False, timeout=120)
    _unmount_below(d)


def podman_run(
    env: dict[str, str], *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def podman_images(podman: dict[str, str]) -> dict[str, str]:
    """All three archives loaded into the private podman; a skip (with podman's words) when this
    machine's podman cannot run a container at all."""
    for image in spec.IMAGES:
        out = podman_run(podman, "load", "-q", "-i", str(archive(image.name)))
        assert out.returncode == 0, out.stderr
    version = spec.project_version(ROOT)
    probe = podman_run(
        podman, "run", "--rm", "--net=none", spec.BY_NAME["node"].ref(version), "true"
    )
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run containers here: {probe.stderr.strip()}")
    return podman
