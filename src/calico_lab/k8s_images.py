"""The lab's own pod images for ``calico-lab up --kubernetes``: a pause image and a responder image.

No registry is reachable, so the sandbox image containerd and kubelet name, and the image lab pods
run, are built here and imported into every node's containerd (``imagePullPolicy: Never``)::

    calico-lab/pause:<version>       /pause            (podimage/pause.c, static)
    calico-lab/responder:<version>   /responder        (podimage/responder.c, static: answers
     (also :latest, so a pod that    /bin/busybox +     every port in its args with one line,
     says calico-lab/responder       its applets        what calico_lab.probe expects of a pod;
     finds it)                       /etc/passwd, group the entry point: a pod's args are its)

Both binaries are compiled with the machine's C compiler, ``-static`` (the images hold no libc).
Each image is one layer, written in memory with fixed mtimes and owners, as a docker-archive
(``manifest.json`` + config + ``layer.tar``: what ``ctr images import`` reads), so the same inputs
give the same image IDs and a second import changes nothing. The image build package
(``calico_images``) is not used: the lab never imports it (an import-linter contract).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import calico
from calico.lib.cmd import run
from calico_lab.errors import LabError

SOURCES = Path(__file__).with_name("podimage")
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")  # Debian's busybox-static: a static binary
CFLAGS = ("-static", "-O2", "-std=c99", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PAUSE = "calico-lab/pause"
RESPONDER = "calico-lab/responder"


@dataclass(frozen=True, slots=True)
class Image:
    ref: str  # the first tag, e.g. calico-lab/pause:0.1.0
    archive: Path
    image_id: str
    size: int  # bytes of the layer (uncompressed)


def version() -> str:
    return calico.__version__


def pause_ref() -> str:
    return f"{PAUSE}:{version()}"


def responder_ref() -> str:
    return f"{RESPONDER}:{version()}"


def compiler() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LabError("calico-lab up --kubernetes builds its pod images with a C compiler: "
                       "install gcc and libc6-dev (make install)")  # fmt: skip
    return cc


def check_tools() -> None:
    """What :func:`build` needs (a C compiler, busybox); a LabError naming what is missing."""
    compiler()
    busybox()


def compile_static(source: Path, out: Path) -> None:
    cc = compiler()
    out.parent.mkdir(parents=True, exist_ok=True)
    run([cc, *CFLAGS, "-o", str(out), str(source)], timeout=300)
    run(["strip", str(out)], check=False)


class Layer:
    """A layer tar built in memory: files, directories and symlinks, owned by root, mtime 0."""

    def __init__(self) -> None:
        self.members: list[tuple[tarfile.TarInfo, bytes | None]] = []
        self.dirs: set[str] = set()

    @staticmethod
    def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def directory(self, name: str, mode: int = 0o755) -> None:
        parent = name.rpartition("/")[0]
        if parent and parent not in self.dirs:
            self.directory(parent)
        if name not in self.dirs:
            self.dirs.add(name)
            self.members.append((self._info(name, tarfile.DIRTYPE, mode), None))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        if "/" in name:
            self.directory(name.rpartition("/")[0])
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.members.append((info, data))

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.members.append((info, None))

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in self.members:
                tar.addfile(info, None if data is None else io.BytesIO(data))
        return buf.getvalue()


def write_archive(out: Path, *, tags: list[str], layer: bytes, entrypoint: list[str]) -> str:
    """One-layer docker-archive at ``out``; returns the image ID (the config's digest)."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": entrypoint, "Env": [PATH_ENV], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "calico_lab.k8s_images"}],
    }
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cfg_hex = hashlib.sha256(cfg).hexdigest()
    layer_name = f"{diff_id.removeprefix('sha256:')}/layer.tar"
    manifest = [{"Config": f"{cfg_hex}.json", "RepoTags": tags, "Layers": [layer_name]}]
    members = [
        (layer_name, layer),
        (f"{cfg_hex}.json", cfg),
        ("manifest.json", json.dumps(manifest).encode()),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return f"sha256:{cfg_hex}"


def busybox() -> Path:
    for candidate in BUSYBOX:
        if Path(candidate).is_file():
            return Path(candidate)
    raise LabError("the responder image needs Debian's busybox-static (/bin/busybox): make install")


def pause_layer(binary: Path) -> bytes:
    layer = Layer()
    layer.file("pause", binary.read_bytes(), 0o755)
    return layer.tar()


def responder_layer(binary: Path, box: Path) -> bytes:
    layer = Layer()
    for name in ("dev", "proc", "sys", "root", "etc", "var"):
        layer.directory(name)
    layer.directory("tmp", 0o1777)
    layer.file("bin/busybox", box.read_bytes(), 0o755)
    applets = run([str(box), "--list"]).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        layer.symlink(f"bin/{applet}", "busybox")
    layer.file("responder", binary.read_bytes(), 0o755)
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    layer.file("etc/group", b"root:x:0:\nnobody:x:65534:\n")
    return layer.tar()


def build(out_dir: Path) -> list[Image]:
    """Compile both binaries and write ``pause.tar`` and ``responder.tar`` into ``out_dir``."""
    bins = out_dir / "bin"
    compile_static(SOURCES / "pause.c", bins / "pause")
    compile_static(SOURCES / "responder.c", bins / "responder")
    images = []
    for name, layer, tags, entrypoint in (
        ("pause", pause_layer(bins / "pause"), [pause_ref()], ["/pause"]),
        (
            "responder",
            responder_layer(bins / "responder", busybox()),
            [responder_ref(), f"{RESPONDER}:latest"],
            ["/responder"],
        ),
    ):
        archive = out_dir / f"{name}.tar"
        image_id = write_archive(archive, tags=tags, layer=layer, entrypoint=entrypoint)
        images.append(Image(tags[0], archive, image_id, len(layer)))
    return images
