"""Real container runtimes (podman, containerd) driving our plugin, boxed in like everything else.

A runtime runs in a *box*: the node's network namespace (so the host veths and routes land there,
never in the root namespace) and a private mount namespace held open by a sleeper process (so the
runtime's pod-netns bind mounts, its storage and run directories live and die there, not in the
root mount namespace). Every command enters both with ``nsenter``; the sysfs and the cgroup
mounts stay the host's, which runc needs. Images are built here from Debian's busybox-static
(no registry is reachable): a root file system with ``/bin/busybox`` and its applets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ping", "nc", "ip", "sleep", "cat", "echo", "ls")
# On this kind of machine runc may not set an rlimit to the host's own hard limit (EPERM), and
# podman asks for exactly that by default: explicit, lower limits work.
ULIMITS = ("--ulimit", "nproc=1024:1024", "--ulimit", "nofile=1024:1024")


def missing(*tools: str) -> str:
    """Why a runtime test cannot run here ("" when every tool is installed)."""
    absent = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    return f"not installed: {', '.join(absent)} (make install)" if absent else ""


def busybox_rootfs_tar(directory: Path) -> Path:
    """A tar of a tiny root file system: busybox-static and symlinks for the applets we use."""
    tar_path = directory / "busybox-rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return tar_path


def docker_archive(directory: Path, tag: str, cmd: list[str]) -> Path:
    """The busybox root file system as a one-layer docker-archive image (what ``ctr images
    import`` takes): ``manifest.json``, an image config naming the layer by its digest, the
    layer."""
    import hashlib
    import io

    layer = busybox_rootfs_tar(directory).read_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": ["layer.tar"]}]).encode()  # fmt: skip
    out = directory / f"{tag.replace(':', '_').replace('/', '_')}.tar"
    with tarfile.open(out, "w") as tar:
        for name, data in (
            ("layer.tar", layer),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


class Box:
    """The node's network namespace plus a private mount namespace (see the module docstring)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "--", "sleep", "86400"],
            stdin=subprocess.DEVNULL,
        )
        mine = os.stat("/proc/self/ns/mnt").st_ino
        for _ in range(200):  # until the sleeper runs in its own mount namespace
            try:
                if os.stat(f"/proc/{self.holder.pid}/ns/mnt").st_ino != mine:
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        self.close()
        raise RuntimeError("the mount namespace holder did not start")

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt",
                f"--net=/var/run/netns/{self.netns}", "--", *cmd]  # fmt: skip

    def run(
        self, *cmd: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*cmd), env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            out = proc.stdout + proc.stderr
            raise AssertionError(f"{' '.join(cmd)}: rc={proc.returncode}\n{out}")
        return proc

    def close(self) -> None:
        """End the holder: the mount namespace (and every mount made in it) goes with it."""
        if self.holder.poll() is None:
            self.holder.send_signal(signal.SIGKILL)
        self.holder.wait(10)


def conflist(name: str, plugin: dict[str, Any], version: str = "1.0.0") -> dict[str, Any]:
    """A conflist with our plugin as its only plugin: no bridge, portmap or firewall plugin
    that could touch anything else."""
    return {"cniVersion": version, "name": name, "plugins": [plugin]}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path
